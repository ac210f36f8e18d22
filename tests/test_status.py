"""piimg status / kubeconfig against real parts on loopback: sshd, an HTTPS
Kubernetes API stand-in, an HTTP "ingress", and (router) a RouterOS API peer."""

from __future__ import annotations

import dataclasses
import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg.errors import FileError, PiimgError
from piimg.router.dialects import dialect_for
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from piimg.status import kubeconfig as kcfg
from piimg.status.checks import Options, check_http, check_nodes, run_checks
from piimg.status.kube import ClusterFacts, check_cluster
from piimg.status.model import State
from piimg.status.routerchk import check_router
from piimg.status.ssh import SshTarget
from tests.fake_k8s import FakeKube, healthy
from tests.sshd import Sshd, start_sshd

LB_IP = "127.0.4.1"

SPEC_DOC = {
    "network": {"subnet": "127.0.2.0/23", "gateway": "127.0.2.1", "dhcp_pool": "127.0.3.1-127.0.3.254"},
    "cluster": {"pools": [{"name": "default", "addresses": ["127.0.4.0/23"]}]},
    "nodes": [{"hostname": "k8s-master", "role": "server", "address": "127.0.2.10"}],
}
NODE = "127.0.2.10"
#: the node's SSH port in tests that want it unreachable: nothing listens on the discard port
CLOSED = 9


@pytest.fixture()
def spec(home: Path) -> spec_model.Spec:
    return spec_load.parse(SPEC_DOC)


