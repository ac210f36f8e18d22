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

from piimg.manifests.env import render
from piimg.spec import k3sflags
from piimg.spec.model import Ingress, NodeSpec, Role, Spec
from piimg.spec.secrets import Secrets
from piimg.versions import K3S_API_PORT

#: Placeholder written instead of a secret value when output is for review.
MASKED: Final = "<hidden>"


def k3s_server_url(spec: Spec) -> str:
    """``https://<initial server address>:6443``: where agents and joining servers register."""
    return f"https://{spec.initial_server.address}:{K3S_API_PORT}"


def bgp_password(spec: Spec) -> str | None:
    """The BGP TCP-MD5 key (``cluster.bgp.password_env``, read when the spec was loaded), if any."""
    return spec.env_secrets.bgp_password


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


def _merge_extra_args(settings: dict[str, Any], args: Iterable[str]) -> None:
    """Merge ``cluster.extra_server_args`` (checked at load by :mod:`piimg.spec.rules`)."""
    for arg in k3sflags.parse_extra_args(args):
        if arg.key in k3sflags.LIST_FLAGS:
            current = settings.setdefault(arg.key, [])
            for item in arg.items():
                if item not in current:
                    current.append(item)
        else:
            # A scalar flag (given twice: the last one wins, as on the k3s
            # command line). write-kubeconfig-mode may be relaxed here on purpose.
            settings[arg.key] = arg.value


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
        _merge_extra_args(settings, spec.cluster.extra_server_args)
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
