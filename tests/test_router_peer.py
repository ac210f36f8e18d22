"""The RouterOS API peer itself: wire format, replies, menus per version, faults.

Checked with raw sockets (the bytes RouterOS would send) and with librouteros.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import librouteros
import pytest
from librouteros.exceptions import ConnectionClosed, FatalError, TrapError
from librouteros.protocol import decode_length, encode_length
from librouteros.query import Key, Or

from tests.routeros_peer import ARGS_TABLE, RouterOSPeer, encode_sentence, read_sentence
from tests.routeros_peer import encode_length as peer_encode_length

pytestmark = pytest.mark.integration

#: the restraml commit tests/data/routeros/args.json was derived from
RESTRAML = "676c4bdfe211d51e8d48785b2ae2b72f838d20c8"


@pytest.mark.parametrize("n", [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF])
def test_length_encoding_matches_librouteros(n: int) -> None:
    assert peer_encode_length(n) == encode_length(n)
    assert decode_length(peer_encode_length(n)) == n


class Raw:
    """A raw API client: sends sentences, returns reply sentences up to !done/!fatal."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)

    def call(self, *words: str) -> list[list[str]]:
        self.sock.sendall(encode_sentence(list(words)))
        replies = []
        while True:
            sentence = read_sentence(self.sock)
            replies.append(sentence)
            if sentence[0] in ("!done", "!fatal"):
                return replies

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def raw_720() -> Iterator[tuple[RouterOSPeer, Raw]]:
    with RouterOSPeer(version="7.20.1", users={"admin": "pw"}) as peer:
        raw = Raw(peer.address)
        assert raw.call("/login", "=name=admin", "=password=pw") == [["!done"]]
        yield peer, raw
        raw.close()


def test_not_logged_in_is_fatal() -> None:
    with RouterOSPeer() as peer:
        raw = Raw(peer.address)
        assert raw.call("/ip/address/print") == [["!fatal", "not logged in"]]
        raw.close()


def test_empty_reply_since_7_18(raw_720: tuple[RouterOSPeer, Raw]) -> None:
    _, raw = raw_720
    assert raw.call("/ip/pool/print", ".tag=7") == [["!empty", "=.tag=7"], ["!done", "=.tag=7"]]
    with RouterOSPeer(version="7.15.3", users={"admin": "pw"}) as old:
        r = Raw(old.address)
        r.call("/login", "=name=admin", "=password=pw")
        assert r.call("/ip/pool/print") == [["!done"]]
        r.close()


def test_add_print_proplist_query_and_traps(raw_720: tuple[RouterOSPeer, Raw]) -> None:
    peer, raw = raw_720
    [done] = raw.call("/ip/pool/add", "=name=p1", "=ranges=10.0.3.1-10.0.3.9")
    assert done[0] == "!done" and done[1].startswith("=ret=*")
    raw.call("/ip/pool/add", "=name=p2", "=ranges=10.0.4.1-10.0.4.9", "=comment=x")
    replies = raw.call("/ip/pool/print", "=.proplist=name", "?comment=x")
    assert replies == [["!re", "=name=p2"], ["!done"]]
    trap = raw.call("/ip/pool/add", "=name=p1", "=ranges=10.0.5.1-10.0.5.9")
    assert trap[0] == ["!trap", "=category=4", "=message=failure: pool with such name exists"]
    assert raw.call("/ip/pool/add", "=bogus=1")[0][-1] == "=message=unknown parameter bogus"
    assert raw.call("/no/such/print")[0][-1] == "=message=no such command prefix"
    assert peer.writes == 2


