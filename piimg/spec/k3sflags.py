"""What piimg knows about k3s server flags (``cluster.extra_server_args``).

k3s reads its flags from ``/etc/rancher/k3s/config.yaml``: keys are the flag
names without the leading ``--``; flags that may be repeated are lists there
(docs.k3s.io "Configuration File"). The spec rules
(:mod:`piimg.spec.rules`) use this module to refuse bad flags when the spec is
loaded; the renderer (:mod:`piimg.manifests.k3s`) uses it to merge the
accepted flags into the config file. Neither keeps a copy of these facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: Keys piimg sets itself; ``extra_server_args`` may not override them, since
#: a wrong token or server URL would silently split the cluster.
MANAGED_KEYS: Final = frozenset({"token", "server", "node-name", "node-ip", "cluster-init"})

#: k3s flags that may be given several times; in the config file they are lists.
LIST_FLAGS: Final = frozenset(
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

#: Prefix of every addon piimg deploys: ``--disable NAME`` deletes the
#: auto-deploy file NAME (docs.k3s.io "Managing Packaged Components").
PIIMG_ADDON_PREFIX: Final = "piimg-"


@dataclass(frozen=True)
class ExtraArg:
    """One ``--flag=value`` (or bare ``--flag``: value True) of ``extra_server_args``."""

    index: int
    key: str
    value: str | bool

    @property
    def where(self) -> str:
        return f"cluster.extra_server_args[{self.index}]"

    def items(self) -> list[str | bool]:
        """The values this flag adds to a list flag (``--disable=a,b`` adds two)."""
        if self.key == "disable" and isinstance(self.value, str):
            return list(self.value.split(","))
        return [self.value]


def parse_extra_args(args: Iterable[str]) -> list[ExtraArg]:
    """``--flag=value`` / ``--flag`` -> :class:`ExtraArg`; a bare flag means true."""
    parsed = []
    for i, arg in enumerate(args):
        body = arg.removeprefix("--")
        key, sep, value = body.partition("=")
        parsed.append(ExtraArg(i, key, value if sep else True))
    return parsed
