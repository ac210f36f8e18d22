"""SSH host keys made on the host, so piimg knows each node before it boots.

One ed25519 key per node, in OpenSSH's own private-key format (what
``ssh-keygen -t ed25519`` writes), and a ``known_hosts`` file with the
public halves under the node's address and hostname. Every piimg ssh call
passes that file as ``UserKnownHostsFile`` with ``StrictHostKeyChecking=yes``:
no trust on first use, and a re-flashed node (same key) is still known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

KEY_TYPE: Final = "ssh-ed25519"
#: Where sshd reads it (Debian's sshd_config default HostKey list).
NODE_KEY_PATH: Final = "/etc/ssh/ssh_host_ed25519_key"


@dataclass(frozen=True)
class HostKey:
    private_openssh: bytes  # "-----BEGIN OPENSSH PRIVATE KEY-----..."
    public_line: str  # "ssh-ed25519 AAAA... root@<hostname>"

    @property
    def public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` without a comment (what known_hosts and sshd compare)."""
        return " ".join(self.public_line.split()[:2])


def generate(hostname: str) -> HostKey:
    key = ed25519.Ed25519PrivateKey.generate()
    return from_private(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                          serialization.NoEncryption()),
        hostname,
    )


def from_private(private_openssh: bytes, hostname: str) -> HostKey:
    """Load a stored key (raises ValueError when it is not an unencrypted ed25519 key)."""
    key = serialization.load_ssh_private_key(private_openssh, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("not an ed25519 key")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(private_openssh=private_openssh, public_line=f"{public.decode()} root@{hostname}")


def known_host_names(address: str, hostname: str, port: int = 22) -> list[str]:
    """The names ssh looks up: ``addr`` or ``[addr]:port``, and the hostname."""
    if port == 22:
        return [address, hostname]
    return [f"[{address}]:{port}", f"[{hostname}]:{port}"]


def known_hosts(entries: Iterable[tuple[list[str], HostKey]]) -> str:
    """``known_hosts`` text: one line per node, its names comma-separated."""
    lines = ["# Written by piimg: the SSH host keys it generated for the nodes of this cluster."]
    lines += [f"{','.join(names)} {key.public_key}" for names, key in entries]
    return "\n".join(lines) + "\n"
