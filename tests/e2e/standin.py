"""Servers on 127.0.0.1 that stand in for the internet the node would use.

The guest reaches them only through qemu ``guestfwd`` rules (see qemu.py).

``INSTALL_SH`` stands in for k3s's install.sh (the test puts it into the
payload in place of the pinned script, with its digest): instead of installing k3s it
records how it was called (argv, full environment, the k3s config file, the
server manifests present) into ``/var/lib/piimg-e2e/install.json`` on the
guest, which the test reads from the ext4 partition after the boot, and it
installs ``K3S_STANDIN`` as ``/usr/local/bin/k3s``.

``K3S_STANDIN`` answers the ``k3s kubectl get ... -o json`` questions first
boot asks (node Ready, MetalLB pods Running, the ingress Service's external
IP) from the manifests k3s would apply: only what the placed manifests
declare exists, so a missing or misplaced manifest still fails the test.
Every call is logged to ``/var/lib/piimg-e2e/k3s-calls.log``.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

INSTALL_SH: Final = r"""#!/bin/sh
# piimg e2e stand-in for the k3s install script (https://get.k3s.io):
# records argv, environment and /etc/rancher/k3s/config.yaml, installs nothing.
set -eu
mkdir -p /var/lib/piimg-e2e
python3 - "$@" <<'PY'
import hashlib, json, os, sys
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
manifests = "/var/lib/rancher/k3s/server/manifests"
tls = "/var/lib/rancher/k3s/server/tls"
record = {
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "uid": os.getuid(),
    "config_yaml": read("/etc/rancher/k3s/config.yaml"),
    "manifests": sorted(os.listdir(manifests)) if os.path.isdir(manifests) else None,
    # what k3s would find at its first start: the CA files and the node password
    "tls": {os.path.relpath(os.path.join(d, n), tls): hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest()
            for d, _, names in os.walk(tls) for n in names},
    "node_password": read("/etc/rancher/node/password"),
}
with open("/var/lib/piimg-e2e/install.json", "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
PY
mkdir -p /usr/local/bin
cat > /usr/local/bin/k3s <<'K3S'
@K3S_STANDIN@
K3S
chmod 0755 /usr/local/bin/k3s
echo "piimg-e2e: stand-in k3s installer ran (version ${INSTALL_K3S_VERSION:-unset})"
"""

K3S_STANDIN: Final = r"""#!/usr/bin/python3
# piimg e2e stand-in for the k3s binary: `k3s kubectl get ... -o json` answered
# from the manifests in the server manifests folder (what k3s would deploy).
import ipaddress, json, os, re, socket, sys
MANIFESTS = "/var/lib/rancher/k3s/server/manifests"
args = sys.argv[1:]
with open("/var/lib/piimg-e2e/k3s-calls.log", "a") as f:
    f.write(json.dumps(args) + "\n")
def fail(msg):
    sys.stderr.write("k3s stand-in: %s\n" % msg)
    sys.exit(1)
if args[:1] != ["kubectl"]:
    fail("only kubectl is stood in for: %r" % args)
args = args[1:]
ns = "default"
if "-n" in args:
    i = args.index("-n")
    ns = args[i + 1]
    del args[i:i + 2]
if args[-2:] == ["-o", "json"]:
    args = args[:-2]
texts = []
if os.path.isdir(MANIFESTS):
    for name in sorted(os.listdir(MANIFESTS)):
        if os.path.isfile(os.path.join(MANIFESTS, name)):
            with open(os.path.join(MANIFESTS, name)) as f:
                texts.append(f.read())
docs = [d for t in texts for d in re.split(r"^---\s*$", t, flags=re.M)]
def declares(kind, name=None, namespace=None, field="namespace"):
    for d in docs:
        if not re.search(r"^kind:\s*%s\s*$" % kind, d, re.M):
            continue
        if name and not re.search(r"^\s+name:\s*['\"]?%s['\"]?\s*$" % re.escape(name), d, re.M):
            continue
        if namespace and not re.search(r"^\s+%s:\s*['\"]?%s['\"]?\s*$" % (field, re.escape(namespace)), d, re.M):
            continue
        return d
    return None
def chart_in(namespace):
    # what k3s's Helm controller would install into `namespace`
    return declares("HelmChart", namespace=namespace, field="targetNamespace")
if args[:2] == ["get", "node"] and len(args) == 3:
    if args[2] != socket.gethostname():
        fail('nodes "%s" not found' % args[2])
    print(json.dumps({"kind": "Node", "metadata": {"name": args[2]},
                      "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
elif args == ["get", "pods"]:
    items = []
    chart = chart_in(ns)
    # the MetalLB chart by reference (chart: ...metallb) or by content (HelmChart metallb with chartContent)
    if chart and (re.search(r"^\s+chart:.*metallb", chart, re.M) or (
            re.search(r"^\s+name:\s*metallb\s*$", chart, re.M) and re.search(r"^\s+chartContent:\s*\S", chart, re.M))):
        for comp in ("controller", "speaker"):
            items.append({"metadata": {"name": comp, "namespace": ns, "labels": {"app.kubernetes.io/component": comp}},
                          "status": {"phase": "Running"}})
    print(json.dumps({"kind": "List", "items": items}))
elif args[:2] == ["get", "service"] and len(args) == 3:
    chart = chart_in(ns)
    svc = declares("Service", args[2], ns)
    if not ((chart and "LoadBalancer" in chart) or (svc and "LoadBalancer" in svc)):
        fail('services "%s" not found' % args[2])
    pool = declares("IPAddressPool")
    cidr = re.search(r"-\s*['\"]?(\d+\.\d+\.\d+\.\d+/\d+)", pool or "")
    ingress = []
    if cidr:
        ingress = [{"ip": str(next(ipaddress.ip_network(cidr.group(1), strict=False).hosts()))}]
    print(json.dumps({"kind": "Service", "metadata": {"name": args[2], "namespace": ns},
                      "status": {"loadBalancer": {"ingress": ingress}}}))
else:
    fail("not stood in for: %r" % args)
"""
INSTALL_SH = INSTALL_SH.replace("@K3S_STANDIN@", K3S_STANDIN.strip())


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FileServer:
    """An HTTP server on 127.0.0.1 serving fixed files and logging requests."""

    files: dict[str, bytes]
    port: int = 0
    requests: list[Request] = field(default_factory=list)


@contextmanager
def http_server(files: dict[str, bytes], *, tls: tuple[Path, Path] | None = None) -> Iterator[FileServer]:
    state = FileServer(files=dict(files))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(Request("GET", self.path, dict(self.headers.items())))
            body = state.files.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        _wrap_tls(server, *tls)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def https_server(workdir: Path, paths: dict[str, bytes]) -> Iterator[FileServer]:
    """An HTTPS server on 127.0.0.1 with a throwaway self-signed certificate.

    Stands in for the k3s server's supervisor port (6443) that an agent's
    first boot polls (``/ping``) before it joins.
    """
    key, cert = workdir / "standin.key", workdir / "standin.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=k3s-standin"],
        check=True, capture_output=True,
    )  # fmt: skip
    with http_server(paths, tls=(cert, key)) as state:
        yield state


def _wrap_tls(server: ThreadingHTTPServer, cert: Path, key: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