class Ingress:
    def __init__(self) -> None:
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = b"<html>404 Not Found</html>"
                self.send_response(404)
                self.send_header("Server", "nginx")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def version_string(self) -> str:
                return "nginx"

        self.server = ThreadingHTTPServer((LB_IP, 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def ingress() -> Iterator[Ingress]:
    srv = Ingress()
    yield srv
    srv.close()


@pytest.fixture()
def kube(tmp_path: Path, ingress: Ingress) -> Iterator[FakeKube]:
    fk = FakeKube(tmp_path, healthy([("k8s-master", "127.0.2.10")], LB_IP, ingress.port))
    yield fk
    fk.close()


@pytest.fixture()
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = start_sshd(tmp_path / "sshd", host=NODE)  # stands in for the node
    yield server
    server.stop()


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


# --- Kubernetes checks -------------------------------------------------------


@pytest.mark.integration
def test_healthy_cluster(spec: spec_model.Spec, kube: FakeKube, tmp_path: Path) -> None:
    checks, facts = check_cluster(spec, kube.kubeconfig(tmp_path / "kc"))
    assert [c.state for c in checks] == [State.OK] * 6, checks  # api, nodes, metallb, metallb config, pools, LBs
    assert facts.lb_ips == [LB_IP]
    assert "v1.36.3+k3s1" in checks[0].detail


@pytest.mark.integration
def test_no_kubeconfig_says_how(spec: spec_model.Spec, tmp_path: Path) -> None:
    checks, _ = check_cluster(spec, tmp_path / "missing")
    assert checks[0].state is State.FAIL and "piimg kubeconfig" in checks[0].detail
    assert all(c.state is State.SKIPPED for c in checks[1:])


@pytest.mark.integration
def test_bad_token(spec: spec_model.Spec, kube: FakeKube, tmp_path: Path) -> None:
    checks, _ = check_cluster(spec, kube.kubeconfig(tmp_path / "kc", token="wrong"))
    assert checks[0].state is State.FAIL and "401" in checks[0].detail


@pytest.mark.integration
def test_api_unreachable(spec: spec_model.Spec, kube: FakeKube, tmp_path: Path) -> None:
    path = kube.kubeconfig(tmp_path / "kc")
    kube.close()
    checks, _ = check_cluster(spec, path, timeout=2)
    assert checks[0].state is State.FAIL


@pytest.mark.integration
@pytest.mark.parametrize(
    ("breakage", "check", "state", "words"),
    [
        ("node_not_ready", "nodes ready", State.FAIL, "not Ready (False)"),
        ("node_missing", "nodes ready", State.FAIL, "not registered"),
        ("node_wrong_ip", "nodes ready", State.FAIL, "expected 127.0.2.10"),
        ("speaker_crash", "metallb", State.FAIL, "speakers 0/1 ready"),
        ("no_metallb", "metallb", State.FAIL, "not deployed"),
        ("no_pool", "metallb pools", State.FAIL, "IPAddressPool missing: default"),
        ("lb_pending", "loadbalancers", State.PENDING, "<pending>"),
        ("lb_outside", "loadbalancers", State.FAIL, "servicelb"),
        ("no_lb", "loadbalancers", State.FAIL, "no Service of type LoadBalancer"),
    ],
)
def test_broken_cluster(spec: spec_model.Spec, kube: FakeKube, tmp_path: Path, breakage: str, check: str, state: State, words: str) -> None:
    r = kube.responses
    if breakage == "node_not_ready":
        r["/api/v1/nodes"]["items"][0]["status"]["conditions"][0]["status"] = "False"
    elif breakage == "node_missing":
        r["/api/v1/nodes"]["items"] = []
    elif breakage == "node_wrong_ip":
        r["/api/v1/nodes"]["items"][0]["status"]["addresses"][0]["address"] = "127.0.3.99"
    elif breakage == "speaker_crash":
        pod = r["/api/v1/namespaces/metallb-system/pods"]["items"][1]
        pod["status"]["phase"] = "Pending"
    elif breakage == "no_metallb":
        r["/api/v1/namespaces/metallb-system/pods"]["items"] = []
    elif breakage == "no_pool":
        r["/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"]["items"] = []
    elif breakage == "lb_pending":
        r["/api/v1/services"]["items"][1]["status"] = {"loadBalancer": {}}
    elif breakage == "lb_outside":
        r["/api/v1/services"]["items"][1]["status"]["loadBalancer"]["ingress"] = [{"ip": "127.0.2.10"}]
    elif breakage == "no_lb":
        del r["/api/v1/services"]["items"][1]
    checks = by_name(check_cluster(spec, kube.kubeconfig(tmp_path / "kc"))[0])
    assert checks[check].state is state, checks[check]
    assert words in checks[check].detail
    others = [c for n, c in checks.items() if n != check]
    assert all(c.state is State.OK for c in others if c.name != "loadbalancers" or check != "loadbalancers"), others


# --- HTTP ----------------------------------------------------------------------


@pytest.mark.integration
def test_http_answer_reports_status_and_server(ingress: Ingress) -> None:
    facts = ClusterFacts(lb_services=[("nginx-ingress/ctl", LB_IP, ingress.port)], lb_ips=[LB_IP])
    (check,) = check_http(facts, timeout=3)
    assert check.state is State.OK
    assert "HTTP 404" in check.detail and "Server: nginx" in check.detail


@pytest.mark.integration
def test_http_no_answer(ingress: Ingress) -> None:
    ingress.close()
    facts = ClusterFacts(lb_services=[("nginx-ingress/ctl", LB_IP, ingress.port)], lb_ips=[LB_IP])
    (check,) = check_http(facts, timeout=2)
    assert check.state is State.FAIL and "no HTTP answer" in check.detail


# --- router (pure, on menu rows as librouteros returns them) ----------------------


def _reader(tables: dict[str, list[dict[str, Any]]]) -> Any:
    return lambda menu: tables.get(menu, [])


def test_router_v7_established_and_route(spec: spec_model.Spec) -> None:
    tables = {
        "/routing/bgp/session": [{"remote.address": "127.0.2.10", "remote.as": "64500", "established": True}],
        "/ip/route": [{"dst-address": f"{LB_IP}/32", "gateway": "127.0.2.10", "bgp": True, "active": True}],
    }
    checks = by_name(check_router(spec, _reader(tables), dialect_for("7.20.1 (stable)"), [LB_IP]))
    assert checks["router bgp"].state is State.OK
    assert checks["router routes"].state is State.OK and "via 127.0.2.10" in checks["router routes"].detail


def test_router_v6_peer_not_established(spec: spec_model.Spec) -> None:
    tables = {"/routing/bgp/peer": [{"remote-address": "127.0.2.10", "state": "active"}], "/ip/route": []}
    checks = by_name(check_router(spec, _reader(tables), dialect_for("6.49.17 (long-term)"), [LB_IP]))
    assert checks["router bgp"].state is State.FAIL and "active" in checks["router bgp"].detail
    assert checks["router routes"].state is State.FAIL and LB_IP in checks["router routes"].detail


@pytest.mark.parametrize("flags", [{"active": False}, {}, {"active": "false", "inactive": "true"}])
def test_router_inactive_bgp_route_is_not_present(spec: spec_model.Spec, flags: dict[str, Any]) -> None:
    """/ip route print lists received BGP routes without A (active) too; only installed ones count."""
    tables = {
        "/routing/bgp/session": [{"remote.address": "127.0.2.10", "established": True}],
        "/ip/route": [{"dst-address": f"{LB_IP}/32", "gateway": "127.0.2.10", "bgp": True, **flags}],
    }
    checks = by_name(check_router(spec, _reader(tables), dialect_for("7.20.1 (stable)"), [LB_IP]))
    assert checks["router routes"].state is State.FAIL
    assert f"BGP route(s) for {LB_IP} received but not active" in checks["router routes"].detail


def test_router_route_via_wrong_gateway(spec: spec_model.Spec) -> None:
    tables = {
        "/routing/bgp/session": [{"remote.address": "127.0.2.10", "established": "true"}],
        "/ip/route": [{"dst-address": f"{LB_IP}/32", "gateway": "127.0.3.77", "bgp": "true", "active": "true"}],
    }
    checks = by_name(check_router(spec, _reader(tables), dialect_for("7.16"), [LB_IP]))
    assert checks["router routes"].state is State.FAIL


def test_router_unreachable_other_checks_still_run(spec: spec_model.Spec, kube: FakeKube, tmp_path: Path, ingress: Ingress) -> None:
    def broken() -> Any:
        raise PiimgError("router 127.0.2.1:8729: connection refused")

    opts = Options(kubeconfig=kube.kubeconfig(tmp_path / "kc"), router=broken, ssh_port=CLOSED, timeout=2)
    checks = by_name(run_checks(spec, opts))
    assert checks["router bgp"].state is State.FAIL and "connection refused" in checks["router bgp"].detail
    assert checks["loadbalancers"].state is State.OK
    assert checks[f"http {LB_IP}"].state is State.OK


def test_frr_router_is_not_opened(spec: spec_model.Spec, kube: FakeKube, tmp_path: Path, ingress: Ingress) -> None:
    """router.kind frr: no RouterOS API to read; the check says where to look instead."""
    def never() -> Any:
        raise AssertionError("the RouterOS opener must not be called for an FRR router")

    frr_spec = dataclasses.replace(spec, router=dataclasses.replace(spec.router, kind=spec_model.RouterKind.FRR))
    opts = Options(kubeconfig=kube.kubeconfig(tmp_path / "kc"), router=never, ssh_port=CLOSED, timeout=2)
    checks = by_name(run_checks(frr_spec, opts))
    assert checks["router bgp"].state is State.SKIPPED and "vtysh" in checks["router bgp"].detail
    assert checks[f"http {LB_IP}"].state is State.OK


# --- SSH: first-boot status and kubeconfig ------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(("content", "state", "words"), [
    ({"step": "done", "state": "done", "error": None}, State.OK, "step done, done"),
    ({"step": "k3s_install", "state": "failed", "error": "install script exited 1"}, State.FAIL, "install script exited 1"),
    ({"step": "wait_network", "state": "running", "error": None}, State.PENDING, "wait_network"),
])
def test_firstboot_status_over_ssh(spec: spec_model.Spec, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: dict[str, Any], state: State, words: str) -> None:
    monkeypatch.setenv("PIIMG_SSH_CONFIG", str(sshd.client_config))
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps(content))
    opts = Options(kubeconfig=tmp_path / "none", status_file=str(status_file), ssh_port=sshd.port)
    checks = by_name(check_nodes(_as_root(spec), opts))
    assert checks["node k8s-master"].state is State.OK
    assert checks["firstboot k8s-master"].state is state, checks
    assert words in checks["firstboot k8s-master"].detail


