"""Step: the node's identity made on the host, in place before k3s first starts.

* SSH host key: cloud-init (``ssh_keys``) or firstrun.sh already installed
  it; this step checks and repairs. Raspberry Pi OS's
  ``regenerate_ssh_host_keys.service`` (WantedBy=multi-user.target) deletes
  every ``/etc/ssh/ssh_host_*_key*`` and runs ``ssh-keygen -A`` once
  (raspberrypi-sys-mods@3af395f6:usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys
  and debian/raspberrypi-sys-mods.regenerate_ssh_host_keys.service); it is not
  ordered against cloud-init, so it is disabled here and the key is put back
  if it ran.
* k3s node password at ``/etc/rancher/node/password``: k3s reads it when it
  exists and only generates one otherwise (k3s-io/k3s@001a6d94:
  pkg/agent/config/config.go ``ensureNodePassword``), so a re-flashed node
  presents the password the server already holds.
* Servers: the cluster CA files in ``/var/lib/rancher/k3s/server/tls``, which
  k3s uses instead of generating its own when they are there at first start.
"""

from __future__ import annotations

import os
from typing import Dict

from .context import Context, StepError
from .runner import CommandError
from .store import write_atomic

HOST_KEY_SECRET = "ssh_host_ed25519_key"
NODE_PASSWORD_SECRET = "node_password"
TLS_SECRET_PREFIX = "k3s_tls/"
HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key"
NODE_PASSWORD_PATH = "/etc/rancher/node/password"
K3S_TLS_DIR = "/var/lib/rancher/k3s/server/tls"
REGENERATE_UNIT = "regenerate_ssh_host_keys.service"
SSH_DIR = "/etc/ssh"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def _disable_regeneration(ctx: Context) -> None:
    wants = ctx.path("/etc/systemd/system/multi-user.target.wants/" + REGENERATE_UNIT)
    if os.path.lexists(wants):
        os.unlink(wants)
        ctx.log.info("disabled %s (it would replace the SSH host key)" % REGENERATE_UNIT)


def install_host_key(ctx: Context, private: str, public: str) -> bool:
    """Make sshd's ed25519 host key the one the host generated; True if it changed anything."""
    _disable_regeneration(ctx)
    key_path = ctx.path(HOST_KEY_PATH)
    if _read(key_path) == private and _read(key_path + ".pub").split()[:2] == public.split()[:2]:
        ctx.log.info("SSH host key is the one piimg generated (%s)" % public.split()[0])
        return False
    ssh_dir = ctx.path(SSH_DIR)
    os.makedirs(ssh_dir, mode=0o755, exist_ok=True)
    # Only the known key: a host key piimg does not know would be offered as well.
    ours = (key_path, key_path + ".pub")
    for name in sorted(os.listdir(ssh_dir)):
        path = os.path.join(ssh_dir, name)
        if name.startswith("ssh_host_") and name.endswith(("_key", "_key.pub")) and path not in ours:
            os.unlink(path)
    write_atomic(key_path, private, 0o600)
    write_atomic(key_path + ".pub", public.rstrip("\n") + "\n", 0o644)
    ctx.log.info("installed the SSH host key piimg generated (%s)" % HOST_KEY_PATH)
    try:
        ctx.run(["systemctl", "try-restart", "ssh.service"])
    except CommandError as exc:
        ctx.log.warn("could not restart ssh.service: %s (the key is used from the next boot)" % exc)
    return True


def place_tls(ctx: Context, files: Dict[str, str]) -> None:
    """The CA files, unless k3s already has them; different ones already there are an error."""
    base = ctx.path(K3S_TLS_DIR)
    placed = 0
    for name in sorted(files):
        if name.startswith("/") or ".." in name.split("/"):
            raise StepError("node.json: bad k3s_tls file name %r" % name)
        dest = os.path.join(base, name)
        current = _read(dest) if os.path.exists(dest) else None
        if current == files[name]:
            continue
        if current is not None:
            raise StepError(
                "%s/%s differs from the cluster CA piimg generated: k3s has already made its own CA here. "
                "Re-flash the node, or remove /var/lib/rancher/k3s on it" % (K3S_TLS_DIR, name)
            )
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        write_atomic(dest, files[name], 0o600)
        placed += 1
    ctx.log.info("cluster CA in %s (%d file(s) written, %d already there)" % (K3S_TLS_DIR, placed, len(files) - placed))


def step_identity(ctx: Context) -> None:
    cfg = ctx.config
    secrets = cfg.secrets
    key = secrets.get(HOST_KEY_SECRET)
    if key and cfg.ssh_host_public_key:
        install_host_key(ctx, key, cfg.ssh_host_public_key)
    password = secrets.get(NODE_PASSWORD_SECRET)
    if password:
        path = ctx.path(NODE_PASSWORD_PATH)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if _read(path).strip() != password:
            write_atomic(path, password + "\n", 0o600)  # the format k3s writes: hex and a newline, 0600
            ctx.log.info("wrote %s (0600)" % NODE_PASSWORD_PATH)
    tls = {k[len(TLS_SECRET_PREFIX):]: v for k, v in secrets.items() if k.startswith(TLS_SECRET_PREFIX)}
    if tls:
        if cfg.role != "server":
            raise StepError("node.json: k3s CA files given to an agent")
        place_tls(ctx, tls)