def test_librouteros_queries_and_versions() -> None:
    with RouterOSPeer(version="6.49.10", users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        pools = api.path("ip", "pool")
        for i in range(3):
            pools.add(name=f"p{i}", ranges=f"10.0.{i}.1-10.0.{i}.9")
        name = Key("name")
        got = [r["name"] for r in pools.select(name).where(Or(name == "p0", name == "p2"))]
        assert got == ["p0", "p2"]
        assert [r["name"] for r in pools.select(name).where(name != "p1")] == ["p0", "p2"]
        # RouterOS 6 has the default BGP instance and /routing/bgp/peer, no connection menu
        assert [r["name"] for r in api.path("routing", "bgp", "instance")] == ["default"]
        with pytest.raises(TrapError, match="no such command prefix"):
            list(api.path("routing", "bgp", "connection"))
        api.close()


def test_bgp_menus_per_version() -> None:
    with RouterOSPeer(version="7.20.1", users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        conn = api.path("routing", "bgp", "connection")
        with pytest.raises(TrapError, match="instance not set"):
            conn.add(name="x", **{"remote.address": "10.0.2.10", "remote.as": 64500, "local.role": "ebgp"})
        api.path("routing", "bgp", "instance").add(name="i", **{"as": 65530, "router-id": "10.0.2.1"})
        with pytest.raises(TrapError, match="unknown parameter router-id"):
            conn.add(name="x", instance="i", **{"router-id": "1.1.1.1", "local.role": "ebgp"})
        conn.add(name="x", instance="i", afi="ip", **{"remote.address": "10.0.2.10", "remote.as": 64500, "local.role": "ebgp"})
        peer.add_bgp_session("10.0.2.10", prefixes=["10.0.4.1", "10.0.4.2"])
        [session] = api.path("routing", "bgp", "session")
        assert session["established"] is True and session["name"] == "x-1"
        routes = list(api.path("ip", "route").select(Key("dst-address"), Key("gateway")).where(Key("bgp") == True))  # noqa: E712
        assert routes == [{"dst-address": "10.0.4.1/32", "gateway": "10.0.2.10"}, {"dst-address": "10.0.4.2/32", "gateway": "10.0.2.10"}]
        api.close()
    with RouterOSPeer(version="7.18.1", users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        with pytest.raises(TrapError, match="unknown parameter afi"):
            api.path("routing", "bgp", "connection").add(afi="ip", **{"as": 1, "local.role": "ebgp"})
        api.close()


def test_drop_after_and_quit() -> None:
    with RouterOSPeer(users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        peer.drop_after(1)
        list(api.path("ip", "pool"))
        with pytest.raises(ConnectionClosed):
            api.path("ip", "pool").add(name="lost", ranges="10.0.3.1-10.0.3.2")
        assert peer.rows("/ip/pool") == []
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        peer.drop_after(0, executed=True)
        with pytest.raises(ConnectionClosed):
            api.path("ip", "pool").add(name="done", ranges="10.0.3.1-10.0.3.2")
        assert [r["name"] for r in peer.rows("/ip/pool")] == ["done"]
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        with pytest.raises(FatalError, match="session terminated on request"):
            list(api("/quit"))


def test_bgp_session_on_routeros_6() -> None:
    with RouterOSPeer(version="6.49.10", users={"admin": "pw"}) as peer:
        peer.add_bgp_session("10.0.2.10", prefixes=["10.0.4.1"])
        peer.add_bgp_session("10.0.2.11", established=False)
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        state = {r["remote-address"]: (r["state"], r["established"]) for r in api.path("routing", "bgp", "peer")}
        assert state == {"10.0.2.10": ("established", True), "10.0.2.11": ("active", False)}
        [route] = api.path("ip", "route")
        assert (route["dst-address"], route["gateway"], route["bgp"]) == ("10.0.4.1/32", "10.0.2.10", True)
        api.close()


@pytest.mark.parametrize(("version", "dump"), [("7.20.4", "7.20.4"), ("7.21.3", "7.21"), ("7.21.5", "7.21.5")])
def test_no_multipath_before_7_22(version: str, dump: str) -> None:
    """restraml docs/7.20*/ and 7.21*/inspect.json: /routing/bgp/instance/add has no multipath."""
    with RouterOSPeer(version=version, users={"admin": "pw"}) as peer:
        assert peer.dump_version == dump
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        inst = api.path("routing", "bgp", "instance")
        with pytest.raises(TrapError, match="unknown parameter multipath"):
            inst.add(name="i", multipath=2, **{"as": 65530, "router-id": "10.0.2.1"})
        inst.add(name="i", **{"as": 65530, "router-id": "10.0.2.1"})
        api.close()


def test_multipath_is_a_number_from_7_22() -> None:
    """7.22 dump has multipath; MikroTik documents it as integer [0..4294967295]."""
    with RouterOSPeer(version="7.22.1", users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        inst = api.path("routing", "bgp", "instance")
        with pytest.raises(TrapError, match="invalid value for argument multipath"):
            inst.add(name="i", multipath="yes", **{"as": 65530})
        inst.add(name="i", multipath=3, **{"as": 65530})
        assert peer.rows("/routing/bgp/instance")[0]["multipath"] == "3"
        # tcp-md5-key: "string value, max length 80" in every 7.x dump
        with pytest.raises(TrapError, match="tcp-md5-key"):
            api.path("routing", "bgp", "connection").add(instance="i", **{"tcp-md5-key": "k" * 81, "local.role": "ebgp"})
        api.close()


def test_argument_table_comes_from_the_dumps() -> None:
    table = json.loads(ARGS_TABLE.read_text())["versions"]
    for version in ("6.49", "7.16", "7.19", "7.20", "7.21", "7.22"):
        assert version in table
    assert table["6.49"]["source"].startswith("ansible-collections/community.routeros@")
    assert table["7.20"]["source"] == f"tikoci/restraml@{RESTRAML}:docs/7.20/inspect.json"
    conn = {v: set(table[v]["menus"]["/routing/bgp/connection"]) for v in ("7.16", "7.19", "7.20")}
    assert "address-families" in conn["7.16"] and "afi" not in conn["7.16"]
    assert "afi" in conn["7.19"] and "router-id" in conn["7.19"]
    assert "router-id" not in conn["7.20"] and "instance" in conn["7.20"]
    assert "/routing/bgp/connection" not in table["6.49"]["menus"]
    with RouterOSPeer(version="6.49.10", users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        with pytest.raises(TrapError, match="unknown parameter afi"):
            api.path("routing", "bgp", "peer").add(afi="ip", **{"remote-address": "10.0.2.10", "remote-as": 64500})
        api.close()


def test_dash_and_dot_separated_macs_are_accepted() -> None:
    """The lease mac-address description: AB[:|-|.]CD[:|-|.]EF... (printed with colons)."""
    with RouterOSPeer(version="7.19.4", users={"admin": "pw"}) as peer:
        api = librouteros.connect(*peer.address[:1], "admin", "pw", port=peer.address[1])
        leases = api.path("ip", "dhcp-server", "lease")
        leases.add(address="10.0.2.10", **{"mac-address": "dc-a6-32-01-02-03"})
        leases.add(address="10.0.2.11", **{"mac-address": "dc.a6.32.01.02.04"})
        assert [r["mac-address"] for r in peer.rows("/ip/dhcp-server/lease")] == ["DC:A6:32:01:02:03", "DC:A6:32:01:02:04"]
        api.close()