def _as_root(spec: spec_model.Spec) -> spec_model.Spec:
    """The test sshd logs in as root (the only account a test may use)."""
    import dataclasses

    return dataclasses.replace(spec, access=dataclasses.replace(spec.access, user="root"))


@pytest.mark.integration
def test_node_unreachable(spec: spec_model.Spec, tmp_path: Path) -> None:
    opts = Options(kubeconfig=tmp_path / "none", ssh_port=CLOSED, timeout=1)
    checks = by_name(check_nodes(spec, opts))
    assert checks["node k8s-master"].state is State.FAIL
    assert checks["node k8s-master"].detail.startswith(f"{NODE}:{CLOSED} unreachable (")
    assert checks["firstboot k8s-master"].state is State.SKIPPED


K3S_YAML = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""


@pytest.mark.integration
def test_kubeconfig_over_ssh_rewritten_and_private(project: Path, piimg: Any, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "k3s.yaml"
    remote.write_text(K3S_YAML)
    monkeypatch.setenv("PIIMG_SSH_CONFIG", str(sshd.client_config))
    monkeypatch.setattr(kcfg, "K3S_KUBECONFIG", str(remote))
    real_fetch = kcfg.fetch
    monkeypatch.setattr(kcfg, "fetch", lambda spec, target: real_fetch(spec, SshTarget(sshd.host, "root", sshd.port), remote_path=str(remote)))
    (project / "piimg.yaml").write_text(yaml.safe_dump(SPEC_DOC))
    r = piimg("kubeconfig")
    assert r.exit_code == 0, r
    out = project / "kubeconfig"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = yaml.safe_load(out.read_text())
    assert doc["clusters"][0] == {"name": "homelab", "cluster": {"certificate-authority-data": "Q0EK", "server": "https://127.0.2.10:6443"}}
    assert doc["current-context"] == "homelab" and doc["users"][0]["user"]["client-key-data"] == "S0VZCg=="


@pytest.mark.integration
def test_unknown_host_key_is_explained(spec: spec_model.Spec, sshd: Sshd, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.write_text(sshd.client_config.read_text().replace("UserKnownHostsFile", "UserKnownHostsFile /dev/null #"))
    target = SshTarget(sshd.host, "root", sshd.port, config_file=str(cfg))
    with pytest.raises(PiimgError) as err:
        kcfg.fetch(spec, target, remote_path="/etc/hostname")
    assert "host key is not known" in err.value.message
    assert err.value.hint and "ssh -p" in err.value.hint


def test_merge_keeps_other_contexts(tmp_path: Path, spec: spec_model.Spec) -> None:
    path = tmp_path / "config"
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "work",
             "clusters": [{"name": "work", "cluster": {"server": "https://work:6443"}}],
             "users": [{"name": "work", "user": {"token": "t"}}],
             "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work"}}]}
    path.write_text(yaml.safe_dump(other))
    new = kcfg.rewrite(yaml.safe_load(K3S_YAML), server="https://127.0.2.10:6443", name="homelab")
    kcfg.write(new, path, merge_into_existing=True)
    kcfg.write(new, path, merge_into_existing=True)  # twice: no duplicates
    doc = yaml.safe_load(path.read_text())
    assert [c["name"] for c in doc["contexts"]] == ["work", "homelab"]
    assert doc["current-context"] == "work"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("text", "words"), [("clusters: [\n", ":2:1: not valid YAML ("), ("- a\n", "not a kubeconfig")])
