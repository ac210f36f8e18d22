"""Which kubeconfig and context ``piimg status`` talks to the cluster with.

In this order (the first that applies wins):

1. ``--kubeconfig FILE``: that file, context ``cluster.name`` (or its only
   context);
2. a cluster piimg bootstrapped (``.piimg/k3s-ca``): a kubeconfig minted in
   memory (admin client certificate, server CA pinned): nothing to fetch,
   usable the moment the API answers;
3. ``./kubeconfig`` beside piimg.yaml (what ``piimg kubeconfig`` writes);
4. ``$KUBECONFIG`` (each of its files), then ``~/.kube/config``, when it has a
   context named ``cluster.name`` (what ``piimg kubeconfig --merge`` writes):
   never the file's current context, which may be another cluster
   (k3sup/k3d ``--context`` do the same);
5. over SSH from the server (``/etc/rancher/k3s/k3s.yaml``), when a fetch is
   allowed: ``status --watch`` then needs no manual step either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from piimg.errors import PiimgError
from piimg.identity.k3sca import ClusterCA
from piimg.spec.model import Spec
from piimg.status import kubeconfig as kcfg


@dataclass(frozen=True)
class KubeAccess:
    """A kubeconfig (a file or an in-memory document) and the context to use, or why there is none."""

    source: str  # what the user reads in the check's detail
    path: Path | None = None
    doc: dict[str, Any] | None = None
    context: str | None = None
    problem: str | None = None

    @classmethod
    def from_file(cls, path: Path, context: str | None = None) -> KubeAccess:
        if not path.exists():
            return cls(source=str(path), problem=f"no kubeconfig at {path}: run `piimg kubeconfig` first")
        return cls(source=str(path), path=path, context=context)

    def api_client(self) -> Any:
        """A ``kubernetes`` ApiClient for this config and context (raises what the client raises)."""
        from kubernetes import config

        if self.doc is not None:
            return config.new_client_from_config_dict(self.doc, context=self.context)  # type: ignore[no-untyped-call]
        return config.new_client_from_config(config_file=str(self.path), context=self.context)  # type: ignore[no-untyped-call]


def _contexts(path: Path) -> list[str] | None:
    """The context names in a kubeconfig file, or None when it is not one."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    return [c["name"] for c in doc.get("contexts") or [] if isinstance(c, dict) and isinstance(c.get("name"), str)]


def for_file(path: Path, cluster: str) -> KubeAccess:
    """``--kubeconfig FILE``: context ``cluster`` if the file has it, else its only context."""
    access = KubeAccess.from_file(path)
    if access.problem:
        return access
    names = _contexts(path)
    if names is None:
        return KubeAccess(source=str(path), problem=f"{path}: not a kubeconfig")
    if cluster in names:
        return KubeAccess(source=f"{path} (context {cluster})", path=path, context=cluster)
    if len(names) == 1:
        return KubeAccess(source=str(path), path=path, context=names[0])
    return KubeAccess(source=str(path), problem=f"{path} has no context {cluster!r} (it has: {', '.join(names) or 'none'})")


def user_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """``$KUBECONFIG``'s files (kubectl's list syntax), else ``~/.kube/config``."""
    value = env.get("KUBECONFIG")
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    return [home / ".kube" / "config"]


def resolve(
    spec: Spec,
    *,
    root: Path,
    ca: ClusterCA | None,
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    fetch: Callable[[], dict[str, Any]] | None = None,
) -> KubeAccess:
    """Pick the kubeconfig and context as the module docstring says."""
    cluster = spec.cluster.name
    if explicit is not None:
        return for_file(explicit, cluster)
    if ca is not None:
        return KubeAccess(source="admin certificate from .piimg/k3s-ca", doc=kcfg.mint(spec, ca), context=cluster)
    local = root / "kubeconfig"
    if local.exists():
        return for_file(local, cluster)
    env = os.environ if env is None else env
    for path in user_files(env, home or Path.home()):
        if path.is_file() and cluster in (_contexts(path) or []):
            return KubeAccess(source=f"{path} (context {cluster})", path=path, context=cluster)
    if fetch is not None:
        try:
            return KubeAccess(source=f"fetched from {spec.initial_server.hostname} over SSH", doc=fetch(), context=cluster)
        except PiimgError as exc:
            return KubeAccess(source="ssh", problem=f"no kubeconfig for context {cluster} here, and fetching it failed: "
                                                    f"{exc.message}")
    return KubeAccess(source=str(local), problem=f"no kubeconfig at {local} and no context {cluster} in "
                                                 f"{', '.join(str(p) for p in user_files(env, home or Path.home()))}: "
                                                 "run `piimg kubeconfig` first")
