"""A local HTTPS server answering the Kubernetes API paths ``piimg status`` reads.

Self-signed certificate made with the openssl CLI, a bearer token, and
recorded-style JSON for a healthy cluster that tests then break one way at a time.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

TOKEN = "test-token-0123456789"


def _pod(name: str, component: str, *, phase: str = "Running", ready: bool = True, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": component, "image": "quay.io/metallb/" + component}]}
    if node is not None:
        spec["nodeName"] = node
    return {
        "metadata": {"name": name, "namespace": "metallb-system",
                     "labels": {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/component": component}},
        "spec": spec,
        "status": {"phase": phase, "containerStatuses": [
            {"name": component, "ready": ready, "restartCount": 0, "image": "x", "imageID": "y"}]},
    }


def _config_state(name: str, node: str | None, result: str = "Valid") -> dict[str, Any]:
    labels = {"metallb.io/component-type": "speaker" if node else "controller"}
    if node:
        labels["metallb.io/node-name"] = node
    return {"apiVersion": "metallb.io/v1beta1", "kind": "ConfigurationState",
            "metadata": {"name": name, "namespace": "metallb-system", "labels": labels}, "status": {"result": result}}


def _node(name: str, ip: str, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": ready}],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        },
    }


def healthy(nodes: list[tuple[str, str]], lb_ip: str, lb_port: int) -> dict[str, Any]:
    """Responses by API path for a healthy cluster."""
    return {
        "/version": {
            "major": "1", "minor": "36", "gitVersion": "v1.36.3+k3s1", "gitCommit": "0123456789abcdef",
            "gitTreeState": "clean", "buildDate": "2026-10-28T00:00:00Z", "goVersion": "go1.25.3",
            "compiler": "gc", "platform": "linux/arm64",
        },
        "/api/v1/nodes": {"kind": "NodeList", "apiVersion": "v1", "items": [_node(n, ip) for n, ip in nodes]},
        "/api/v1/namespaces/metallb-system/pods": {
            "kind": "PodList", "apiVersion": "v1",
            "items": [_pod("metallb-controller-7d9f", "controller")]
            + [_pod(f"metallb-speaker-{i}", "speaker", node=n) for i, (n, _) in enumerate(nodes)],
        },
        # MetalLB v0.16.1 names them "controller" and "speaker-<node>", labelled by component
        # (metallb@v0.16.1:e2etest/configurationstatetests/configurationstate.go)
        "/apis/metallb.io/v1beta1/namespaces/metallb-system/configurationstates": {
            "apiVersion": "metallb.io/v1beta1", "kind": "ConfigurationStateList", "metadata": {},
            "items": [_config_state("controller", None)] + [_config_state(f"speaker-{n}", n) for n, _ in nodes],
        },
        "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools": {
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPoolList",
            "items": [{"metadata": {"name": "default", "namespace": "metallb-system"},
                       "spec": {"addresses": ["10.0.4.0/23"]}}],
        },
        "/api/v1/services": {
            "kind": "ServiceList", "apiVersion": "v1",
            "items": [
                {"metadata": {"name": "kubernetes", "namespace": "default"},
                 "spec": {"type": "ClusterIP", "ports": [{"port": 443}]}, "status": {"loadBalancer": {}}},
                {"metadata": {"name": "nginx-ingress-controller", "namespace": "nginx-ingress"},
                 "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": lb_port}]},
                 "status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}},
            ],
        },
    }


class FakeKube:
    """``serving=(cert chain PEM, key PEM)`` and ``client_ca`` stand in for a k3s apiserver
    with its own CAs: clients then authenticate with a certificate whose O is
    ``system:masters`` (verified by the TLS handshake against ``client_ca``)."""

    def __init__(self, tmp: Path, responses: dict[str, Any], *, host: str = "127.0.0.1", port: int = 0,
                 serving: tuple[bytes, bytes] | None = None, client_ca: bytes | None = None) -> None:
        self.responses = copy.deepcopy(responses)
        self.requests: list[str] = []
        self.client_subjects: list[Any] = []
        self.tmp = tmp
        key, cert = tmp / "k8s.key", tmp / "k8s.crt"
        if serving is None:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                 "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                check=True, capture_output=True,
            )
        else:
            cert.write_bytes(serving[0])
            key.write_bytes(serving[1])
            key.chmod(0o600)
        self.cert = cert
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/") or "/"
                fake.requests.append(path)
                peer = self.connection.getpeercert() if client_ca is not None else None  # type: ignore[attr-defined]
                if peer:
                    fake.client_subjects.append(peer.get("subject"))
                groups = [v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "organizationName"]
                if "system:masters" not in groups and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"kind": "Status", "status": "Failure", "code": 401, "reason": "Unauthorized"})
                    return
                body = fake.responses.get(path)
                if body is None:
                    self._send(404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"})
                else:
                    self._send(200, body)

            def _send(self, code: int, body: Any) -> None:
                # a str body is plain text, as the API serves a pod's log
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=client_ca.decode())
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kubeconfig(self, path: Path, *, token: str = TOKEN) -> Path:
        doc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "homelab", "cluster": {
                "server": f"https://127.0.0.1:{self.port}",
                "certificate-authority-data": base64.b64encode(self.cert.read_bytes()).decode()}}],
            "users": [{"name": "homelab", "user": {"token": token}}],
            "contexts": [{"name": "homelab", "context": {"cluster": "homelab", "user": "homelab"}}],
            "current-context": "homelab",
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