def test_merge_into_a_broken_file_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    new = kcfg.rewrite(yaml.safe_load(K3S_YAML), server="https://127.0.2.10:6443", name="homelab")
    with pytest.raises(FileError) as info:
        kcfg.write(new, path, merge_into_existing=True)
    assert words in info.value.message and "\n" not in info.value.message
    assert path.read_text() == text


# --- the CLI -------------------------------------------------------------------------


@pytest.mark.integration
def test_status_cli_json_and_exit_code(project: Path, piimg: Any, kube: FakeKube, ingress: Ingress) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(SPEC_DOC))
    kube.kubeconfig(project / "kubeconfig")
    r = piimg("status", "--json", "--no-router")
    data = json.loads(r.stdout)
    states = {c["name"]: c["state"] for c in data["checks"]}
    assert states["kubernetes api"] == "ok" and states["loadbalancers"] == "ok" and states[f"http {LB_IP}"] == "ok"
    assert states["router bgp"] == "skipped"
    assert "--no-router" in {c["name"]: c["detail"] for c in data["checks"]}["router bgp"]
    assert r.exit_code == 1 and data["ok"] is False  # the node 127.0.2.10:22 and the router are not there


@pytest.mark.integration
def test_status_cli_watch_gives_up_at_timeout(project: Path, piimg: Any, kube: FakeKube, ingress: Ingress) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(SPEC_DOC))
    kube.kubeconfig(project / "kubeconfig")
    r = piimg("status", "--watch", "--timeout", "2", "--interval", "1", "--no-router")
    assert r.exit_code == 1
    assert "[00:0" in r.stderr and "gave up after 00:0" in r.stderr and "(--timeout 2)" in r.stderr
    assert "still not ok: node k8s-master, firstboot k8s-master" in r.stderr and "checks ok after 00:0" in r.stdout


