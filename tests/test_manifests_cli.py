"""`piimg manifests`: stdout stream, -o DIR, masking, --show-secrets, --node."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from tests.k3s_token import hash_ca, parse_token
from tests.manifests_helpers import documents, validate_object

GOLDEN = Path(__file__).parent / "golden" / "manifests"

AGENTS_SPEC = """\
nodes:
  - hostname: k8s-master
    role: server
    address: 10.0.2.10
  - hostname: k8s-worker1
    role: agent
    address: 10.0.2.11
"""


def secrets_token(project: Path) -> str:
    data: dict[str, Any] = yaml.safe_load((project / ".piimg" / "secrets.yaml").read_text())
    return str(data["k3s_token"])


def test_prints_seed_stream_masked(project: Path, piimg: Any) -> None:
    assert piimg("init").exit_code == 0
    r = piimg("manifests")
    assert r.exit_code == 0, r
    # the seed spec renders exactly the reviewed golden stream
    assert r.stdout == (GOLDEN / "stream-masked.yaml").read_text()
    docs = documents(r.stdout)
    assert docs[0]["token"] == "<hidden>"
    for obj in docs[1:]:
        validate_object(obj)
    # reviewing creates no secrets file
    assert not (project / ".piimg" / "secrets.yaml").exists()


def test_show_secrets_prints_the_real_token(project: Path, piimg: Any) -> None:
    piimg("init")
    r = piimg("manifests", "--show-secrets")
    assert r.exit_code == 0, r
    secret = secrets_token(project)
    # k3s's secure token form, hash per k3s's own hashCA over the server CA file piimg generated
    ca_hash = hash_ca((project / ".piimg" / "k3s-ca" / "server-ca.crt").read_bytes())
    token = documents(r.stdout)[0]["token"]
    assert token == f"K10{ca_hash}::server:{secret}"
    assert (parse_token(token).ca_hash, parse_token(token).password) == (ca_hash, secret)
    assert "<hidden>" not in r.stdout
    # the same token on the next run (generated once, reused)
    assert documents(piimg("manifests", "--show-secrets").stdout)[0]["token"] == token


def test_output_dir_one_file_per_addon(project: Path, piimg: Any) -> None:
    piimg("init")
    out = project / "out"
    (out).mkdir()
    (out / "unrelated.txt").write_text("keep me\n")
    r = piimg("manifests", "-o", str(out))
    assert r.exit_code == 0, r
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "k3s",
        "piimg-metallb-config.yaml",
        "piimg-metallb.yaml",
        "piimg-nginx-ingress.yaml",
        "unrelated.txt",
    ]
    assert (out / "unrelated.txt").read_text() == "keep me\n"
    for name in ("piimg-metallb.yaml", "piimg-metallb-config.yaml", "piimg-nginx-ingress.yaml"):
        path = out / name
        assert path.read_text() == (GOLDEN / name).read_text()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    conf = yaml.safe_load((out / "k3s" / "k8s-master" / "config.yaml").read_text())
    assert conf["token"] == "<hidden>"
    # atomic writes leave no temporary files behind
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    assert "wrote" in r.stdout and "--show-secrets" in r.stderr


def test_output_dir_with_secrets_is_private(project: Path, piimg: Any) -> None:
    piimg("init")
    out = project / "out"
    r = piimg("manifests", "-o", str(out), "--show-secrets")
    assert r.exit_code == 0, r
    path = out / "k3s" / "k8s-master" / "config.yaml"
    assert parse_token(yaml.safe_load(path.read_text())["token"]).password == secrets_token(project)
    for p in [*out.glob("*.yaml"), path]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_node_agent_gets_only_its_k3s_config(project: Path, piimg: Any) -> None:
    (project / "piimg.yaml").write_text(AGENTS_SPEC)
    r = piimg("manifests", "--node", "k8s-worker1")
    assert r.exit_code == 0, r
    (conf,) = documents(r.stdout)
    assert conf == {
        "token": "<hidden>",
        "node-name": "k8s-worker1",
        "node-ip": "10.0.2.11",
        "server": "https://10.0.2.10:6443",
    }
    r = piimg("manifests", "--node", "k8s-master")
    assert len(documents(r.stdout)) > 1


def test_unknown_node_is_one_clear_error(project: Path, piimg: Any) -> None:
    piimg("init")
    out = project / "out"
    r = piimg("manifests", "--node", "k8s-nope", "-o", str(out))
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and "k8s-nope" in r.stderr
    assert "Traceback" not in r.output
    assert not out.exists()


def test_ingress_nginx_warns(project: Path, piimg: Any) -> None:
    (project / "piimg.yaml").write_text("cluster:\n  ingress: ingress-nginx\n")
    r = piimg("manifests")
    assert r.exit_code == 0, r
    assert "warning:" in r.stderr and "retired" in r.stderr
    assert "ingress-nginx-controller" not in r.stderr
    kinds = [(d["kind"], d["metadata"]["name"]) for d in documents(r.stdout)[1:]]
    assert ("HelmChart", "ingress-nginx") in kinds


def test_missing_bgp_password_env_fails_cleanly(project: Path, piimg: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PIIMG_TEST_BGP", raising=False)
    (project / "piimg.yaml").write_text("cluster:\n  bgp:\n    password_env: PIIMG_TEST_BGP\n")
    r = piimg("manifests")
    assert r.exit_code != 0
    assert "cluster.bgp.password_env" in r.stderr
    monkeypatch.setenv("PIIMG_TEST_BGP", "md5-key")
    r = piimg("manifests")
    assert r.exit_code == 0, r
    assert "md5-key" not in r.stdout
    assert "md5-key" in piimg("manifests", "--show-secrets").stdout
