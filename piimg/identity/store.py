"""How the cluster identity lives in ``.piimg/`` beside ``secrets.yaml``.

::

    .piimg/k3s-ca/root-ca.crt, root-ca.key      the root CA (never leaves this machine)
    .piimg/k3s-ca/server-ca.crt ... service.key  what each server gets in k3s's tls folder
    .piimg/ssh/<hostname>/ssh_host_ed25519_key   each node's SSH host key (+ .pub)
    .piimg/node-passwords.yaml                   each node's k3s node password
    .piimg/known_hosts                           the host keys' public halves, for ssh

Made once and reused by every later build, so a re-flashed node keeps its SSH
identity, its k3s node password (the server accepts it again) and its
cluster. Every file is 0600 in 0700 folders; a file readable by others is
refused, like secrets.yaml.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets as _random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from piimg.errors import FileError
from piimg.fsutil import read_private, write_atomic
from piimg.identity import hostkeys, k3sca
from piimg.identity.hostkeys import HostKey
from piimg.identity.k3sca import ClusterCA
from piimg.spec.yamlload import describe

CA_DIR: Final = "k3s-ca"
SSH_DIR: Final = "ssh"
NODE_PASSWORDS: Final = "node-passwords.yaml"
KNOWN_HOSTS: Final = "known_hosts"
_RESTORE: Final = "restore the folder from a backup, or delete it to start a new cluster identity (every node must then be re-flashed)"
_PASSWORD_RE: Final = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class NodeIdentity:
    hostname: str
    host_key: HostKey
    #: k3s's node password (/etc/rancher/node/password): 16 random bytes as hex, as k3s makes it
    node_password: str


@dataclass(frozen=True)
class Identity:
    ca: ClusterCA
    nodes: dict[str, NodeIdentity]
    known_hosts: Path

    def node(self, hostname: str) -> NodeIdentity:
        return self.nodes[hostname]


@dataclass(frozen=True)
class NodeName:
    """What the store needs to know of a node: its name and where ssh reaches it."""

    hostname: str
    address: str


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _ca_files(ca: ClusterCA) -> dict[str, bytes]:
    return {k3sca.ROOT_CERT: ca.root_cert_pem, k3sca.ROOT_KEY: ca.root_key_pem, **ca.server_files}


def _write_ca(state_dir: Path, ca: ClusterCA) -> None:
    """All CA files appear at once: written into a temporary folder, then renamed."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{CA_DIR}.", dir=state_dir))
    try:
        for name, data in _ca_files(ca).items():
            _private_dir((tmp / name).parent)
            write_atomic(tmp / name, data, mode=0o600)
        os.rename(tmp, state_dir / CA_DIR)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_ca(state_dir: Path) -> ClusterCA | None:
    folder = state_dir / CA_DIR
    if not folder.exists():
        return None
    names = [k3sca.ROOT_CERT, k3sca.ROOT_KEY, k3sca.SERVICE_KEY]
    names += [f"{p}.{ext}" for p in k3sca.PURPOSE_CAS for ext in ("crt", "key")]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileError(folder, f"incomplete cluster CA (missing {', '.join(missing)})", hint=_RESTORE)
    data = {n: read_private(folder / n) for n in names}
    try:
        return k3sca.load(data.pop(k3sca.ROOT_CERT), data.pop(k3sca.ROOT_KEY), data)
    except ValueError as exc:
        raise FileError(folder, f"not a usable cluster CA ({exc})", hint=_RESTORE) from None


def _load_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    text = read_private(path).decode("utf-8", "replace")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        problem = describe(exc, text, str(path))
        raise FileError(problem.where, f"not valid YAML: {problem.sentence}",  # no quoted line: it holds passwords
                        hint="restore it from a backup, or delete it (re-flashed nodes are then refused by the k3s "
                             "server until their old Node objects are deleted)") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _PASSWORD_RE.fullmatch(v) for k, v in data.items()
    ):
        raise FileError(path, "expected `hostname: <32 hex digits>` lines")
    return data


def _load_host_key(state_dir: Path, hostname: str) -> HostKey | None:
    path = state_dir / SSH_DIR / hostname / "ssh_host_ed25519_key"
    if not path.exists():
        return None
    try:
        return hostkeys.from_private(read_private(path), hostname)
    except ValueError as exc:
        raise FileError(path, f"not an unencrypted ed25519 private key ({exc})",
                        hint="restore it from a backup, or delete it: the node then gets a new key at the next build "
                             "and must be re-flashed") from None


def _write_host_key(state_dir: Path, hostname: str, key: HostKey) -> None:
    folder = state_dir / SSH_DIR / hostname
    _private_dir(state_dir / SSH_DIR)
    _private_dir(folder)
    write_atomic(folder / "ssh_host_ed25519_key.pub", key.public_line + "\n", mode=0o600)
    write_atomic(folder / "ssh_host_ed25519_key", key.private_openssh, mode=0o600)


def _known_hosts_text(nodes: Sequence[NodeName], keys: dict[str, HostKey]) -> str:
    return hostkeys.known_hosts(
        (hostkeys.known_host_names(n.address, n.hostname), keys[n.hostname]) for n in nodes if n.hostname in keys
    )


def load_or_create(state_dir: Path, nodes: Sequence[NodeName]) -> Identity:
    """The identity for ``nodes``: what exists is kept, what is missing is generated (build time)."""
    _private_dir(state_dir)
    ca = _load_ca(state_dir)
    if ca is None:
        ca = k3sca.generate()
        _write_ca(state_dir, ca)
    keys: dict[str, HostKey] = {}
    for node in nodes:
        key = _load_host_key(state_dir, node.hostname)
        if key is None:
            key = hostkeys.generate(node.hostname)
            _write_host_key(state_dir, node.hostname, key)
        keys[node.hostname] = key
    passwords_path = state_dir / NODE_PASSWORDS
    passwords = _load_passwords(passwords_path)
    if any(n.hostname not in passwords for n in nodes):
        for node in nodes:
            passwords.setdefault(node.hostname, _random.token_hex(16))
        text = "# Generated by piimg: each node's k3s node password (/etc/rancher/node/password).\n"
        write_atomic(passwords_path, text + yaml.safe_dump(passwords, sort_keys=True), mode=0o600)
    known = state_dir / KNOWN_HOSTS
    text = _known_hosts_text(nodes, keys)
    if not known.exists() or known.read_text() != text:
        write_atomic(known, text, mode=0o600)
    return Identity(
        ca=ca,
        nodes={n.hostname: NodeIdentity(n.hostname, keys[n.hostname], passwords[n.hostname]) for n in nodes},
        known_hosts=known,
    )


def load_existing(state_dir: Path) -> ClusterCA | None:
    """The cluster CA if piimg made one here (status, kubeconfig); None for a cluster piimg did not bootstrap."""
    with contextlib.suppress(FileNotFoundError):
        return _load_ca(state_dir)
    return None


def known_hosts_path(state_dir: Path) -> Path | None:
    """``.piimg/known_hosts`` when piimg generated host keys here."""
    path = state_dir / KNOWN_HOSTS
    return path if path.is_file() else None