@pytest.mark.parametrize(("option", "value"), [("--timeout", "-5"), ("--interval", "0")])
def test_status_cli_rejects_negative_times(project: Path, piimg: Any, option: str, value: str) -> None:
    r = piimg("status", "--watch", option, value)
    assert r.exit_code == 2 and option in r.stderr and "Traceback" not in r.output


# --- router through librouteros against the RouterOS API peer ------------------------


@pytest.mark.integration
@pytest.mark.parametrize("version", ["6.49.17", "7.16.2", "7.20.1"])
@pytest.mark.parametrize("established", [True, False])
def test_status_cli_router_checks(
    project: Path, piimg: Any, kube: FakeKube, ingress: Ingress, monkeypatch: pytest.MonkeyPatch, version: str, established: bool
) -> None:
    from tests.routeros_peer import RouterOSPeer

    with RouterOSPeer(version=version, users={"admin": "pw"}) as peer:
        host, port = peer.address
        peer.add_bgp_session("127.0.2.10", remote_as=64500, prefixes=[LB_IP], established=established)
        doc = {**SPEC_DOC, "router": {"host": host, "port": port, "tls": False}}
        (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
        kube.kubeconfig(project / "kubeconfig")
        monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", "pw")
        r = piimg("status", "--json")
        checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        writes = peer.writes
    if established:
        assert checks["router bgp"]["state"] == "ok", checks["router bgp"]
        assert checks["router routes"] == {"name": "router routes", "state": "ok", "detail": f"{LB_IP} via 127.0.2.10",
                                           "host": host}
    else:
        assert checks["router bgp"]["state"] == "fail"
        assert "k8s-master (127.0.2.10)" in checks["router bgp"]["detail"]
        assert checks["router routes"]["state"] == "fail"
    assert writes == 0  # status only reads


@pytest.mark.integration
def test_status_cli_router_without_password(project: Path, piimg: Any, kube: FakeKube, ingress: Ingress, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIIMG_ROUTER_PASSWORD", raising=False)
    (project / "piimg.yaml").write_text(yaml.safe_dump({**SPEC_DOC, "router": {"host": "127.0.0.1", "port": 9, "tls": False}}))
    kube.kubeconfig(project / "kubeconfig")
    r = piimg("status", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["router bgp"]["state"] == "fail" and "PIIMG_ROUTER_PASSWORD" in checks["router bgp"]["detail"]
    assert checks["router routes"] == {"name": "router routes", "state": "skipped", "detail": "needs the router connection",
                                       "host": "127.0.0.1"}
    assert checks["loadbalancers"]["state"] == "ok"
