"""Step 5: install k3s with the official install script, pinned version.

The token reaches k3s only through ``/etc/rancher/k3s/config.yaml`` (0600):
never the environment or argv, where ``ps`` and the journal would show it.
Install script variables: https://docs.k3s.io/reference/env-variables
Air-gap install: https://docs.k3s.io/installation/airgap
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import urllib.error
import urllib.request
from typing import Dict, Optional, Tuple

from .context import Context, StepError
from .runner import CommandError
from .store import write_atomic

CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
SCRIPT_PATH = "/var/lib/piimg/k3s-install.sh"
BINARY_PATH = "/usr/local/bin/k3s"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+")


def install_env(version: str, role: str, server_url: Optional[str], *, airgap: bool) -> Dict[str, str]:
    """The install script's environment. Deliberately no K3S_TOKEN."""
    env = {"INSTALL_K3S_EXEC": "server" if role == "server" else "agent"}
    if _VERSION_RE.match(version):
        env["INSTALL_K3S_VERSION"] = version
    else:  # a channel name: stable, latest, v1.31, ...
        env["INSTALL_K3S_CHANNEL"] = version
    if role != "server":
        if not server_url:
            raise StepError("node.json: k3s.server_url is required for an agent")
        env["K3S_URL"] = server_url
    if airgap:
        env["INSTALL_K3S_SKIP_DOWNLOAD"] = "true"
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


def _copy(src: str, dst: str, mode: int) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".piimg-tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def place_airgap(ctx: Context) -> bool:
    """Install the payload's k3s binary and images, if it carries them."""
    binary = os.path.join(ctx.payload_dir, "k3s", "k3s")
    if not os.path.isfile(binary):
        return False
    _copy(binary, ctx.path(BINARY_PATH), 0o755)
    images = os.path.join(ctx.payload_dir, "k3s", "images")
    if os.path.isdir(images):
        for name in sorted(os.listdir(images)):
            _copy(os.path.join(images, name), os.path.join(ctx.path(IMAGES_DIR), name), 0o600)
    ctx.log.info("air-gap: installed k3s binary and images from the payload")
    return True


def fetch_script(ctx: Context) -> str:
    local = os.path.join(ctx.payload_dir, "k3s", "install.sh")
    dest = ctx.path(SCRIPT_PATH)
    if os.path.isfile(local):
        _copy(local, dest, 0o700)
        return dest
    url = ctx.config.k3s.install_url
    body = {}

    def attempt() -> Tuple[bool, str]:
        try:
            status, data = http_get(url, ctx.timeouts["http"])
        except urllib.error.HTTPError as exc:
            return False, "%s answered HTTP %d" % (url, exc.code)
        except (OSError, ValueError) as exc:
            return False, "%s: %s" % (url, getattr(exc, "reason", exc))
        if not data.startswith(b"#!"):
            return False, "%s did not return a shell script (HTTP %d)" % (url, status)
        body["data"] = data
        return True, "fetched %s (%d bytes)" % (url, len(data))

    ctx.log.info(ctx.wait_for("the k3s install script", attempt, "download"))
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    write_atomic(dest, body["data"].decode("utf-8", "replace"), 0o700)
    return dest


def step_k3s(ctx: Context) -> None:
    cfg = ctx.config
    if not cfg.k3s.config_yaml.strip():
        raise StepError("node.json: k3s.config_yaml is empty (was node.json already scrubbed?)")
    config_path = ctx.path(CONFIG_PATH)
    os.makedirs(os.path.dirname(config_path), mode=0o755, exist_ok=True)
    write_atomic(config_path, cfg.k3s.config_yaml, 0o600)
    ctx.log.info("wrote %s (0600)" % CONFIG_PATH)
    airgap = place_airgap(ctx)
    script = fetch_script(ctx)
    if cfg.k3s.server_url:
        url = cfg.k3s.server_url
        ctx.log.info(ctx.wait_for("the k3s server at %s" % url, lambda: server_answers(url, ctx.timeouts["http"]), "server"))
    env = install_env(cfg.k3s.version, cfg.role, cfg.k3s.server_url, airgap=airgap)
    try:
        res = ctx.run(["sh", script], env=env, timeout=ctx.timeouts["install"])
    except CommandError as exc:
        raise StepError("k3s install script failed: %s" % exc) from exc
    for line in (res.stdout + res.stderr).splitlines()[-20:]:
        ctx.log.info("  " + line)
    ctx.log.info("k3s %s installed as %s" % (cfg.k3s.version, env["INSTALL_K3S_EXEC"]))
