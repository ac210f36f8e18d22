"""piimg router-setup end to end: the real librouteros client against tests/routeros_peer.py."""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg.errors import ConfigError, RouterError
from piimg.router import rsc
from piimg.router.client import connect, router_password
from piimg.router.dialects import dialect_from_spec
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from tests.conftest import TEST_KEY, have
from tests.routeros_peer import RouterOSPeer, make_self_signed

pytestmark = pytest.mark.integration

PASSWORD = "r0uter-Pa55"
BGP_KEY = "md5-Secret-42"
GOLDEN = Path(__file__).parent / "golden" / "router"
NODES = [
    {"hostname": "k8s-master", "role": "server", "address": "10.0.2.10", "mac": "dc:a6:32:01:02:03"},
    {"hostname": "k8s-w1", "role": "agent", "address": "10.0.2.11", "mac": "dc:a6:32:01:02:04"},
]
#: one release per BGP dialect and per multipath/afi boundary; the peer plays each
#: with that release's argument names (tests/data/routeros/args.json)
VERSIONS = ["6.49.10", "7.15.3", "7.16.1", "7.19.4", "7.20.1", "7.21.5", "7.22.1"]


@pytest.fixture()
def peer(request: pytest.FixtureRequest) -> Iterator[RouterOSPeer]:
    version = getattr(request, "param", "7.20.1")
    with RouterOSPeer(version=version, users={"admin": PASSWORD}) as p:
        yield p


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", PASSWORD)
    monkeypatch.setenv("PIIMG_BGP_KEY", BGP_KEY)


def write_spec(project: Path, peer: RouterOSPeer | None, *, nodes: list[dict[str, Any]] | None = None,
               router: dict[str, Any] | None = None, bgp_key: bool = True) -> Path:
    r: dict[str, Any] = {"tls": False}
    if peer is not None:
        r.update({"host": peer.address[0], "port": peer.address[1]})
    r.update(router or {})
    raw: dict[str, Any] = {
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "router": r,
        "cluster": {"bgp": {"password_env": "PIIMG_BGP_KEY"}} if bgp_key else {},
        "nodes": nodes if nodes is not None else NODES,
    }
    path = project / "piimg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def bgp_rows(peer: RouterOSPeer) -> list[dict[str, str]]:
    menu = "/routing/bgp/peer" if peer.version[0] == 6 else "/routing/bgp/connection"
    return peer.rows(menu, comment="piimg: homelab node k8s-master") + peer.rows(menu, comment="piimg: homelab node k8s-w1")


