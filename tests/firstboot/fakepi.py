"""A fake Pi for first-boot tests: a root directory, a payload, a loopback server.

``FakePi`` lays out the files first boot reads (``/proc/net/route``, cgroup
controllers, the boot partition with the payload), simulates the first-run
hook (copy to ``/opt/piimg``) and runs the program in a child process through
``driver.py`` with a recording runner. ``K3sServer`` is a real HTTP server on
127.0.0.1 serving the server's ``/ping`` (and an ``/install.sh`` first boot
must never ask for: k3s comes from the payload, as a build lays it out:
``piimg/k3s/install.sh`` and ``piimg/k3s/k3s`` with their SHA-256 in node.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from piimg.firstboot.nodeconf import IngressRef, K3sConfig, NodeConfig
from piimg.versions import METALLB_NAMESPACE

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "piimg" / "firstboot"
DRIVER = Path(__file__).with_name("driver.py")

TOKEN = "K10c0ffee5ecret0token0value::server:feedface0ddba11"
BGP_PASSWORD = "bgp-md5-very-secret"
VERSION = "v1.36.3+k3s1"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "network": 5, "clock": 5, "download": 5,
        "server": 5, "node": 5, "metallb": 5, "ingress": 5, "install": 30, "http": 2}

BINARY = b"\x7fELF fake k3s binary for the first-boot tests\n"

STANDIN = """#!/bin/sh
# stand-in for k3s's install.sh: records what it was given into the fake root
R="${0%/var/lib/piimg/k3s-install.sh}"  # the fake root: the script runs from there
D="$R/standin"
mkdir -p "$D"
n=$(( $(cat "$D/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$D/count"
env > "$D/env.$n"
printf '%s\\n' "$0" "$@" > "$D/args.$n"
# what k3s would find when it first starts: the CA files and the node password
(cd "$R/var/lib/rancher/k3s/server/tls" 2>/dev/null && find . -type f | sort) > "$D/tls.$n"
cat "$R/etc/rancher/node/password" > "$D/node-password.$n" 2>/dev/null
if [ -e "$D/block" ]; then touch "$D/started"; sleep 30; fi
if [ -e "$D/fail" ]; then echo "[ERROR]  Download failed (stand-in)" >&2; exit 1; fi
echo "[INFO]  stand-in: k3s $INSTALL_K3S_VERSION$INSTALL_K3S_CHANNEL installed as $INSTALL_K3S_EXEC"
"""


class K3sServer:
    """Loopback HTTP: /install.sh (the stand-in), /ping and /cacerts (the k3s server)."""

    def __init__(self) -> None:
        self.script = "#!/bin/sh\nexit 0\n"
        self.ping_ok = True
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path == "/install.sh":
                    body, code = outer.script.encode(), 200
                elif self.path in ("/ping", "/cacerts"):
                    body, code = (b"pong", 200) if outer.ping_ok else (b"starting", 503)
                else:
                    body, code = b"not found", 404
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def node_config(role: str, server: K3sServer, **changes: Any) -> NodeConfig:
    hostname = "k8s-master" if role == "server" else "k8s-worker1"
    server_url = None if role == "server" else server.url
    cfg = NodeConfig(
        cluster="homelab",
        hostname=hostname,
        role=role,
        initial_server=role == "server",
        address="10.0.2.10" if role == "server" else "10.0.2.11",
        prefixlen=23,
        gateway="10.0.2.1",
        dns=["8.8.8.8", "8.8.4.4"],
        user="pi",
        init_format="systemd",
        k3s=K3sConfig(
            version=VERSION,
            config_yaml=f"token: {TOKEN}\nnode-name: {hostname}\n",
            server_url=server_url,
            arch="arm64",
            binary_sha256=hashlib.sha256(BINARY).hexdigest(),
            registry_host="localhost",
        ),
        metallb_namespace=METALLB_NAMESPACE,
        secrets={"k3s_token": TOKEN, "bgp_password": BGP_PASSWORD},
        manifests=["metallb.yaml", "metallb-config.yaml"] if role == "server" else [],
        # the Service name piimg.manifests.addons.ingress_service gives for ingress: nginx
        ingress=IngressRef("nginx-ingress", "nginx-ingress-controller") if role == "server" else None,
        timeouts=dict(FAST),
    )
    return replace(cfg, **changes)


def kube(kind: str, *, ready: bool = True) -> str:
    if kind == "node":
        return json.dumps({"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})
    if kind == "pods":
        items = [] if not ready else [
            {"metadata": {"labels": {"app": "metallb", "component": c}}, "status": {"phase": "Running"}}
            for c in ("controller", "speaker")
        ]
        return json.dumps({"items": items})
    return json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.4.1"}] if ready else []}}})


class FakePi:
    def __init__(self, tmp: Path, server: K3sServer, role: str = "server", **changes: Any) -> None:
        self.root = tmp / "root"
        self.ctl = tmp / "ctl"
        self.server = server
        self.config = node_config(role, server, **changes)
        self.boot = self.root / "boot" / "firmware"
        self.payload = self.root / "opt" / "piimg"
        self.ctl.mkdir(parents=True)
        self.script = STANDIN
        server.script = "#!/bin/sh\necho 'first boot fetched the install script' >&2; exit 1\n"
        if not self.config.k3s.install_sha256:
            self.config.k3s.install_sha256 = hashlib.sha256(self.script.encode()).hexdigest()
        self.write("etc/hostname", "raspberrypi\n")
        self.write("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
        self.write("proc/net/route", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                   "eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\n"
                   "eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FEFFFF\n")
        self.write("run/systemd/timesync/synchronized", "")
        self.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
        self.write("proc/sys/kernel/random/boot_id", "boot-1\n")
        self.write("boot/firmware/cmdline.txt", "console=tty1 root=PARTUUID=1234-02 rootwait cgroup_memory=1 cgroup_enable=memory\n")
        bp = self.boot / "piimg"
        shutil.copytree(PACKAGE, bp / "firstboot", ignore=shutil.ignore_patterns("__pycache__", "*.service"))
        shutil.copy(PACKAGE / "piimg-firstboot.service", bp / "piimg-firstboot.service")
        (bp / "node.json").write_text(self.config.to_json())
        (bp / "k3s").mkdir()
        (bp / "k3s" / "install.sh").write_text(self.script)
        (bp / "k3s" / "k3s").write_bytes(BINARY)
        if self.config.manifests:
            (bp / "manifests").mkdir()
            (bp / "manifests" / "metallb.yaml").write_text("kind: Namespace\n")
            (bp / "manifests" / "metallb-config.yaml").write_text(f"kind: Secret\nstringData: {{password: {BGP_PASSWORD}}}\n")
        self.responses([
            (["k3s", "kubectl", "get", "node"], [kube("node")]),
            (["k3s", "kubectl", "-n", METALLB_NAMESPACE, "get", "pods"], [kube("pods")]),
            (["k3s", "kubectl", "-n", "nginx-ingress", "get", "service"], [kube("service")]),
            (["timedatectl"], ["yes\n"]),
        ])

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def responses(self, rules: list[tuple[list[str], list[Any]]]) -> None:
        out = []
        for prefix, seq in rules:
            out.append({"prefix": prefix, "responses": [r if isinstance(r, dict) else {"rc": 0, "stdout": r} for r in seq]})
        (self.ctl / "responses.json").write_text(json.dumps(out))

    def first_run_hook(self) -> None:
        """What firstrun.sh / cloud-init does: copy the payload to /opt/piimg (0700)."""
        shutil.copytree(self.boot / "piimg", self.payload)
        os.chmod(self.payload, 0o700)

    def argv(self, *extra: str, python: str = sys.executable) -> list[str]:
        return [python, "-I", str(DRIVER), "run", "--config", str(self.payload / "node.json"),
                "--root", str(self.root), *extra]

    def env(self, kill: str = "") -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FB_PAYLOAD": str(self.payload),
               "FB_CTL": str(self.ctl), "K3S_TOKEN": "leaked-from-service-env"}
        if kill:
            env["FB_KILL"] = kill
        return env

    def run(self, *extra: str, kill: str = "", python: str = sys.executable, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if not self.payload.exists():
            self.first_run_hook()
        return subprocess.run(self.argv(*extra, python=python), env=self.env(kill), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self, *extra: str) -> subprocess.Popen[str]:
        if not self.payload.exists():
            self.first_run_hook()
        return subprocess.Popen(self.argv(*extra), env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    @staticmethod
    def kill_group(proc: subprocess.Popen[str]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def wait_for_file(self, rel: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not (self.root / rel).exists():
            assert time.monotonic() < deadline, f"{rel} never appeared"
            time.sleep(0.02)

    # -- observations ---------------------------------------------------------------
    def calls(self) -> list[dict[str, Any]]:
        path = self.ctl / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def argvs(self, *prefix: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls() if c["argv"][: len(prefix)] == list(prefix)]

    def status(self) -> dict[str, Any]:
        return json.loads((self.boot / "piimg" / "status.json").read_text())

    def state(self) -> dict[str, Any]:
        return json.loads((self.root / "var/lib/piimg/state.json").read_text())

    def installs(self) -> int:
        count = self.root / "standin" / "count"
        return int(count.read_text()) if count.exists() else 0

    def install_env(self, n: int = 1) -> dict[str, str]:
        lines = (self.root / "standin" / f"env.{n}").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def install_args(self, n: int = 1) -> list[str]:
        return (self.root / "standin" / f"args.{n}").read_text().splitlines()

    def snapshot(self) -> dict[str, tuple[int, str]]:
        """The fake root's end state: relative path -> (mode, content), volatile files left out."""
        volatile = {"var/lib/piimg/state.json", "boot/firmware/piimg/status.json", "boot/firmware/piimg/firstboot.log"}
        out = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_dir() or rel in volatile or rel.startswith("standin/") or "__pycache__" in rel:
                continue
            text = path.read_text(errors="replace").replace(str(self.root), "<ROOT>").replace(self.server.url, "<URL>")
            out[rel] = (path.stat().st_mode & 0o7777, text)
        return out

    def log(self) -> str:
        path = self.boot / "piimg" / "firstboot.log"
        return path.read_text() if path.exists() else ""


def find_python39() -> str | None:
    """A working Python 3.9 (the oldest first boot supports), if this machine has one."""
    candidates = [shutil.which("python3.9") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    if pyenv.is_dir():
        candidates = [str(p / "bin" / "python3.9") for p in sorted(pyenv.glob("3.9*"))] + candidates
    for cand in candidates:
        if not cand or not os.access(cand, os.X_OK):
            continue
        probe = subprocess.run([cand, "-I", "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
                               capture_output=True, text=True, check=False)
        if probe.stdout.strip() == "True":
            return cand
    return None
