"""A real HTTP server on 127.0.0.1 for tests: threaded, Range support, fault injection.

    with FileServer() as srv:
        srv.add("/img/x.img.xz", data)            # or srv.add_file(path, "/img/x.img.xz")
        srv.faults["/img/x.img.xz"] = Fault(drop_after=1000)
        url = srv.url("/img/x.img.xz")
        ...
        srv.requests    # list of Request(path, range, status, sent)
        srv.bytes_sent("/img/x.img.xz")

Faults: ``drop_after`` (close the connection after N body bytes, for the
next ``times`` requests), ``ignore_range`` (always answer 200 with the whole
body), ``status`` (answer that status, ``times`` times, e.g. 503),
``hold_after`` (send N body bytes, then nothing until ``srv.release`` is set:
a download in progress that a test can interrupt at a known point).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


@dataclass
class Fault:
    drop_after: int | None = None
    ignore_range: bool = False
    status: int | None = None
    times: int = 1  # how many requests the drop/status fault applies to (-1: always)
    hold_after: int | None = None  # stop after N body bytes until FileServer.release is set (the client waits)


@dataclass
class Request:
    path: str
    range: str | None
    status: int
    sent: int = 0
    headers: dict[str, str] = field(default_factory=dict)


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets held responses (Fault.hold_after) go on
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, *, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                rng = self.headers.get("Range")
                req = Request(path, rng, 200, headers=dict(self.headers.items()))
                with server.lock:
                    server.requests.append(req)
                    fault = server.faults.get(path)
                    data = server.files.get(path)
                    active = fault is not None and fault.times != 0
                    if active and fault is not None and fault.times > 0 and (fault.drop_after is not None or fault.status):
                        fault.times -= 1
                if data is None:
                    req.status = 404
                    self._reply(404, b"not found\n", head=head)
                    return
                if active and fault is not None and fault.status:
                    req.status = fault.status
                    self._reply(fault.status, b"fault\n", head=head)
                    return
                start, end = 0, len(data)
                status = 200
                m = _RANGE.match(rng or "")
                if m and not (fault is not None and fault.ignore_range):
                    start = int(m.group(1))
                    if m.group(2):
                        end = min(int(m.group(2)) + 1, len(data))
                    if start >= len(data):
                        req.status = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                req.status = status
                body = memoryview(data)[start:end]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                limit = len(body)
                drop = active and fault is not None and fault.drop_after is not None
                if drop and fault is not None and fault.drop_after is not None:
                    limit = min(limit, fault.drop_after)
                pos = 0
                hold = fault.hold_after if fault is not None else None
                try:
                    while pos < limit:
                        if hold is not None and pos >= hold:
                            self.wfile.flush()
                            server.release.wait(120)
                            hold = None
                        n = min(64 << 10, limit - pos, *([hold - pos] if hold is not None else []))
                        self.wfile.write(body[pos : pos + n])
                        pos += n
                        with server.lock:
                            req.sent = pos
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(2)

            def _reply(self, status: int, body: bytes, *, head: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ----------------------------------------------------------------- setup

    def add(self, path: str, data: bytes | str) -> str:
        self.files[path] = data.encode() if isinstance(data, str) else data
        return self.url(path)

    def add_file(self, src: Path, path: str) -> str:
        return self.add(path, src.read_bytes())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # ----------------------------------------------------------------- inspection

    def requests_for(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def bytes_sent(self, path: str | None = None) -> int:
        with self.lock:
            return sum(r.sent for r in self.requests if path is None or r.path == path)

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # no handler stays held
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
