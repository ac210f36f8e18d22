"""An OpenSSH server on a loopback address for tests, with throwaway host and user keys."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Sshd:
    host: str
    port: int
    user: str
    client_config: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_sshd(tmp: Path, *, host_key_pem: bytes | None = None, host: str = "127.0.0.1") -> Sshd:
    """sshd on ``host`` (a loopback address: a node's, to stand in for it); ``host_key_pem``
    (an OpenSSH private key) replaces the throwaway host key."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None or shutil.which("ssh") is None:
        pytest.skip("openssh-server/openssh-client not installed")
    if os.geteuid() != 0:
        pytest.skip("the test sshd needs root to log in as a real user")
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o700)
    host_key, user_key = tmp / "host_ed25519", tmp / "id_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    if host_key_pem is not None:
        host_key.write_bytes(host_key_pem)
        pub = subprocess.run(["ssh-keygen", "-y", "-f", str(host_key)], check=True, capture_output=True, text=True)
        host_key.with_suffix(".pub").write_text(pub.stdout)
    auth = tmp / "authorized_keys"
    auth.write_text(user_key.with_suffix(".pub").read_text())
    auth.chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True)
    port = _free_port(host)
    config = tmp / "sshd_config"
    config.write_text(
        f"ListenAddress {host}\nPort {port}\nHostKey {host_key}\nPidFile {tmp}/sshd.pid\n"
        f"AuthorizedKeysFile {auth}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
    )
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    known = tmp / "known_hosts"
    known.write_text(f"[{host}]:{port} {host_key.with_suffix('.pub').read_text()}")
    client = tmp / "ssh_config"
    client.write_text(
        f"Host *\n  IdentityFile {user_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
        "  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    for _ in range(100):
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.skip(f"sshd could not start: {err.strip()}")
            time.sleep(0.05)
    return Sshd(host=host, port=port, user="root", client_config=client, proc=proc)
