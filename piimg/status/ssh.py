"""Reading files from nodes with the system ``ssh`` client.

BatchMode (never a password prompt), ``StrictHostKeyChecking=yes`` always.
For a cluster piimg built, the node's host key was generated on this machine
(piimg.identity) and ``.piimg/known_hosts`` holds it: ssh is given that file
only, looked up under the node's hostname (``HostKeyAlias``), so the first
contact is already verified and a re-flashed node (same key) still matches.
For other clusters the user's own known_hosts is used, and a first contact
fails with a sentence that says how to check and accept the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from piimg.errors import CommandFailed, PiimgError
from piimg.run import run


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str
    port: int = 22
    #: an ssh_config file (``ssh -F``); default from $PIIMG_SSH_CONFIG, else ssh's own
    config_file: str | None = None
    connect_timeout: int = 10
    #: piimg's known_hosts (.piimg/known_hosts); None: the user's own files
    known_hosts: str | None = None
    #: the name the node's key is listed under in ``known_hosts`` (its hostname)
    host_key_alias: str | None = None
    #: the node's hostname, for messages ("is k8s-master booted?")
    node: str | None = None

    def argv(self, remote_command: str) -> list[str]:
        argv = ["ssh"]
        config_file = self.config_file or os.environ.get("PIIMG_SSH_CONFIG")
        if config_file:
            argv += ["-F", config_file]
        if self.known_hosts:
            # -o beats any ssh_config: only the keys piimg generated count, and
            # only their type is negotiated.
            argv += [
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "UpdateHostKeys=no",
                "-o", "HostKeyAlgorithms=ssh-ed25519",
            ]
            if self.host_key_alias:
                argv += ["-o", f"HostKeyAlias={self.host_key_alias}"]
        argv += [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-p", str(self.port),
            "-l", self.user,
            self.host,
            remote_command,
        ]
        return argv


def read_remote_file(target: SshTarget, path: str, *, sudo: bool = True, timeout: float = 30) -> bytes:
    """The content of ``path`` on the node; root-only files are read with ``sudo -n``."""
    quoted = "'" + path.replace("'", "'\\''") + "'"
    command = f"cat {quoted}"
    if sudo:
        # k3s writes k3s.yaml 0600 root: our user reads it through passwordless
        # sudo (Raspberry Pi OS gives the first user NOPASSWD sudo).
        command = f"if [ -r {quoted} ]; then cat {quoted}; else sudo -n cat {quoted}; fi"
    try:
        return run(target.argv(command), timeout=timeout).stdout
    except CommandFailed as exc:
        raise _explain(target, path, exc) from None


class SshFailed(PiimgError):
    """An SSH read failed; ``kind`` says how (for judgements that look past the sentence)."""

    HOST_KEY_UNKNOWN = "host-key-unknown"
    HOST_KEY_CHANGED = "host-key-changed"
    LOGIN_REFUSED = "login-refused"
    UNREACHABLE = "unreachable"
    NO_FILE = "no-file"
    SUDO = "sudo"
    OTHER = "other"

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


#: ssh's words for "nothing answered at that address and port" (OpenSSH's ssh_connect_direct: strerror).
_NO_ANSWER = ("Connection refused", "Connection timed out", "No route to host", "Network is unreachable",
              "Operation timed out")


def _explain(target: SshTarget, path: str, exc: CommandFailed) -> SshFailed:
    err = exc.stderr
    where = f"{target.user}@{target.host}:{path}"
    if target.known_hosts and ("Host key verification failed" in err or "IDENTIFICATION HAS CHANGED" in err
                               or "no matching host key type" in err):
        # the node shows another key than piimg generated for it: a stranger, or a
        # card whose cloud-init never applied user-data (see status.seedrace)
        name = target.host_key_alias or target.host
        return SshFailed(
            SshFailed.HOST_KEY_CHANGED,
            f"{target.host}: the SSH host key is not the one piimg generated for {name} ({target.known_hosts})",
            hint="another machine has this address, or the card was not flashed from an image piimg built here: "
                 "rebuild (the key is kept) and re-flash it",
        )
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return SshFailed(
            SshFailed.HOST_KEY_CHANGED,
            f"{target.host}: the node's SSH host key changed (re-flashed?)",
            hint=f"if you re-flashed it: ssh-keygen -R {target.host}",
        )
    if "Host key verification failed" in err or "No ED25519 host key is known" in err or ("host key" in err.lower() and "known" in err):
        return SshFailed(
            SshFailed.HOST_KEY_UNKNOWN,
            f"{target.host}: the node's SSH host key is not known yet",
            hint=f"check it and accept it once: ssh -p {target.port} {target.user}@{target.host} true",
        )
    if any(why in err for why in _NO_ANSWER):
        name = target.node or target.host_key_alias or target.host
        return SshFailed(
            SshFailed.UNREACHABLE,
            f"{where}: {exc.tail}",
            hint=f"is {name} booted? First boot takes a few minutes before SSH answers; "
                 "piimg status shows how far it got",
        )
    if "Permission denied" in err:
        return SshFailed(SshFailed.LOGIN_REFUSED, f"{where}: SSH login refused", hint="is your key in access.ssh_authorized_keys?")
    if "No such file" in err:
        return SshFailed(SshFailed.NO_FILE, f"{where}: no such file (has first boot got that far?)")
    if "a password is required" in err or "sudo:" in err:
        return SshFailed(SshFailed.SUDO, f"{where}: not readable and sudo needs a password")
    return SshFailed(SshFailed.OTHER, f"{where}: {exc.tail}")
