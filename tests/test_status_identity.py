"""No trust on first use: piimg's ssh pins the host keys it generated, its kubeconfig is minted.

Real parts on loopback only: OpenSSH's sshd (tests/sshd.py) presenting the
pre-generated host key (or another one), and an HTTPS stand-in for the k3s
apiserver serving a certificate from the cluster's server CA and requiring a
client certificate from its client CA (what kube-apiserver does with
``--client-ca-file``), at the initial server's address and port 6443.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg.errors import PiimgError
from piimg.identity import k3sca, store
from piimg.identity.store import NodeName
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from piimg.status.checks import Options, check_nodes
from piimg.status.kube import check_cluster
from piimg.status.kubeaccess import resolve
from piimg.status.model import State
from piimg.status.ssh import SshTarget, read_remote_file
from tests.fake_k8s import FakeKube, healthy
from tests.sshd import Sshd, start_sshd

pytestmark = pytest.mark.integration

#: one loopback address per test run, so a stand-in apiserver can own :6443 on it
ADDRESS = f"127.0.2.{random.randint(20, 250)}"
LB_IP = "127.0.4.1"


def _spec_text(address: str = ADDRESS) -> str:
    return f"""network: {{subnet: 127.0.2.0/23, gateway: 127.0.2.1, dhcp_pool: 127.0.3.1-127.0.3.254}}
cluster:
  pools: [{{name: default, addresses: [127.0.4.0/23]}}]
nodes:
  - {{hostname: k8s-master, role: server, address: {address}}}