def writes_after(peer: RouterOSPeer, start: int) -> list[str]:
    return [c for c in peer.commands[start:] if not c.endswith("/print")]


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("peer", VERSIONS, indirect=True)
def test_fresh_router_full_config_then_no_changes(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    r = piimg("router-setup", "--yes")
    assert r.exit_code == 0, r.output
    assert "applied" in r.stdout
    assert BGP_KEY not in r.output and PASSWORD not in r.output

    assert [b["name"] for b in peer.rows("/interface/bridge")] == ["bridge2"]
    ports = peer.rows("/interface/bridge/port", bridge="bridge2")
    assert [p["interface"] for p in ports] == ["ether6", "ether7", "ether8", "ether9", "ether10"]
    assert peer.rows("/ip/address", interface="bridge2")[0]["address"] == "10.0.2.1/23"
    assert peer.rows("/ip/pool")[0]["ranges"] == "10.0.3.1-10.0.3.254"
    server = peer.rows("/ip/dhcp-server")[0]
    assert (server["name"], server["interface"], server["address-pool"], server["disabled"]) == ("dhcp2", "bridge2", "lab-pool", "false")
    net = peer.rows("/ip/dhcp-server/network")[0]
    assert (net["address"], net["gateway"], net["dns-server"]) == ("10.0.2.0/23", "10.0.2.1", "8.8.8.8,8.8.4.4")
    leases = {row["mac-address"]: row["address"] for row in peer.rows("/ip/dhcp-server/lease")}
    assert leases == {"DC:A6:32:01:02:03": "10.0.2.10", "DC:A6:32:01:02:04": "10.0.2.11"}
    peers = bgp_rows(peer)
    assert len(peers) == 2
    if peer.version[0] == 6:
        inst = peer.rows("/routing/bgp/instance", name="piimg-homelab")[0]
        assert (inst["as"], inst["router-id"]) == ("65530", "10.0.2.1")
        assert [(p["remote-address"], p["remote-as"], p["instance"], p["tcp-md5-key"]) for p in peers] == [
            ("10.0.2.10", "64500", "piimg-homelab", BGP_KEY), ("10.0.2.11", "64500", "piimg-homelab", BGP_KEY)]
        assert "no BGP multipath" in r.stdout
    elif peer.version < (7, 20):
        afi = "afi" if peer.version >= (7, 19) else "address-families"
        assert [(p["remote.address"], p["remote.as"], p["as"], p["router-id"], p["local.role"], p[afi]) for p in peers] == [
            ("10.0.2.10", "64500", "65530", "10.0.2.1", "ebgp", "ip"), ("10.0.2.11", "64500", "65530", "10.0.2.1", "ebgp", "ip")]
        assert "no BGP multipath" in r.stdout
    else:
        inst = peer.rows("/routing/bgp/instance", name="piimg-homelab")[0]
        assert (inst["as"], inst["router-id"]) == ("65530", "10.0.2.1")
        assert all(p["instance"] == "piimg-homelab" and "router-id" not in p for p in peers)
        if peer.version >= (7, 22):  # ECMP over both nodes
            assert inst["multipath"] == "2"
            assert "no BGP multipath" not in r.stdout
        else:  # 7.20 and 7.21 have no multipath argument at all
            assert "multipath" not in inst
            assert "no BGP multipath" in r.stdout and "ECMP needs RouterOS 7.22" in r.stdout
    backups = [f["name"] for f in peer.rows("/file")]
    assert len(backups) == 1 and backups[0].startswith("piimg-homelab-") and backups[0].endswith(".backup")

    writes, start = peer.writes, len(peer.commands)
    again = piimg("router-setup", "--yes")
    assert again.exit_code == 0, again.output
    assert "no changes" in again.stdout
    assert peer.writes == writes
    assert writes_after(peer, start) == []  # reads only


def test_dry_run_makes_zero_writes(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "+ add bridge bridge2" in r.stdout
    assert "tcp-md5-key=********" in r.stdout
    assert "dry run: nothing was changed" in r.stdout
    assert peer.writes == 0
    assert writes_after(peer, 0) == []
    assert peer.rows("/file") == []


def test_confirmation(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    r = piimg("router-setup", input="maybe\nn\n")
    # the flash question's style (S15): capitalised, what and where, asked again in piimg's words
    question = f"Apply these 15 change(s) to the router at {peer.address[0]}:{peer.address[1]}? [y/N]: "
    assert r.stderr.count(question) == 2, r.stderr
    assert "please answer y or n (not 'maybe')" in r.stderr and "Error" not in r.output
    assert r.exit_code == 0 and "not applied; nothing was changed on the router" in r.stderr
    assert peer.writes == 0
    r = piimg("router-setup")  # no answer: stdin at EOF, not a terminal
    assert r.exit_code == 1 and "nothing was changed" in r.stderr and "hint: add --yes" in r.stderr
    assert peer.writes == 0
    r = piimg("router-setup", "--no-backup", input="y\n")
    assert r.exit_code == 0, r.output
    assert peer.writes == 15  # no backup
    assert peer.rows("/file") == []


@pytest.mark.parametrize("executed", [False, True], ids=["lost-before", "lost-reply"])
def test_connection_drop_mid_apply_then_converges(peer: RouterOSPeer, project: Path, piimg: Any, executed: bool) -> None:
    write_spec(project, peer)
    dry = piimg("router-setup", "--dry-run")
    reads = len(peer.commands)  # resource + one print per menu
    assert dry.exit_code == 0
    # the run: reads, backup, 4 changes, then the 5th change is lost
    peer.drop_after(reads + 1 + 4, executed=executed)
    r = piimg("router-setup", "--yes")
    assert r.exit_code == 1, r.output
    assert "connection was lost during `add /interface/bridge/port ether9`" in r.stderr
    assert "applied 4 of 15 change(s)" in r.stderr
    assert "not applied (it may or may not have been applied): add /interface/bridge/port ether9; add /interface/bridge/port ether10" in r.stderr
    assert "run piimg router-setup again" in r.stderr

    again = piimg("router-setup", "--yes")
    assert again.exit_code == 0, again.output
    assert ("10 to add" if executed else "11 to add") in again.stdout
    for path, count in [("/interface/bridge", 1), ("/interface/bridge/port", 5), ("/ip/address", 1), ("/ip/pool", 1),
                        ("/ip/dhcp-server", 1), ("/ip/dhcp-server/lease", 2), ("/routing/bgp/connection", 2)]:
        assert len(peer.rows(path)) == count, path
    assert "no changes" in piimg("router-setup", "--yes").stdout


def test_router_refusal_mid_apply_reports_progress(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer, nodes=[{**NODES[0], "mac": None}], bgp_key=False)
    # something the plan cannot see makes RouterOS refuse the 6th change
    peer.trap_on("/ip/address/add", "failure: already have such address")
    r = piimg("router-setup", "--yes", "--no-backup")
    assert r.exit_code == 1
    assert "the router refused `add /ip/address 10.0.2.1`: failure: already have such address" in r.stderr
    assert "applied 6 of 12" in r.stderr
    assert "change(s), not applied: add /ip/address 10.0.2.1;" in r.stderr  # a refusal leaves no doubt


@pytest.mark.parametrize("peer", ["6.49.10", "7.22.1"], indirect=True)
def test_unknown_port_is_a_conflict_before_any_write(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    """An RB5009 has ether1-ether8: ether9/ether10 are refused in the plan, not mid-apply after the backup."""
    peer.state["/interface/ethernet"] = [e for e in peer.state["/interface/ethernet"] if e["name"] not in ("ether9", "ether10")]
    write_spec(project, peer)
    r = piimg("router-setup", "--yes")
    assert r.exit_code == 1
    ports = ", ".join(f"ether{i}" for i in range(1, 9))
    assert f"! conflict: /interface/bridge/port ether9: the router has no interface ether9 (its ports: {ports}); to fix: set router.ports" in r.stdout
    assert "! conflict: /interface/bridge/port ether10: the router has no interface ether10" in r.stdout
    assert "nothing was changed" in r.stderr
    assert peer.writes == 0 and peer.rows("/file") == []  # not even the backup


def test_unmanaged_conflicts_left_untouched_and_reported(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    peer.add_row("/interface/bridge", name="bridge", comment="defconf")
    peer.add_row("/interface/bridge/port", bridge="bridge", interface="ether6", comment="defconf")
    peer.add_row("/ip/pool", name="lab-pool", ranges="10.0.3.1-10.0.3.50")
    before = {path: [dict(r) for r in rows] for path, rows in peer.state.items()}
    write_spec(project, peer)
    r = piimg("router-setup", "--yes")
    assert r.exit_code == 1
    assert "! conflict: /interface/bridge/port ether6: bridge port ether6 in bridge bridge exists and is not managed by piimg" in r.stdout
    assert "to fix: /interface bridge port remove [find interface=ether6]" in r.stdout
    assert "! conflict: /ip/pool lab-pool" in r.stdout
    assert "nothing was changed" in r.stderr
    assert peer.writes == 0
    assert peer.state == before


def test_changing_a_node_address_updates_only_that_peer(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    assert piimg("router-setup", "--yes").exit_code == 0
    master_before = bgp_rows(peer)[0]
    snapshot = {p: [dict(r) for r in rows] for p, rows in peer.state.items() if p != "/file"}
    start = len(peer.commands)
    write_spec(project, peer, nodes=[NODES[0], {**NODES[1], "address": "10.0.2.20"}])
    r = piimg("router-setup", "--yes", "--no-backup")
    assert r.exit_code == 0, r.output
    assert writes_after(peer, start) == ["/ip/dhcp-server/lease/set", "/routing/bgp/connection/set"]
    assert bgp_rows(peer)[0] == master_before
    assert bgp_rows(peer)[1]["remote.address"] == "10.0.2.20"
    changed = [p for p, rows in peer.state.items() if p != "/file" and rows != snapshot[p]]
    assert changed == ["/ip/dhcp-server/lease", "/routing/bgp/connection"]


@pytest.mark.parametrize("peer", ["6.49.10", "7.20.1"], indirect=True)
def test_removing_a_node_removes_only_its_peer_and_lease(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    assert piimg("router-setup", "--yes").exit_code == 0
    menu = "/routing/bgp/peer" if peer.version[0] == 6 else "/routing/bgp/connection"
    remote = "remote-address" if peer.version[0] == 6 else "remote.address"
    # items piimg does not own, next to ours
    peer.add_row("/ip/dhcp-server/lease", address="10.0.2.30", mac_address="AA:BB:CC:00:00:01", server="dhcp2")
    extra = {"name": "upstream", remote: "192.0.2.1"}
    if peer.version[0] == 6:
        extra.update({"remote-as": "65000"})
    else:
        extra.update({"remote.as": "65000", "local.role": "ebgp", "instance": "piimg-homelab"})
    peer.add_row(menu, **{k.replace("-", "_"): v for k, v in extra.items()})
    start = len(peer.commands)
    write_spec(project, peer, nodes=[NODES[0]])
    r = piimg("router-setup", "--yes", "--no-backup")
    assert r.exit_code == 0, r.output
    assert writes_after(peer, start) == [f"{menu}/remove", "/ip/dhcp-server/lease/remove"]
    assert [row["name"] for row in peer.rows(menu)] == ["piimg-k8s-master", "upstream"]
    assert sorted(row["address"] for row in peer.rows("/ip/dhcp-server/lease")) == ["10.0.2.10", "10.0.2.30"]


@pytest.mark.skipif(not have("openssl"), reason="needs the openssl CLI (Debian: openssl)")
def test_tls_with_self_signed_certificate(tmp_path: Path, project: Path, piimg: Any) -> None:
    cert, key = make_self_signed(tmp_path)
    with RouterOSPeer(version="7.19.4", users={"admin": PASSWORD}, tls=(cert, key)) as p:
        write_spec(project, p, router={"tls": True})
        r = piimg("router-setup", "--dry-run")
        assert r.exit_code == 1
        assert "TLS certificate is not trusted" in r.stderr
        assert "router.ca_file" in r.stderr

        (project / "router-ca.pem").write_bytes(cert.read_bytes())
        spec_file = write_spec(project, p, router={"tls": True, "ca_file": "router-ca.pem"})
        os.chdir(tmp_path)  # ca_file is relative to piimg.yaml, not to the working directory
        r = piimg("-c", str(spec_file), "router-setup", "--yes")
        os.chdir(project)
        assert r.exit_code == 0, r.output
        assert len(p.rows("/routing/bgp/connection")) == 2

        write_spec(project, p, router={"tls": True, "tls_verify": False})
        r = piimg("router-setup", "--dry-run")
        assert r.exit_code == 0, r.output
        assert "no changes" in r.stdout

        write_spec(project, p, router={"tls": False})  # plain API against api-ssl
        r = piimg("router-setup", "--dry-run")
        assert r.exit_code == 1 and "error:" in r.stderr


def test_secrets_never_logged(peer: RouterOSPeer, project: Path, piimg: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    write_spec(project, peer)
    r = piimg("--debug", "router-setup", "--yes")
    assert r.exit_code == 0, r.output
    assert "=password=***" in caplog.text  # librouteros logged the login, masked
    assert "=tcp-md5-key=***" in caplog.text
    for secret in (PASSWORD, BGP_KEY):
        assert secret not in caplog.text
        assert secret not in r.output


def test_non_ascii_password(peer: RouterOSPeer, project: Path, piimg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    write_spec(project, peer)
    monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", "pässwort")
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert "non-ASCII" in r.stderr and "pässwort" not in r.output


def test_missing_and_wrong_password(peer: RouterOSPeer, project: Path, piimg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    write_spec(project, peer)
    monkeypatch.delenv("PIIMG_ROUTER_PASSWORD")
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert "error: router.password_env: environment variable PIIMG_ROUTER_PASSWORD is not set" in r.stderr
    monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", "wrong")
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert "login as admin refused: invalid user name or password (6)" in r.stderr
    assert peer.logins == 0


def test_password_prompt_on_a_terminal(peer: RouterOSPeer, project: Path, piimg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import piimg.cli.router_cmd as router_cmd

    monkeypatch.setattr(router_cmd, "_interactive", lambda: True)
    monkeypatch.delenv("PIIMG_ROUTER_PASSWORD")
    write_spec(project, peer)
    r = piimg("router-setup", input=f"{PASSWORD}\ny\n")
    assert r.exit_code == 0, r.output
    assert "RouterOS password for admin@127.0.0.1" in r.output
    assert PASSWORD not in r.output  # hidden input is not echoed
    assert peer.logins == 1 and peer.writes == 16


def test_router_password_prompt_and_env() -> None:
    spec = spec_model.RouterSpec(password_env="X_PW")
    assert router_password(spec, env={"X_PW": "a"}) == "a"
    assert router_password(spec, env={}, prompt=lambda text: "typed") == "typed"
    with pytest.raises(ConfigError):
        router_password(spec, env={}, prompt=None)


@pytest.mark.parametrize("peer", ["6.40.9", "8.0.1"], indirect=True)
def test_unsupported_version(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert f"RouterOS {peer.version_text} is not supported" in r.stderr
    assert peer.writes == 0


@pytest.mark.parametrize(("peer", "version", "span"), [
    ("7.20.1", "7", "RouterOS 7.0-7.18"),
    ("7.19.4", "7", "RouterOS 7.0-7.18"),  # 7 renders address-families, which 7.19 rejects
    ("7.21.5", "7.22", "RouterOS 7.22 and later"),  # multipath, which 7.21 rejects
], indirect=["peer"])
def test_spec_version_must_match_router(peer: RouterOSPeer, version: str, span: str, project: Path, piimg: Any) -> None:
    write_spec(project, peer, router={"version": version})
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert f"router.version is {version} ({span}), but the router runs RouterOS {peer.version_text}" in r.stderr
    assert f"hint: set router.version: auto, or {peer.version[0]}.{peer.version[1]}" in r.stderr


def test_unreachable_router(project: Path, piimg: Any) -> None:
    with RouterOSPeer() as p:
        addr = p.address
    write_spec(project, None, router={"host": addr[0], "port": addr[1]})
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert f"{addr[0]}:{addr[1]}: cannot connect" in r.stderr
    assert "hint: enable the service: /ip service enable api" in r.stderr


def test_tls_against_the_plain_api_port_names_the_mismatch(peer: RouterOSPeer, project: Path) -> None:
    spec = spec_load.load(write_spec(project, peer, router={"tls": True, "tls_verify": False}))
    with pytest.raises(RouterError, match=r": (timed out|TLS handshake failed \(.+\)|connection reset during the TLS handshake)$") as info:
        connect(spec.router, PASSWORD, timeout=0.5)
    assert info.value.hint == f"router.tls is true: is {peer.address[1]} the api-ssl service (/ip service print)?"


# --- export -----------------------------------------------------------------


def test_export_into_missing_folder_is_refused(project: Path, piimg: Any) -> None:
    write_spec(project, None, router={"version": "7.20", "host": "10.0.2.1"})
    r = piimg("router-setup", "--export", str(project / "no" / "such" / "x.rsc"))
    assert r.exit_code == 1 and "folder" in r.stderr and "does not exist" in r.stderr
    assert not (project / "no").exists()


@pytest.mark.parametrize("version", ["6", "7", "7.19", "7.20", "7.21", "7.22"])
def test_export_matches_golden(version: str, project: Path, piimg: Any) -> None:
    write_spec(project, None, router={"version": version, "host": "10.0.2.1"})
    out = project / "router.rsc"
    r = piimg("router-setup", "--export", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    golden = GOLDEN / f"v{version}.rsc"
    if os.environ.get("PIIMG_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    assert BGP_KEY not in text
    assert "tcp-md5-key=$piimgBgpKey" in text
    # /import runs the file as a script: it must declare the global before using it
    assert text.index("\n:global piimgBgpKey\n") < text.index("$piimgBgpKey", text.index("\n/"))


def _replay(api: Any, script: str, key: str) -> None:
    """Run an exported script's add lines through the API (what /import would do)."""
    menu: list[str] = []
    key_variable_lines = [
        ":global piimgBgpKey",
        ':if ([:len $piimgBgpKey] = 0) do={ :error "set the BGP key first: :global piimgBgpKey KEY" }',
    ]
    for line in script.splitlines():
        if not line or line.startswith("#"):
            continue
        lan = ":if ([:len [/interface list find name=LAN]] > 0) do={ /interface list member add "
        if line.startswith(lan):  # the lab bridge joins LAN where that list exists
            if any(r["name"] == "LAN" for r in api.path("interface", "list")):
                words = shlex.split(line[len(lan):].removesuffix(" }"))
                api.path("interface", "list", "member").add(**dict(w.split("=", 1) for w in words))
            continue
        if line.startswith(":"):  # the key's declaration and check
            assert key_variable_lines.pop(0) == line
            continue
        if line.startswith("/"):
            menu = line[1:].split()
            continue
        words = shlex.split(line.replace("$piimgBgpKey", key))
        assert words[0] == "add"
        api.path(*menu).add(**dict(w.split("=", 1) for w in words[1:]))


@pytest.mark.parametrize("peer", VERSIONS, indirect=True)
def test_export_with_auto_version_equals_apply(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    """The exported script, pasted into the router, leaves router-setup nothing to do."""
    write_spec(project, peer)
    out = project / "router.rsc"
    r = piimg("router-setup", "--export", str(out))
    assert r.exit_code == 0, r.output
    assert peer.writes == 0
    spec = spec_load.load(project / "piimg.yaml")
    api = connect(spec.router, PASSWORD)
    try:
        _replay(api, out.read_text(), BGP_KEY)  # also checks the key is declared and checked
    finally:
        api.close()
    r = piimg("router-setup", "--yes")
    assert r.exit_code == 0, r.output
    assert "no changes" in r.stdout


def test_export_is_offline_and_renders_each_dialect() -> None:
    spec = spec_load.parse({"access": {"ssh_authorized_keys": [TEST_KEY]}, "nodes": NODES})
    v6 = rsc.render(spec, dialect_from_spec("6"))
    assert "/routing bgp peer\nadd address-families=ip" in v6
    assert "/routing bgp connection" not in v6
    v720 = rsc.render(spec, dialect_from_spec("7.20"))
    assert "/routing bgp instance\nadd as=65530 comment=\"piimg: homelab\" name=piimg-homelab router-id=10.0.2.1\n" in v720
    assert "multipath" not in v720.replace("no BGP multipath", "")
    assert "tcp-md5-key" not in v720  # no BGP password configured
    v722 = rsc.render(spec, dialect_from_spec("7.22"))
    assert "/routing bgp instance\nadd as=65530 comment=\"piimg: homelab\" multipath=2 name=piimg-homelab router-id=10.0.2.1" in v722


@pytest.mark.parametrize("version", ["6.49.10", "7.19.4", "7.22.1"])
def test_factory_firewall_lab_bridge_joins_lan(version: str, project: Path, piimg: Any) -> None:
    """defconf drops input not from LAN: bridge2 joins LAN (owned), the export does the same."""
    with RouterOSPeer(version=version, users={"admin": PASSWORD}, defconf=True) as p:
        write_spec(project, p)
        assert not p.input_accepts("bridge2")  # defconf: "drop all not coming from LAN"
        assert p.input_accepts("bridge") and not p.input_accepts("ether1") and p.input_accepts("ether1", new=False)
        r = piimg("router-setup", "--yes", "--no-backup")
        assert r.exit_code == 0, r.output
        assert p.input_accepts("bridge2")  # DHCP requests and BGP from the nodes reach the router
        assert "+ add interface list member bridge2 in LAN: /interface list member add interface=bridge2 list=LAN" in r.stdout
        assert 'note: bridge2 joins the interface list LAN: the firewall rule "defconf: drop all not coming from LAN"' in r.stdout
        [member] = p.rows("/interface/list/member", interface="bridge2")
        assert (member["list"], member["comment"]) == ("LAN", "piimg: homelab")
        assert p.rows("/interface/list/member", interface="bridge", list="LAN")  # defconf's own, untouched
        again = piimg("router-setup", "--yes", "--no-backup")
        assert "no changes" in again.stdout, again.output
        # the spec moves to another bridge: the old membership goes with it
        write_spec(project, p, router={"bridge": "lab"})
        r = piimg("router-setup", "--yes", "--no-backup")
        assert r.exit_code == 0, r.output
        assert [m["interface"] for m in p.rows("/interface/list/member", comment="piimg: homelab")] == ["lab"]

    with RouterOSPeer(version=version, users={"admin": PASSWORD}, defconf=True) as p:
        write_spec(project, p)
        out = project / "router.rsc"
        assert piimg("router-setup", "--export", str(out)).exit_code == 0
        spec = spec_load.load(project / "piimg.yaml")
        api = connect(spec.router, PASSWORD)
        try:
            _replay(api, out.read_text(), BGP_KEY)
        finally:
            api.close()
        assert p.rows("/interface/list/member", interface="bridge2", list="LAN")
        r = piimg("router-setup", "--dry-run")
        assert "no changes" in r.stdout, r.output


def test_firewall_without_lan_list_is_explained(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    """A firewall keyed on a list other than LAN: the plan says what the nodes lose and how to allow them."""
    peer.add_row("/interface/list", name="trusted")
    peer.state["/ip/firewall/filter"].append({".id": "*F1", "chain": "input", "action": "drop", "in-interface-list": "!trusted",
                                              "comment": "drop untrusted", "disabled": "false"})
    write_spec(project, peer)
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "interface list member" not in r.stdout.split("note:")[0]  # nothing added to a list that is not LAN
    assert ('note: the firewall rule "drop untrusted" (chain=input action=drop in-interface-list=!trusted) drops everything '
            "the nodes on bridge2 send to the router itself, because bridge2 is not in the list trusted: BGP connections") in r.stdout
    assert "to allow them: /interface list member add list=trusted interface=bridge2" in r.stdout


@pytest.mark.parametrize("peer", ["6.49.10", "7.22.1"], indirect=True)
def test_dhcp_server_rename_is_a_rename(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    write_spec(project, peer)
    assert piimg("router-setup", "--yes", "--no-backup").exit_code == 0
    [before] = peer.rows("/ip/dhcp-server")
    start = len(peer.commands)
    write_spec(project, peer, router={"dhcp_server": "lab-dhcp"})
    r = piimg("router-setup", "--yes", "--no-backup")
    assert r.exit_code == 0, r.output
    assert "~ set DHCP server lab-dhcp: name dhcp2 -> lab-dhcp" in r.stdout
    assert "/ip/dhcp-server/add" not in peer.commands[start:] and "/ip/dhcp-server/remove" not in peer.commands[start:]
    [after] = peer.rows("/ip/dhcp-server")  # never two servers on bridge2
    assert (after[".id"], after["name"], after["interface"]) == (before[".id"], "lab-dhcp", "bridge2")
    assert {row["server"] for row in peer.rows("/ip/dhcp-server/lease")} == {"lab-dhcp"}
    assert "no changes" in piimg("router-setup", "--yes").stdout


@pytest.mark.parametrize("peer", ["6.49.10", "7.20.1"], indirect=True)
def test_password_dropped_from_the_spec_clears_the_routers_key(peer: RouterOSPeer, project: Path, piimg: Any) -> None:
    """Without cluster.bgp.password_env the nodes send no TCP-MD5 signature (stock Pi OS kernels cannot send one,
    audit-k8s #1), so a key left on the router would keep every session down: router-setup clears it, then rests."""
    write_spec(project, peer)
    assert piimg("router-setup", "--yes").exit_code == 0
    assert [p["tcp-md5-key"] for p in bgp_rows(peer)] == [BGP_KEY, BGP_KEY]
    write_spec(project, peer, bgp_key=False)
    r = piimg("router-setup", "--yes")
    assert r.exit_code == 0, r.output
    assert [p.get("tcp-md5-key", "") for p in bgp_rows(peer)] == ["", ""]
    writes = peer.writes
    again = piimg("router-setup", "--yes")
    assert again.exit_code == 0 and "no changes" in again.stdout, again.output
    assert peer.writes == writes
