"""``piimg kubeconfig``: a kubeconfig for the cluster, made here or fetched.

A cluster piimg bootstrapped has its CAs in ``.piimg/k3s-ca``
(piimg.identity): :func:`mint` signs an admin client certificate with the
client CA (group ``system:masters``, as k3s's own admin) and pins the server
CA, before and without any SSH to the node.

Otherwise :func:`fetch` reads ``/etc/rancher/k3s/k3s.yaml`` over SSH; k3s
writes it with ``server: https://127.0.0.1:6443`` and everything named
``default``.

Either way the server is the initial server's address (in the serving
certificate's SANs: the k3s config has it as ``node-ip`` and ``tls-san``) and
cluster, context and user are named after ``cluster.name`` so several
clusters can live in one ``~/.kube/config``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Final

import yaml

from piimg.errors import FileError
from piimg.fsutil import write_atomic
from piimg.identity.k3sca import ClusterCA
from piimg.manifests.k3s import k3s_server_url
from piimg.spec.model import Spec
from piimg.spec.yamlload import describe
from piimg.status.ssh import SshTarget, read_remote_file

K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
#: The user name in the minted client certificate (its group is system:masters).
ADMIN_USER: Final = "piimg-admin"


def server_target(spec: Spec, *, port: int = 22, known_hosts: Path | None = None) -> SshTarget:
    return SshTarget(host=str(spec.initial_server.address), user=spec.access.user, port=port,
                     known_hosts=str(known_hosts) if known_hosts else None,
                     host_key_alias=spec.initial_server.hostname if known_hosts else None,
                     node=spec.initial_server.hostname)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mint(spec: Spec, ca: ClusterCA, *, server: str | None = None) -> dict[str, Any]:
    """A kubeconfig with a new admin client certificate from ``ca`` and its server CA pinned."""
    cert, key = ca.mint_client(ADMIN_USER)
    name = spec.cluster.name
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server or k3s_server_url(spec),
                                                "certificate-authority-data": _b64(ca.server_ca_bundle)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def rewrite(doc: dict[str, Any], *, server: str, name: str, source: str = K3S_KUBECONFIG) -> dict[str, Any]:
    """Point ``doc`` (read from ``source``) at ``server`` and rename its only cluster/context/user to ``name``."""
    try:
        cluster = dict(doc["clusters"][0]["cluster"])
        user = dict(doc["users"][0]["user"])
    except (KeyError, IndexError, TypeError):
        raise FileError(source, "not a kubeconfig (no clusters/users)") from None
    cluster["server"] = server
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def merge(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``'s entries replace same-named ones in ``existing``; others are kept."""
    out: dict[str, Any] = dict(existing) if existing else {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for section in ("clusters", "users", "contexts"):
        names = {item["name"] for item in new.get(section, [])}
        kept = [item for item in out.get(section) or [] if item.get("name") not in names]
        out[section] = kept + list(new.get(section, []))
    if not out.get("current-context"):
        out["current-context"] = new["current-context"]
    return out


def fetch(spec: Spec, target: SshTarget | None = None, *, remote_path: str = K3S_KUBECONFIG) -> dict[str, Any]:
    """Read the server's kubeconfig over SSH and rewrite it for this machine."""
    target = target or server_target(spec)
    raw = read_remote_file(target, remote_path)
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = describe(exc, raw.decode("utf-8", "replace"), f"{target.host}:{remote_path}")
        # no quoted line: a kubeconfig holds client keys and tokens
        raise FileError(problem.where, f"not valid YAML ({problem.sentence})") from None
    if not isinstance(doc, dict):
        raise FileError(f"{target.host}:{remote_path}", "not a kubeconfig")
    return rewrite(doc, server=k3s_server_url(spec), name=spec.cluster.name, source=f"{target.host}:{remote_path}")


def write(doc: dict[str, Any], path: Path, *, merge_into_existing: bool = False) -> Path:
    """Write ``doc`` (mode 0600, atomically); with ``merge_into_existing`` merge into ``path``."""
    if merge_into_existing and path.exists():
        text = path.read_text()
        try:
            existing = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            problem = describe(exc, text, str(path))
            # no quoted line: a kubeconfig holds client keys and tokens
            raise FileError(problem.where, f"not valid YAML ({problem.sentence}), not merging into it") from None
        if not isinstance(existing, dict):
            raise FileError(path, "not a kubeconfig (no mapping at the top), not merging into it")
        doc = merge(existing, doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False), mode=0o600)
    return path


def default_merge_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path.home() / ".kube" / "config"