"""


@pytest.fixture()
def spec(home: Path) -> spec_model.Spec:
    return spec_load.parse(yaml.safe_load(_spec_text()))


@pytest.fixture()
def identity(tmp_path: Path) -> store.Identity:
    return store.load_or_create(tmp_path / ".piimg", [NodeName("k8s-master", ADDRESS)])


def _sshd(tmp: Path, key: bytes | None, host: str = "127.0.0.1") -> Iterator[Sshd]:
    server = start_sshd(tmp, host_key_pem=key, host=host)
    yield server
    server.stop()


# --- SSH: the pinned known_hosts ------------------------------------------------


def test_ssh_accepts_the_pregenerated_key_and_nothing_else(identity: store.Identity, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "remote.txt"
    remote.write_text("hello from the node\n")
    good = _sshd(tmp_path / "good", identity.node("k8s-master").host_key.private_openssh)
    sshd = next(good)
    try:
        # the user's own ssh config knows nothing of this key (its known_hosts lists a throwaway one)
        monkeypatch.setenv("PIIMG_SSH_CONFIG", str(sshd.client_config))
        target = SshTarget("127.0.0.1", "root", sshd.port, known_hosts=str(identity.known_hosts),
                           host_key_alias="k8s-master")
        assert read_remote_file(target, str(remote), sudo=False) == b"hello from the node\n"
        argv = target.argv("true")
        assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={identity.known_hosts}" in argv
    finally:
        next(good, None)
    # an sshd with another key: the user's known_hosts accepts it, piimg's pinned file does not
    other = _sshd(tmp_path / "other", None)
    sshd = next(other)
    try:
        monkeypatch.setenv("PIIMG_SSH_CONFIG", str(sshd.client_config))
        plain = SshTarget("127.0.0.1", "root", sshd.port)
        assert read_remote_file(plain, str(remote), sudo=False) == b"hello from the node\n"
        pinned = dataclasses.replace(plain, known_hosts=str(identity.known_hosts), host_key_alias="k8s-master")
        with pytest.raises(PiimgError, match="not the one piimg generated for k8s-master") as err:
            read_remote_file(pinned, str(remote), sudo=False)
        assert err.value.hint and "re-flash" in err.value.hint
    finally:
        next(other, None)


def test_status_first_boot_check_uses_the_pinned_key(spec: spec_model.Spec, identity: store.Identity,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"step": "k3s", "state": "running", "error": None}))
    gen = _sshd(tmp_path / "sshd", identity.node("k8s-master").host_key.private_openssh, host=ADDRESS)  # the node
    sshd = next(gen)
    try:
        # no ssh config of the user at all: nothing but .piimg/known_hosts vouches for the node
        monkeypatch.delenv("PIIMG_SSH_CONFIG", raising=False)
        cfg = tmp_path / "ssh_config"
        cfg.write_text(sshd.client_config.read_text().replace("UserKnownHostsFile", "UserKnownHostsFile /dev/null #"))
        monkeypatch.setenv("PIIMG_SSH_CONFIG", str(cfg))
        opts = Options(kubeconfig=tmp_path / "none", status_file=str(status_file), known_hosts=identity.known_hosts,
                       ssh_port=sshd.port)
        # the test sshd logs in as root (the only account a test may use)
        as_root = dataclasses.replace(spec, access=dataclasses.replace(spec.access, user="root"))
        checks = {c.name: c for c in check_nodes(as_root, opts)}
        assert checks["firstboot k8s-master"].state is State.PENDING, checks
        # without the pinned file the same node is an unknown host (strict checking, no TOFU)
        checks = {c.name: c for c in check_nodes(as_root, dataclasses.replace(opts, known_hosts=None))}
        assert checks["firstboot k8s-master"].state is State.FAIL
        assert "not known" in checks["firstboot k8s-master"].detail
    finally:
        next(gen, None)


# --- the minted kubeconfig against a stand-in apiserver with the cluster's CAs ----------


def _apiserver(tmp: Path, ca: k3sca.ClusterCA, *, signed_by: k3sca.ClusterCA | None = None) -> FakeKube:
    # SANs as k3s gives its serving certificate: node-ip and tls-san (both the address here), 127.0.0.1, kubernetes*
    serving = (signed_by or ca).mint_server("kube-apiserver", ips=[ADDRESS, "127.0.0.1"],
                                            dns=["kubernetes", "kubernetes.default", "localhost"])
    tmp.mkdir(parents=True, exist_ok=True)
    return FakeKube(tmp, healthy([("k8s-master", ADDRESS)], LB_IP, 80), host=ADDRESS, port=6443,
                    serving=serving, client_ca=ca.server_files["client-ca.crt"])


def test_minted_kubeconfig_reaches_the_api_without_ssh(spec: spec_model.Spec, identity: store.Identity,
                                                       tmp_path: Path) -> None:
    api = _apiserver(tmp_path / "api", identity.ca)
    try:
        access = resolve(spec, root=tmp_path, ca=identity.ca, env={}, home=tmp_path)
        checks, _ = check_cluster(spec, access, timeout=5)
        assert checks[0].name == "kubernetes api" and checks[0].state is State.OK, checks[0]
        assert f"https://{ADDRESS}:6443" in checks[0].detail
        # it authenticated with the minted certificate: O=system:masters, CN=piimg-admin
        subject = dict(rdn[0] for rdn in api.client_subjects[0])
        assert subject == {"organizationName": "system:masters", "commonName": "piimg-admin"}
    finally:
        api.close()


def test_minted_kubeconfig_refuses_an_apiserver_of_another_ca(spec: spec_model.Spec, identity: store.Identity,
                                                             tmp_path: Path) -> None:
    api = _apiserver(tmp_path / "api", identity.ca, signed_by=k3sca.generate())
    try:
        access = resolve(spec, root=tmp_path, ca=identity.ca, env={}, home=tmp_path)
        checks, _ = check_cluster(spec, access, timeout=5)
        assert checks[0].state is State.FAIL
        assert "not signed by the kubeconfig's CA" in checks[0].detail, checks[0].detail
        assert api.requests == []
    finally:
        api.close()


def test_kubeconfig_command_mints_without_ssh(project: Path, piimg: Any, home: Path) -> None:
    (project / "piimg.yaml").write_text(_spec_text())
    assert piimg("manifests", "--show-secrets").exit_code == 0  # makes .piimg (as build does)
    ca = store.load_existing(project / ".piimg")
    assert ca is not None
    r = piimg("kubeconfig")  # nothing listens anywhere: no SSH, no network
    assert r.exit_code == 0, r.stderr
    path = project / "kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "homelab"
    (cluster,) = doc["clusters"]
    assert cluster["cluster"]["server"] == f"https://{ADDRESS}:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == ca.server_ca_bundle
    # the server address is one the serving certificate carries: the k3s config's tls-san
    conf = yaml.safe_load(piimg("manifests", "--show-secrets").stdout.split("---\n")[0])
    assert ADDRESS in conf["tls-san"] and conf["node-ip"] == ADDRESS
    (user,) = doc["users"]
    cert = project / "client.pem"
    cert.write_bytes(base64.b64decode(user["user"]["client-certificate-data"]))
    cafile = project / "client-ca.pem"
    cafile.write_bytes(ca.server_files["client-ca.crt"])
    r2 = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(cafile), str(cert)],
                        capture_output=True, text=True)
    assert r2.returncode == 0, r2.stdout + r2.stderr


def test_merge_keeps_the_current_context_and_status_uses_the_clusters(project: Path, piimg: Any, home: Path,
                                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "piimg.yaml").write_text(_spec_text())
    assert piimg("manifests", "--show-secrets").exit_code == 0
    kube_dir = home / ".kube"
    kube_dir.mkdir()
    work = {"apiVersion": "v1", "kind": "Config", "current-context": "work",
            "clusters": [{"name": "work", "cluster": {"server": "https://127.0.0.1:16443"}}],
            "users": [{"name": "work", "user": {"token": "w"}}],
            "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work"}}]}
    (kube_dir / "config").write_text(yaml.safe_dump(work))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    r = piimg("kubeconfig", "--merge")
    assert r.exit_code == 0, r.stderr
    merged = yaml.safe_load((kube_dir / "config").read_text())
    assert merged["current-context"] == "work"
    assert sorted(c["name"] for c in merged["contexts"]) == ["homelab", "work"]
    # with no .piimg CA (a cluster piimg did not bootstrap), status finds the merged file's homelab context
    spec = spec_load.parse(yaml.safe_load(_spec_text()))
    access = resolve(spec, root=project, ca=None, env={}, home=home)
    assert access.path == kube_dir / "config" and access.context == "homelab"
    # and $KUBECONFIG is honoured, one file of its list at a time
    other = tmp_path / "elsewhere.yaml"
    other.write_text(yaml.safe_dump(merged))
    access = resolve(spec, root=project, ca=None, env={"KUBECONFIG": f"{tmp_path / 'missing'}:{other}"}, home=home)
    assert access.path == other and access.context == "homelab"
    api = _apiserver(tmp_path / "api", store.load_existing(project / ".piimg"))  # type: ignore[arg-type]
    try:
        checks, _ = check_cluster(spec, access, timeout=5)
        assert checks[0].state is State.OK, checks[0]  # not the work cluster on :16443
    finally:
        api.close()


def test_status_command_without_any_kubeconfig_step(project: Path, piimg: Any, home: Path, tmp_path: Path) -> None:
    """`piimg status` right after build: the API check passes with nothing but .piimg."""
    (project / "piimg.yaml").write_text(_spec_text())
    assert piimg("manifests", "--show-secrets").exit_code == 0
    ca = store.load_existing(project / ".piimg")
    assert ca is not None
    api = _apiserver(tmp_path / "api", ca)
    try:
        r = piimg("status", "--no-router", "--json")
        checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        assert checks["kubernetes api"]["state"] == "ok", checks["kubernetes api"]
        assert not (project / "kubeconfig").exists()
    finally:
        api.close()


def test_status_watch_started_before_the_api_answers_picks_it_up(project: Path, piimg: Any, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """S2, the API part: `status --watch` started right after build, before the apiserver is up;
    it comes up after round 1 and the watch sees it with no kubeconfig step. (The node and first
    boot checks still fail here: no sshd on the node's port 22, so the watch gives up.)"""
    import functools

    from piimg.status import watch as watching

    (project / "piimg.yaml").write_text(_spec_text())
    assert piimg("manifests", "--show-secrets").exit_code == 0
    ca = store.load_existing(project / ".piimg")
    assert ca is not None
    t = [0.0]
    started: list[FakeKube] = []

    def sleep(seconds: float) -> None:  # between rounds, on a clock that moves only here
        if not started:
            started.append(_apiserver(tmp_path / "api", ca))
        t[0] += seconds

    monkeypatch.setattr(watching, "watch", functools.partial(watching.watch, now=lambda: t[0], sleep=sleep))
    try:
        r = piimg("status", "--watch", "--no-router", "--json", "--timeout", "3", "--interval", "1")
    finally:
        for api in started:
            api.close()
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert started and started[0].requests, r  # round 1 ran with nothing listening; later rounds asked it
    assert checks["kubernetes api"]["state"] == "ok", checks["kubernetes api"]
    assert "[00:00 / 00:03]" in r.stderr and "gave up after 00:03" in r.stderr, r.stderr
    assert r.exit_code == 1 and checks["node k8s-master"]["state"] == "fail"
    assert not (project / "kubeconfig").exists()


def test_explicit_kubeconfig_without_the_context(spec: spec_model.Spec, tmp_path: Path) -> None:
    path = tmp_path / "kc.yaml"
    path.write_text(yaml.safe_dump({"contexts": [{"name": "a", "context": {}}, {"name": "b", "context": {}}]}))
    access = resolve(spec, root=tmp_path, ca=None, explicit=path, env={}, home=tmp_path)
    assert access.problem == f"{path} has no context 'homelab' (it has: a, b)"
