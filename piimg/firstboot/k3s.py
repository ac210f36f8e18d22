"""Step 5: install k3s from the payload: verified binary, install script at the pinned tag.

Nothing is downloaded here: the build fetched install.sh at the release's
tag, the binary (and with ``cluster.airgap`` the images) and verified them;
this step checks them against the digests in node.json once more (the FAT
is easy to corrupt), places the binary at ``/usr/local/bin/k3s`` and runs
the script with ``INSTALL_K3S_SKIP_DOWNLOAD=true``.

The token reaches k3s only through ``/etc/rancher/k3s/config.yaml`` (0600):
never the environment or argv, where ``ps`` and the journal would show it.
Install script variables: https://docs.k3s.io/reference/env-variables
Air-gap install: https://docs.k3s.io/installation/airgap
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import ssl
import urllib.error
import urllib.request
from typing import Dict, Optional, Tuple

from .context import Context, StepError
from .nodeconf import K3S_BINARY, K3S_DIR, K3S_IMAGES, K3S_SCRIPT
from .runner import CommandError
from .store import write_atomic

CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
SCRIPT_PATH = "/var/lib/piimg/k3s-install.sh"
BINARY_PATH = "/usr/local/bin/k3s"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+")


def install_env(version: str, role: str, server_url: Optional[str]) -> Dict[str, str]:
    """The install script's environment. Deliberately no K3S_TOKEN.

    ``INSTALL_K3S_SKIP_DOWNLOAD=true``: the script downloads neither the
    binary nor its hash; it checks that ``/usr/local/bin/k3s`` is executable
    (``verify_k3s_is_executable``) and installs the service around it.
    """
    if not _VERSION_RE.match(version):
        raise StepError("node.json: k3s.version %r is not a release (a build pins one)" % version)
    env = {
        "INSTALL_K3S_EXEC": "server" if role == "server" else "agent",
        "INSTALL_K3S_VERSION": version,
        "INSTALL_K3S_SKIP_DOWNLOAD": "true",
    }
    if role != "server":
        if not server_url:
            raise StepError("node.json: k3s.server_url is required for an agent")
        env["K3S_URL"] = server_url
    return env


def http_get(url: str, timeout: float, *, verify: bool = True) -> Tuple[int, bytes]:
    ctx = None
    if url.startswith("https:") and not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, headers={"User-Agent": "piimg-firstboot"})
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
        return int(resp.status), resp.read()


def server_answers(url: str, timeout: float) -> Tuple[bool, str]:
    """True once the k3s server's supervisor answers ``/ping`` (or ``/cacerts``).

    Both endpoints need no authentication, and no secret is sent, so the
    certificate (from the cluster's own CA) is not verified here: this is
    only a liveness check. The join verifies it: piimg gives every node the
    secure token ``K10<CA hash>::server:<secret>``, and k3s compares the
    hash of the CA bundle from ``/cacerts`` with it before it sends the
    secret (k3s-io/k3s@0566d457:pkg/clientaccess/token.go,
    ``validateCAHash``). A bare secret (short token) would trust any CA.
    """
    base = url.rstrip("/")
    last = ""
    for path in ("/ping", "/cacerts"):
        try:
            status, _ = http_get(base + path, timeout, verify=False)
        except urllib.error.HTTPError as exc:
            last = "%s%s answered HTTP %d" % (base, path, exc.code)
            continue
        except (OSError, ValueError) as exc:
            last = "%s%s: %s" % (base, path, getattr(exc, "reason", exc))
            continue
        if status == 200:
            return True, "%s%s answers" % (base, path)
        last = "%s%s answered HTTP %d" % (base, path, status)
    return False, "server not answering yet (is the server node up, its first boot done?): " + last


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(ctx: Context, rel: str, want: str) -> str:
    """The payload file ``rel``, checked against the digest the build recorded."""
    path = os.path.join(ctx.payload_dir, K3S_DIR, rel)
    if not want:
        raise StepError("node.json: no SHA-256 recorded for k3s/%s: the card was built without k3s; rebuild it" % rel)
    if not os.path.isfile(path):
        raise StepError("the payload lacks k3s/%s (%s): rebuild the card" % (rel, path))
    got = sha256_of(path)
    if got != want:
        raise StepError("k3s/%s in the payload has SHA-256 %s, the build recorded %s: the card is corrupt; "
                        "rebuild and reflash it" % (rel, got, want))
    return path


def _copy(src: str, dst: str, mode: int) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".piimg-tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def check_machine(machine: str, arch: str) -> None:
    """The payload's k3s build must run on this kernel.

    ARMv6 (Pi 1, Zero, Zero W) runs the 32-bit OS, but k3s-armhf is an ARMv7
    binary; k3s-arm64 needs a 64-bit kernel (uname -m aarch64).
    """
    if machine.startswith("armv6"):
        raise StepError("this board is ARMv6 (uname -m: %s; Pi 1, Zero or Zero W): k3s publishes no ARMv6 "
                        "build, so it cannot run here; use a Pi 2 or newer" % machine)
    if arch == "arm64" and machine.startswith("armv"):
        raise StepError("the card carries k3s for arm64, but this kernel is 32-bit (uname -m: %s): rebuild "
                        "with image.arch: armhf (or use a 64-bit image)" % machine)


def place_k3s(ctx: Context) -> str:
    """Put the verified payload in place: binary, airgap images, install script; returns the script's path."""
    k = ctx.config.k3s
    binary = _verified(ctx, K3S_BINARY, k.binary_sha256)
    script = _verified(ctx, K3S_SCRIPT, k.install_sha256)
    images = None
    if k.airgap_images:
        images = _verified(ctx, "%s/%s" % (K3S_IMAGES, k.airgap_images), k.airgap_sha256 or "")
    _copy(binary, ctx.path(BINARY_PATH), 0o755)
    ctx.log.info("installed the k3s %s binary (%s, sha256 %s) as %s" % (k.version, k.arch, k.binary_sha256, BINARY_PATH))
    if images is not None:
        _copy(images, os.path.join(ctx.path(IMAGES_DIR), os.path.basename(images)), 0o600)
        ctx.log.info("air-gap: placed %s in %s" % (os.path.basename(images), IMAGES_DIR))
    dest = ctx.path(SCRIPT_PATH)
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    _copy(script, dest, 0o700)
    return dest


def step_k3s(ctx: Context) -> None:
    cfg = ctx.config
    if not cfg.k3s.config_yaml.strip():
        raise StepError("node.json: k3s.config_yaml is empty (was node.json already scrubbed?)")
    config_path = ctx.path(CONFIG_PATH)
    os.makedirs(os.path.dirname(config_path), mode=0o755, exist_ok=True)
    write_atomic(config_path, cfg.k3s.config_yaml, 0o600)
    ctx.log.info("wrote %s (0600)" % CONFIG_PATH)
    check_machine(os.uname().machine, cfg.k3s.arch)
    script = place_k3s(ctx)
    if cfg.k3s.server_url:
        url = cfg.k3s.server_url
        ctx.log.info(ctx.wait_for("the k3s server at %s" % url, lambda: server_answers(url, ctx.timeouts["http"]), "server"))
    env = install_env(cfg.k3s.version, cfg.role, cfg.k3s.server_url)
    try:
        res = ctx.run(["sh", script], env=env, timeout=ctx.timeouts["install"])
    except CommandError as exc:
        raise StepError("k3s install script failed: %s" % exc) from exc
    for line in (res.stdout + res.stderr).splitlines()[-20:]:
        ctx.log.info("  " + line)
    ctx.log.info("k3s %s installed as %s" % (cfg.k3s.version, env["INSTALL_K3S_EXEC"]))
