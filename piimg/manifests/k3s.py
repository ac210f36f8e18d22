"""The k3s configuration file of each node (``/etc/rancher/k3s/config.yaml``).

k3s reads its flags from this file (keys are the flag names without the
leading ``--``; docs.k3s.io "Configuration Options", "Configuration File"),
so first boot installs k3s with nothing but this file and the pinned
version: the token never appears in a command line or a unit file.

What goes in, per role:

* every node: ``token``, ``node-name``, ``node-ip``;
* servers: ``tls-san`` (its address, so a kubeconfig pointing at the IP
  verifies), ``write-kubeconfig-mode: "0600"`` (the admin kubeconfig stays
  root-only), ``disable`` (see :func:`disabled_components`) and
  ``cluster.extra_server_args`` merged in;
* the initial server, when more than one server is declared:
  ``cluster-init: true`` (embedded etcd, so the other servers can join);
* agents and joining servers: ``server: https://<initial server>:6443``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from piimg.errors import ConfigError
from piimg.manifests.env import render
from piimg.spec import load as spec_load
from piimg.spec.model import Ingress, NodeSpec, Role, Spec
from piimg.spec.secrets import Secrets
from piimg.versions import K3S_API_PORT

#: Placeholder written instead of a secret value when output is for review.
MASKED: Final = "<hidden>"

#: Keys piimg sets itself; ``extra_server_args`` may not override them, since
#: a wrong token or server URL would silently split the cluster.
_MANAGED_KEYS: Final = frozenset({"token", "server", "node-name", "node-ip", "cluster-init"})

#: k3s flags that may be given several times; in the config file they are lists.
_LIST_FLAGS: Final = frozenset(
    {
        "disable",
        "tls-san",
        "node-label",
        "node-taint",
        "kube-apiserver-arg",
        "kube-controller-manager-arg",
        "kube-scheduler-arg",
        "kube-cloud-controller-manager-arg",
        "kubelet-arg",
        "kube-proxy-arg",
        "etcd-arg",
        "helm-controller-arg",
    }
)


def k3s_server_url(spec: Spec) -> str:
    """``https://<initial server address>:6443``: where agents and joining servers register."""
    return f"https://{spec.initial_server.address}:{K3S_API_PORT}"


def bgp_password(spec: Spec) -> str | None:
    """The BGP TCP-MD5 key from the variable named by ``cluster.bgp.password_env``, if any."""
    name = spec.cluster.bgp.password_env
    if name is None:
        return None
    return spec_load.env_secret("cluster.bgp.password_env", name)


def disabled_components(spec: Spec) -> list[str]:
    """``cluster.disable`` plus what piimg's choices require.

    servicelb always: MetalLB answers for LoadBalancer services, and k3s's
    ServiceLB would race it for the same Services. traefik unless it is the
    chosen ingress: two controllers would both claim Ingress resources.
    """
    items = list(spec.cluster.disable)
    required = ["servicelb"]
    if spec.cluster.ingress is not Ingress.TRAEFIK:
        required.append("traefik")
    for name in required:
        if name not in items:
            items.append(name)
    return items


def _parse_extra_args(args: Iterable[str]) -> list[tuple[int, str, Any]]:
    """``--flag=value`` / ``--flag`` -> (index, key, value); a bare flag means true."""
    parsed = []
    for i, arg in enumerate(args):
        body = arg.removeprefix("--")
        key, sep, value = body.partition("=")
        parsed.append((i, key, value if sep else True))
    return parsed


def _merge_extra_args(settings: dict[str, Any], args: Iterable[str], *, ingress: Ingress) -> None:
    for i, key, value in _parse_extra_args(args):
        where = f"cluster.extra_server_args[{i}]"
        if key in _MANAGED_KEYS:
            raise ConfigError(where, f"sets {key}, which piimg manages itself")
        if not key:
            raise ConfigError(where, "is not a k3s flag (--name or --name=value)")
        if key in _LIST_FLAGS:
            current = settings.setdefault(key, [])
            items = value.split(",") if key == "disable" and isinstance(value, str) else [value]
            for item in items:
                if key == "disable" and isinstance(item, str) and item.startswith("piimg-"):
                    # --disable NAME deletes the addon file NAME: ours must stay.
                    raise ConfigError(where, f"disables {item}, which piimg deploys")
                if key == "disable" and item == "traefik" and ingress is Ingress.TRAEFIK:
                    raise ConfigError(where, "disables traefik, but cluster.ingress is traefik")
                if item not in current:
                    current.append(item)
        else:
            # A scalar flag (given twice: the last one wins, as on the k3s
            # command line). write-kubeconfig-mode may be relaxed here on purpose.
            settings[key] = value


def k3s_settings(spec: Spec, node: NodeSpec, secrets: Secrets, *, mask_secrets: bool = False) -> dict[str, Any]:
    """The config file's keys and values, in the order they are written."""
    settings: dict[str, Any] = {
        "token": MASKED if mask_secrets else secrets.join_token,
        "node-name": node.hostname,
        "node-ip": str(node.address),
    }
    initial = node.hostname == spec.initial_server.hostname
    if not initial:
        settings["server"] = k3s_server_url(spec)
    if node.role is Role.SERVER:
        if initial and len(spec.servers) > 1:
            settings["cluster-init"] = True
        settings["tls-san"] = [str(node.address)]
        settings["write-kubeconfig-mode"] = "0600"
        settings["disable"] = disabled_components(spec)
        _merge_extra_args(settings, spec.cluster.extra_server_args, ingress=spec.cluster.ingress)
    return settings


def render_k3s_config(spec: Spec, node: NodeSpec, secrets: Secrets, *, mask_secrets: bool = False) -> str:
    """Content of ``/etc/rancher/k3s/config.yaml`` for ``node`` (token included unless masked)."""
    return render(
        "k3s-config.yaml.j2",
        node=node,
        role=node.role.value,
        initial=node.hostname == spec.initial_server.hostname,
        settings=k3s_settings(spec, node, secrets, mask_secrets=mask_secrets),
        masked=mask_secrets,
    )
