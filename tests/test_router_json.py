"""``piimg router-setup --json``: the plan and the apply result as JSON, against tests/routeros_peer.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_KEY
from tests.routeros_peer import RouterOSPeer

pytestmark = pytest.mark.integration

PASSWORD = "r0uter-Pa55"
BGP_KEY = "md5-Secret-42"


@pytest.fixture()
def peer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RouterOSPeer]:
    monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", PASSWORD)
    monkeypatch.setenv("PIIMG_BGP_KEY", BGP_KEY)
    with RouterOSPeer(version="7.20.1", users={"admin": PASSWORD}) as p:
        yield p


def _spec(project: Path, peer: RouterOSPeer) -> None:
    raw: dict[str, Any] = {
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "router": {"tls": False, "host": peer.address[0], "port": peer.address[1]},
        "cluster": {"bgp": {"password_env": "PIIMG_BGP_KEY"}},
        "nodes": [{"hostname": "k8s-master", "role": "server", "address": "10.0.2.10", "mac": "dc:a6:32:01:02:03"}],
    }
    (project / "piimg.yaml").write_text(yaml.safe_dump(raw))


def test_dry_run_json_then_apply_json_then_nothing(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    _spec(project, peer)
    r = piimg("router-setup", "--dry-run", "--json")
    assert r.exit_code == 0, r
    plan = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    assert plan["schema"] == 1 and plan["cluster"] == "homelab"
    assert plan["router"] == {"host": peer.address[0], "port": peer.address[1], "routeros": plan["router"]["routeros"],
                              "dialect": plan["router"]["dialect"]}
    assert plan["router"]["routeros"].startswith("7.20.1")
    ops = plan["operations"]
    assert ops and all(op["action"] == "add" for op in ops)
    assert plan["counts"] == {"add": len(ops), "set": 0, "remove": 0}
    assert {op["menu"] for op in ops} >= {"/interface/bridge", "/ip/pool", "/ip/dhcp-server/lease"}
    assert BGP_KEY not in r.stdout and PASSWORD not in r.stdout  # secrets masked
    assert any("********" in op["props"].values() for op in ops)
    assert plan["applied"] is None and peer.rows("/interface/bridge") == []  # nothing changed

    r = piimg("router-setup", "--json", "--yes")
    assert r.exit_code == 0, r
    done = json.loads(r.stdout)
    assert done["applied"] == len(ops) and done["backup"].endswith(".backup")
    assert [b["name"] for b in peer.rows("/interface/bridge")] == ["bridge2"]

    r = piimg("router-setup", "--dry-run", "--json")
    again = json.loads(r.stdout)
    assert again["operations"] == [] and again["counts"] == {"add": 0, "set": 0, "remove": 0}


def test_json_without_dry_run_or_yes_is_a_usage_error(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    _spec(project, peer)
    r = piimg("router-setup", "--json")
    assert r.exit_code == 2 and "--dry-run" in r.stderr and "--yes" in r.stderr, r
    assert peer.commands == []  # not even connected


def test_dry_run_says_what_next(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    _spec(project, peer)
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 0, r
    assert "next: piimg router-setup   (applies this plan, after a backup on the router)" in r.stderr
    assert piimg("router-setup", "--yes").exit_code == 0
    r = piimg("router-setup", "--dry-run")
    assert "next: piimg status --watch" in r.stderr
