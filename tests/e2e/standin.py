"""Servers on 127.0.0.1 that stand in for the internet the node would use.

The guest reaches them only through qemu ``guestfwd`` rules (see qemu.py).

``INSTALL_SH`` stands in for https://get.k3s.io: instead of installing k3s it
records how it was called (argv, full environment, the k3s config file, the
server manifests present) into ``/var/lib/piimg-e2e/install.json`` on the
guest, which the test reads from the ext4 partition after the boot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

INSTALL_SH: Final = r"""#!/bin/sh
# piimg e2e stand-in for the k3s install script (https://get.k3s.io):
# records argv, environment and /etc/rancher/k3s/config.yaml, installs nothing.
set -eu
mkdir -p /var/lib/piimg-e2e
python3 - "$@" <<'PY'
import json, os, sys
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
manifests = "/var/lib/rancher/k3s/server/manifests"
record = {
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "uid": os.getuid(),
    "config_yaml": read("/etc/rancher/k3s/config.yaml"),
    "manifests": sorted(os.listdir(manifests)) if os.path.isdir(manifests) else None,
}
with open("/var/lib/piimg-e2e/install.json", "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
PY
echo "piimg-e2e: stand-in k3s installer ran (version ${INSTALL_K3S_VERSION:-unset})"
"""


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
def http_server(files: dict[str, bytes]) -> Iterator[FileServer]:
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
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
