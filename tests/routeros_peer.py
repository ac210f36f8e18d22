"""A RouterOS API peer for tests: the real wire protocol on 127.0.0.1.

It speaks what a MikroTik router speaks on ports 8728/8729 (MikroTik "API"
manual): length-prefixed words, sentences ended by an empty word, replies
``!re`` / ``!done`` / ``!trap`` / ``!fatal`` and, like RouterOS 7.18 and
later, ``!empty`` for a print without rows; ``.tag``; ``=.proplist=``;
stack-based ``?`` queries; the post-6.43 ``/login`` with name and password.
Menus follow the RouterOS release given (6.x, 7.0-7.19, 7.20+), and their
argument names come from that release's real command dump
(tests/data/routeros/args.json, see the README there): an argument the release
does not have gets ``unknown parameter X``, like on a real router; other bad
input gets the kind of ``!trap`` RouterOS sends. ``defconf=True`` starts from a
home router's factory configuration (LAN/WAN lists and the defconf firewall).

Usage (also by the ``piimg status`` tests)::

    from tests.routeros_peer import RouterOSPeer

    with RouterOSPeer(version="7.20.1", users={"admin": "pw"}) as peer:
        host, port = peer.address              # or: host, port = peer.start()
        peer.add_bgp_session("10.0.2.10", remote_as=64500, prefixes=["10.0.4.0/32"])
        ...                                    # drive it with librouteros / piimg
        peer.state["/ip/pool"]                  # rows: dicts of strings, ".id" = "*N"
        peer.writes                             # successful add/set/remove/backup commands
        peer.commands                           # command words received after login
        peer.drop_after(3)                      # close the connection instead of answering
                                                # the 4th command from now (executed=True:
                                                # run it, then drop before the reply)

TLS: ``RouterOSPeer(tls=(certfile, keyfile))`` wraps every connection
(api-ssl); :func:`make_self_signed` creates a certificate with the openssl CLI.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

# --------------------------------------------------------------------------
# wire protocol


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return (n | 0x8000).to_bytes(2, "big")
    if n < 0x200000:
        return (n | 0xC00000).to_bytes(3, "big")
    if n < 0x10000000:
        return (n | 0xE0000000).to_bytes(4, "big")
    return b"\xf0" + n.to_bytes(4, "big")


def encode_sentence(words: list[str]) -> bytes:
    out = b""
    for word in words:
        data = word.encode("utf-8")
        out += encode_length(len(data)) + data
    return out + b"\x00"


class _Closed(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Closed()
        buf += chunk
    return buf


def read_word(sock: socket.socket) -> str:
    first = _recv_exact(sock, 1)[0]
    if first < 0x80:
        n = first
    elif first < 0xC0:
        n = ((first & 0x3F) << 8) | _recv_exact(sock, 1)[0]
    elif first < 0xE0:
        n = ((first & 0x1F) << 16) | int.from_bytes(_recv_exact(sock, 2), "big")
    elif first < 0xF0:
        n = ((first & 0x0F) << 24) | int.from_bytes(_recv_exact(sock, 3), "big")
    elif first == 0xF0:
        n = int.from_bytes(_recv_exact(sock, 4), "big")
    else:  # control bytes >= 0xF8 are reserved
        raise _Closed()
    return _recv_exact(sock, n).decode("utf-8", errors="replace") if n else ""


def read_sentence(sock: socket.socket) -> list[str]:
    words = []
    while True:
        word = read_word(sock)
        if word == "":
            if words:
                return words
            continue  # an empty sentence is ignored
        words.append(word)


# --------------------------------------------------------------------------
# menus


class Trap(Exception):
    def __init__(self, message: str, category: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


@dataclass
class MenuDef:
    fields: set[str]
    required: set[str] = field(default_factory=set)
    defaults: dict[str, str] = field(default_factory=dict)
    #: field that must be unique, and the failure RouterOS reports
    unique: tuple[str, str] | None = None
    #: field -> menu whose "name" (or interface name) it must reference
    refs: dict[str, str] = field(default_factory=dict)
    readonly: bool = False
    #: RouterOS's own value description per field (from the inspect dumps), e.g. "0..4294967295"
    descs: dict[str, str] = field(default_factory=dict)


#: Which arguments each release accepts: derived from real RouterOS command
#: dumps (tests/data/routeros/README.md names the source of every version).
ARGS_TABLE: Final = Path(__file__).parent / "data" / "routeros" / "args.json"

_BOOL_FIELDS = {"disabled", "vlan-filtering", "multihop", "passive", "connect", "listen", "authoritative", "auto-mac"}
#: RouterOS's MAC description: "AB[:|-|.]CD[:|-|.]EF[:|-|.]GH[:|-|.]IJ[:|-|.]KL (MAC address)"
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:.-][0-9A-Fa-f]{2}){5}$")
#: help.mikrotik.com "routing bgp" (7.22+): "multipath (integer [0..4294967295])"; the
#: dump gives it no description, so the documented range is added here.
_EXTRA_DESCS = {"/routing/bgp/instance": {"multipath": "0..4294967295"}}


@functools.cache
def _args_table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ARGS_TABLE.read_text())["versions"]
    return data


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def args_for(version: tuple[int, ...]) -> tuple[str, dict[str, dict[str, str]]]:
    """The dump for a release: the newest one in the table not newer than ``version``.

    6.x always gets the 6.49 data (the only 6.x source); a 7.x older than the
    oldest dump (7.9) gets the oldest one.
    """
    table = _args_table()
    if version[0] == 6:
        return "6.49", table["6.49"]["menus"]
    sevens = sorted((v for v in table if not v.startswith("6")), key=_version_key)
    chosen = sevens[0]
    for v in sevens:
        if _version_key(v) <= tuple(version):
            chosen = v
    return chosen, table[chosen]["menus"]


def _menus(version: tuple[int, ...]) -> dict[str, MenuDef]:
    """The menus of one release: argument names from the dumps, behaviour below."""
    v6 = version[0] == 6
    _, args = args_for(version)

    def menu(path: str, **kw: Any) -> MenuDef:
        descs = {**args[path], **_EXTRA_DESCS.get(path, {})}
        descs = {k: v for k, v in descs.items() if k in args[path]}
        return MenuDef(set(args[path]), descs=descs, **kw)

    menus: dict[str, MenuDef] = {
        "/interface": MenuDef(set(), readonly=True),
        "/interface/ethernet": MenuDef(set(), readonly=True),
        "/interface/bridge": menu(
            "/interface/bridge",
            defaults={"protocol-mode": "rstp", "disabled": "false", "vlan-filtering": "false", "mtu": "auto", "auto-mac": "true"},
            unique=("name", "failure: already have interface with such name"),
        ),
        "/interface/bridge/port": menu(
            "/interface/bridge/port",
            required={"bridge", "interface"},
            defaults={"disabled": "false", "pvid": "1", "hw": "true"},
            unique=("interface", "failure: device already added as bridge port"),
            refs={"bridge": "/interface/bridge", "interface": "/interface"},
        ),
        "/interface/list": menu(
            "/interface/list", required={"name"}, defaults={"include": "", "exclude": ""},
            unique=("name", "failure: list with such name already exists"),
        ),
        "/interface/list/member": menu(
            "/interface/list/member", required={"interface", "list"}, defaults={"disabled": "false", "dynamic": "false"},
            refs={"interface": "/interface", "list": "/interface/list"},
        ),
        "/ip/address": menu(
            "/ip/address",
            required={"address", "interface"},
            defaults={"disabled": "false", "dynamic": "false", "invalid": "false"},
            refs={"interface": "/interface"},
        ),
        "/ip/pool": menu(
            "/ip/pool",
            required={"ranges"},
            unique=("name", "failure: pool with such name exists"),
        ),
        "/ip/dhcp-server": menu(
            "/ip/dhcp-server",
            required={"interface"},
            # RouterOS adds a DHCP server disabled unless told otherwise.
            defaults={"disabled": "true", "lease-time": "10m" if v6 else "30m", "authoritative": "true", "address-pool": "static-only"},
            unique=("name", "failure: server with such name already exists"),
            refs={"interface": "/interface", "address-pool": "/ip/pool"},
        ),
        "/ip/dhcp-server/network": menu("/ip/dhcp-server/network", required={"address"}),
        "/ip/dhcp-server/lease": menu(
            "/ip/dhcp-server/lease",
            required={"address"},
            defaults={"disabled": "false", "dynamic": "false", "status": "waiting", "server": "all"},
            refs={"server": "/ip/dhcp-server"},
        ),
        "/ip/route": MenuDef({"dst-address", "gateway", "distance", "comment", "disabled", "routing-table"}),
        "/ip/firewall/filter": MenuDef(set(), readonly=True),
        "/file": MenuDef(set(), readonly=True),
        "/system/resource": MenuDef(set(), readonly=True),
        "/system/identity": MenuDef(set(), readonly=True),
    }
    if v6:
        menus["/routing/bgp/instance"] = menu(
            "/routing/bgp/instance",
            required={"name", "as"},
            defaults={"router-id": "0.0.0.0", "disabled": "false", "redistribute-connected": "false",
                      "redistribute-static": "false", "client-to-client-reflection": "true"},
            unique=("name", "failure: instance with such name already exists"),
        )
        menus["/routing/bgp/peer"] = menu(
            "/routing/bgp/peer",
            required={"remote-address", "remote-as"},
            defaults={"instance": "default", "ttl": "default", "address-families": "ip", "multihop": "false",
                      "tcp-md5-key": "", "hold-time": "3m", "disabled": "false", "passive": "false", "state": "idle",
                      "established": "false"},
            unique=("name", "failure: peer with such name already exists"),
            refs={"instance": "/routing/bgp/instance"},
        )
        return menus
    afi = "afi" if "afi" in args["/routing/bgp/connection"] else "address-families"
    conn = menu(
        "/routing/bgp/connection",
        required={"local.role", "as"},
        defaults={"connect": "true", "listen": "true", "templates": "default", "multihop": "false", "disabled": "false",
                  afi: "ip", "inactive": "false"},
        unique=("name", "failure: connection with such name already exists"),
    )
    if "/routing/bgp/instance" in args:
        # 7.20: a connection must name its instance (ansible community.routeros
        # PR #404); as/router-id come from it.
        conn.required = {"local.role", "instance"}
        conn.refs["instance"] = "/routing/bgp/instance"
        menus["/routing/bgp/instance"] = menu(
            "/routing/bgp/instance",
            required={"as"},
            defaults={"vrf": "main", "disabled": "false", "ignore-as-path-len": "false", "inactive": "false"},
            unique=("name", "failure: instance with such name already exists"),
        )
    menus["/routing/bgp/connection"] = conn
    menus["/routing/bgp/template"] = menu(
        "/routing/bgp/template", unique=("name", "failure: template with such name already exists"))
    menus["/routing/bgp/session"] = MenuDef(set(), readonly=True)
    return menus


# --------------------------------------------------------------------------
# queries (MikroTik API manual, "Queries": a stack of booleans)


def _norm(value: str) -> str:
    return {"yes": "true", "no": "false"}.get(value, value)


def _matches(row: dict[str, str], queries: list[str]) -> bool:
    stack: list[bool] = []
    for q in queries:
        body = q[1:]
        if body.startswith("#"):
            for op in body[1:]:
                if op == "!":
                    stack.append(not stack.pop())
                elif op in "|&":
                    b, a = stack.pop(), stack.pop()
                    stack.append(a or b if op == "|" else a and b)
                elif op.isdigit():
                    stack.append(stack[int(op)])
                elif op == ".":
                    stack.append(stack[-1])
            continue
        if body.startswith("-"):
            stack.append(body[1:] not in row)
            continue
        if body.startswith(("<", ">")):
            name, _, value = body[1:].partition("=")
            have = row.get(name)
            try:
                ok = have is not None and (int(have) < int(value) if body[0] == "<" else int(have) > int(value))
            except ValueError:
                ok = have is not None and (have < value if body[0] == "<" else have > value)
            stack.append(ok)
            continue
        if body.startswith("="):
            body = body[1:]
        name, eq, value = body.partition("=")
        if not eq:
            stack.append(name in row)
        else:
            stack.append(_norm(row.get(name, "")) == _norm(value) if name in row else value == "")
    return all(stack)


# --------------------------------------------------------------------------
# the peer


def _version_text(version: str) -> str:
    if "(" in version:
        return version
    return f"{version} (long-term)" if version.startswith("6") else f"{version} (stable)"


class RouterOSPeer:
    """A fake MikroTik speaking the RouterOS API on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        version: str = "7.20.1",
        *,
        users: dict[str, str] | None = None,
        tls: tuple[str | Path, str | Path] | None = None,
        ports: int = 10,
        identity: str = "MikroTik",
        defconf: bool = False,
    ) -> None:
        self.version_text = _version_text(version)
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", self.version_text)
        assert m, version
        self.version = (int(m.group(1)), int(m.group(2)))
        full = (*self.version, int(m.group(3) or 0))
        #: which command dump (tests/data/routeros/args.json) this peer plays
        self.dump_version, _ = args_for(full)
        self.users = dict(users if users is not None else {"admin": "secret"})
        self.tls = tls
        self.identity = identity
        self.menus = _menus(full)
        self.state: dict[str, list[dict[str, str]]] = {path: [] for path in self.menus}
        self.writes = 0
        self.commands: list[str] = []
        self.logins = 0
        self._next_id = 1
        self._drop_at: int | None = None
        self._drop_executed = False
        self._traps: dict[str, str] = {}
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        for i in range(1, ports + 1):
            self._insert("/interface/ethernet", {"name": f"ether{i}", "default-name": f"ether{i}", "mtu": "1500",
                                                 "running": "true", "disabled": "false"})
        if self.version[0] == 6:
            self._insert("/routing/bgp/instance", {"name": "default", "as": "65530", "router-id": "0.0.0.0",
                                                   "default": "true", "disabled": "false",
                                                   "client-to-client-reflection": "true"})
        else:
            self._insert("/routing/bgp/template", {"name": "default", "as": "65530", "default": "true"})
        # the built-in interface lists (help.mikrotik.com "Interface Lists": all, none, dynamic, static)
        for name in ("all", "none", "dynamic", "static"):
            self._insert("/interface/list", {"name": name, "builtin": "true", "include": "", "exclude": ""})
        if defconf:
            self._defconf()

    def _defconf(self) -> None:
        """The factory configuration of a home router (RouterOS "defconf").

        As exported from a RouterOS 6.48.3 router with its default configuration
        (kaihendry/mikrotik-configs@3001d1a150d48e925d0a0b152842e150682e3b59:default.cfg.rsc):
        bridge "bridge" with ether2-ether5, lists WAN (ether1) and LAN (bridge),
        192.168.88.1/24 on the bridge, and the defconf firewall whose input
        chain ends in "drop all not coming from LAN".
        """
        mark = "defconf"
        self._insert("/interface/bridge", {**self.menus["/interface/bridge"].defaults, "name": "bridge", "comment": mark})
        for i in range(2, 6):
            self._insert("/interface/bridge/port", {**self.menus["/interface/bridge/port"].defaults, "bridge": "bridge",
                                                    "interface": f"ether{i}", "comment": mark})
        for name in ("WAN", "LAN"):
            self._insert("/interface/list", {"name": name, "comment": mark, "include": "", "exclude": ""})
        for iface, lst in (("bridge", "LAN"), ("ether1", "WAN")):
            self._insert("/interface/list/member", {"interface": iface, "list": lst, "comment": mark,
                                                    "disabled": "false", "dynamic": "false"})
        self._insert("/ip/address", {"address": "192.168.88.1/24", "interface": "bridge", "network": "192.168.88.0",
                                     "comment": mark, "disabled": "false", "dynamic": "false", "invalid": "false"})
        rules = [
            {"chain": "input", "action": "accept", "connection-state": "established,related,untracked",
             "comment": "defconf: accept established,related,untracked"},
            {"chain": "input", "action": "drop", "connection-state": "invalid", "comment": "defconf: drop invalid"},
            {"chain": "input", "action": "accept", "protocol": "icmp", "comment": "defconf: accept ICMP"},
            {"chain": "input", "action": "accept", "dst-address": "127.0.0.1",
             "comment": "defconf: accept to local loopback (for CAPsMAN)"},
            {"chain": "input", "action": "drop", "in-interface-list": "!LAN",
             "comment": "defconf: drop all not coming from LAN"},
            {"chain": "forward", "action": "accept", "ipsec-policy": "in,ipsec", "comment": "defconf: accept in ipsec policy"},
            {"chain": "forward", "action": "drop", "connection-nat-state": "!dstnat", "connection-state": "new",
             "in-interface-list": "WAN", "comment": "defconf: drop all from WAN not DSTNATed"},
        ]
        for rule in rules:
            self._insert("/ip/firewall/filter", {**rule, "disabled": "false", "invalid": "false", "dynamic": "false"})

    # -- helpers for tests ------------------------------------------------

    def _insert(self, path: str, row: dict[str, str]) -> dict[str, str]:
        row = {".id": f"*{self._next_id:X}", **row}
        self._next_id += 1
        self.state[path].append(row)
        return row

    def add_row(self, path: str, **fields: str) -> dict[str, str]:
        """Put an item on the router as if the user had made it (does not count as a write)."""
        with self._lock:
            defaults = self.menus[path].defaults
            return self._insert(path, {**defaults, **{k.replace("_", "-"): v for k, v in fields.items()}})

    def rows(self, path: str, **match: str) -> list[dict[str, str]]:
        with self._lock:
            return [dict(r) for r in self.state[path] if all(r.get(k.replace("_", "-")) == v for k, v in match.items())]

    def add_bgp_session(
        self, remote_address: str, *, remote_as: int = 64500, prefixes: list[str] | tuple[str, ...] = (),
        established: bool = True, interface: str = "bridge2",
    ) -> None:
        """Make a BGP neighbour look up (``established``) and its prefixes appear as routes.

        RouterOS 6: the peer row (matched by remote-address, added if missing) gets state/established/prefix-count
        and ``/ip/route`` rows with ``bgp=true``; RouterOS 7: a ``/routing/bgp/session`` row
        and ``/ip/route`` rows with ``bgp=true`` and ``belongs-to=bgp-IP-<addr>``.
        """
        with self._lock:
            if self.version[0] == 6:
                if not any(r.get("remote-address") == remote_address for r in self.state["/routing/bgp/peer"]):
                    self._insert("/routing/bgp/peer", {**self.menus["/routing/bgp/peer"].defaults,
                                                       "name": f"peer-{remote_address}", "remote-address": remote_address,
                                                       "remote-as": str(remote_as)})
                for row in self.state["/routing/bgp/peer"]:
                    if row.get("remote-address") == remote_address:
                        row.update({"state": "established" if established else "active",
                                    "established": "true" if established else "false",
                                    "prefix-count": str(len(prefixes)) if established else "0",
                                    "uptime": "5m12s" if established else "0s", "remote-id": remote_address})
            else:
                name = next((r.get("name", "peer") for r in self.state["/routing/bgp/connection"]
                             if r.get("remote.address", "").split("/")[0] == remote_address), "peer")
                self._insert("/routing/bgp/session", {
                    "name": f"{name}-1", "remote.address": remote_address, "remote.as": str(remote_as),
                    "remote.id": remote_address, "local.role": "ebgp",
                    "established": "true" if established else "false",
                    "uptime": "5m12s" if established else "0s", "prefix-count": str(len(prefixes)),
                })
            if established:
                for prefix in prefixes:
                    dst = prefix if "/" in prefix else f"{prefix}/32"
                    route = {"dst-address": dst, "gateway": remote_address, "distance": "20", "bgp": "true",
                             "active": "true", "dynamic": "true", "routing-table": "main"}
                    if self.version[0] == 6:
                        route["received-from"] = remote_address
                    else:
                        route["immediate-gw"] = f"{remote_address}%{interface}"
                        route["belongs-to"] = f"bgp-IP-{remote_address}"
                    self._insert("/ip/route", route)

    def input_accepts(self, interface: str, *, new: bool = True) -> bool:
        """Whether the input chain lets a packet from ``interface`` reach the router itself.

        Walks ``/ip/firewall/filter`` the way RouterOS does (first matching
        rule decides; no rule matched: accept), matching only what the defconf
        rules use: connection-state (``new``: a fresh connection or a DHCP
        request; else established), protocol icmp/dst-address (never match
        here) and in-interface(-list) with ``!``.
        """
        with self._lock:
            members = {(r.get("interface"), r.get("list")) for r in self.state["/interface/list/member"]
                       if r.get("disabled") != "true"}
            for rule in self.state["/ip/firewall/filter"]:
                if rule.get("chain") != "input" or rule.get("disabled") == "true":
                    continue
                if "connection-state" in rule:
                    states = rule["connection-state"].split(",")
                    if ("new" if new else "established") not in states:
                        continue
                if "protocol" in rule or "dst-address" in rule:
                    continue  # the probe is neither ICMP nor to 127.0.0.1
                lst = rule.get("in-interface-list")
                if lst is not None:
                    inside = (interface, lst.lstrip("!")) in members or lst.lstrip("!") == "all"
                    if inside == lst.startswith("!"):
                        continue
                iface = rule.get("in-interface")
                if iface is not None and (interface == iface.lstrip("!")) == iface.startswith("!"):
                    continue
                return rule.get("action") == "accept"
            return True

    def trap_on(self, command: str, message: str) -> None:
        """Answer the next ``command`` (e.g. ``/ip/address/add``) with a ``!trap`` of ``message``."""
        with self._lock:
            self._traps[command] = message

    def drop_after(self, n: int, *, executed: bool = False) -> None:
        """Close the connection instead of answering the (n+1)-th command from now.

        ``executed=False``: the command is not run (lost on the way);
        ``executed=True``: it is run, and the reply is lost.
        """
        with self._lock:
            self._drop_at = len(self.commands) + n + 1
            self._drop_executed = executed

    # -- server -------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self.address = ("127.0.0.1", sock.getsockname()[1])
        thread = threading.Thread(target=self._accept_loop, name="routeros-peer", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self.address

    def stop(self) -> None:
        self._stopping = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            with contextlib.suppress(OSError):
                self._sock.close()
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                client.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> RouterOSPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        conn = client
        try:
            if self.tls is not None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
                conn = ctx.wrap_socket(client, server_side=True)
            self._clients.append(conn)
            logged_in = False
            while True:
                words = read_sentence(conn)
                command = words[0]
                if not logged_in:
                    if command == "/login":
                        logged_in = self._login(conn, words)
                        continue
                    conn.sendall(encode_sentence(["!fatal", "not logged in"]))
                    return
                with self._lock:
                    self.commands.append(command)
                    drop = self._drop_at is not None and len(self.commands) >= self._drop_at
                    if drop:
                        self._drop_at = None
                        if self._drop_executed:
                            self._execute(words)
                        return
                    replies = self._execute(words)
                if command == "/quit":
                    conn.sendall(encode_sentence(["!fatal", "session terminated on request"]))
                    return
                conn.sendall(b"".join(encode_sentence(r) for r in replies))
        except (_Closed, OSError, ssl.SSLError):
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with contextlib.suppress(ValueError):
                self._clients.remove(conn)

    def _login(self, conn: socket.socket, words: list[str]) -> bool:
        attrs = dict(w[1:].split("=", 1) for w in words[1:] if w.startswith("=") and "=" in w[1:])
        tag = next((w.split("=", 1)[1] for w in words[1:] if w.startswith(".tag=")), None)
        suffix = [f"=.tag={tag}"] if tag else []
        if "name" in attrs and self.users.get(attrs["name"]) == attrs.get("password") and "password" in attrs:
            self.logins += 1
            conn.sendall(encode_sentence(["!done", *suffix]))
            return True
        conn.sendall(encode_sentence(["!trap", "=message=invalid user name or password (6)", *suffix])
                     + encode_sentence(["!done", *suffix]))
        return False

    # -- commands -------------------------------------------------------------

    def _execute(self, words: list[str]) -> list[list[str]]:
        command = words[0]
        attrs: dict[str, str] = {}
        queries: list[str] = []
        tag = None
        for word in words[1:]:
            if word.startswith("="):
                name, _, value = word[1:].partition("=")
                attrs[name] = value
            elif word.startswith("?"):
                queries.append(word)
            elif word.startswith(".tag="):
                tag = word.split("=", 1)[1]
        suffix = [f"=.tag={tag}"] if tag else []
        try:
            rows, ret = self._dispatch(command, attrs, queries)
        except Trap as trap:
            trap_words = ["!trap"]
            if trap.category is not None:
                trap_words.append(f"=category={trap.category}")
            trap_words.append(f"=message={trap.message}")
            return [trap_words + suffix, ["!done", *suffix]]
        replies = [["!re", *(f"={k}={v}" for k, v in row.items()), *suffix] for row in rows]
        if rows is not None and not rows and command.endswith(("/print", "/getall")) and self.version >= (7, 18):
            replies.append(["!empty", *suffix])
        done = ["!done"]
        if ret is not None:
            done.append(f"=ret={ret}")
        return [*replies, done + suffix]

    def _dispatch(self, command: str, attrs: dict[str, str], queries: list[str]) -> tuple[list[dict[str, str]], str | None]:
        if command in self._traps:
            raise Trap(self._traps.pop(command), 1)
        if command in ("/cancel", "/quit"):
            return [], None
        if command == "/system/resource/print":
            return [self._resource()], None
        if command == "/system/identity/print":
            return [{"name": self.identity}], None
        if command == "/system/backup/save":
            return self._backup(attrs), None
        menu_path, _, verb = command.rpartition("/")
        menu = self.menus.get(menu_path)
        if menu is None or not menu_path:
            raise Trap("no such command prefix", 0)
        if verb in ("print", "getall"):
            return self._print(menu_path, attrs, queries), None
        if menu.readonly or verb not in ("add", "set", "remove", "enable", "disable"):
            raise Trap("no such command", 0)
        if verb == "add":
            ret = self._add(menu_path, menu, attrs)
            self.writes += 1
            return [], ret
        if verb in ("enable", "disable"):
            attrs = {".id": attrs.get(".id", ""), "disabled": "false" if verb == "enable" else "true"}
            verb = "set"
        if verb == "set":
            self._set(menu_path, menu, attrs)
        else:
            self._remove(menu_path, attrs)
        self.writes += 1
        return [], None

    def _resource(self) -> dict[str, str]:
        return {"uptime": "1w2d3h", "version": self.version_text, "build-time": "2025-10-01 12:00:00",
                "free-memory": "104857600", "total-memory": "268435456", "cpu": "ARMv7", "cpu-count": "4",
                "cpu-load": "3", "architecture-name": "arm", "board-name": "RB5009UG+S+" if self.version[0] == 7 else "RB3011UiAS",
                "platform": "MikroTik"}

    def _backup(self, attrs: dict[str, str]) -> list[dict[str, str]]:
        name = attrs.get("name") or f"{self.identity}-backup"
        if "password" not in attrs and _norm(attrs.get("dont-encrypt", "no")) != "true" and self.version[0] == 6:
            raise Trap("failure: password or dont-encrypt required", 1)
        self._insert("/file", {"name": f"{name}.backup", "type": "backup", "size": "34.5KiB",
                               "creation-time": "2026-11-27 03:00:00"})
        self.writes += 1
        return []

    def _print(self, path: str, attrs: dict[str, str], queries: list[str]) -> list[dict[str, str]]:
        rows = self.state[path]
        if path == "/interface":
            rows = [{".id": r[".id"], "name": r["name"], "type": "ether", "running": "true", "disabled": "false"}
                    for r in self.state["/interface/ethernet"]]
            rows += [{".id": r[".id"], "name": r["name"], "type": "bridge", "running": "true",
                      "disabled": r.get("disabled", "false")} for r in self.state["/interface/bridge"]]
        out = [r for r in rows if _matches(r, queries)]
        proplist = attrs.get(".proplist")
        if proplist:
            names = proplist.split(",")
            out = [{k: r[k] for k in names if k in r} for r in out]
        return [dict(r) for r in out]

    def _interfaces(self) -> set[str]:
        return {r["name"] for r in self.state["/interface/ethernet"]} | {r["name"] for r in self.state["/interface/bridge"]}

    def _check(self, path: str, menu: MenuDef, values: dict[str, str], current: dict[str, str] | None) -> dict[str, str]:
        clean = {}
        for name, value in values.items():
            if name == ".id":
                continue
            if name not in menu.fields:
                raise Trap(f"unknown parameter {name}", 1)
            if name in _BOOL_FIELDS:
                if value not in ("yes", "no", "true", "false"):
                    raise Trap(f"invalid value for argument {name}", 1)
                value = _norm(value)
            clean[name] = value
        merged = {**(current or {}), **clean}
        for name, target in menu.refs.items():
            if name not in clean:
                continue
            value = clean[name]
            known = self._interfaces() if target == "/interface" else {r.get("name", "") for r in self.state[target]}
            if value not in known and not (name == "address-pool" and value == "static-only") and not (name == "server" and value == "all"):
                raise Trap(f"input does not match any value of {name}", 1)
        if path == "/ip/address" and "address" in clean:
            try:
                iface = ipaddress.ip_interface(clean["address"])
            except ValueError:
                raise Trap("invalid value for argument address", 1) from None
            merged["network"] = str(iface.network.network_address)
            clean["network"] = merged["network"]
            for row in self.state[path]:
                if row is not current and row.get("address") == str(iface) and row.get("interface") == merged.get("interface"):
                    raise Trap("failure: already have such address", 4)
        if path == "/ip/pool" and "ranges" in clean:
            for part in clean["ranges"].split(","):
                ends = part.split("-")
                try:
                    for end in ends:
                        ipaddress.ip_address(end.strip()) if "/" not in end else ipaddress.ip_network(end.strip())
                except ValueError:
                    raise Trap("invalid value for argument ranges", 1) from None
        if path == "/ip/dhcp-server/lease" and "mac-address" in clean:
            if not _MAC_RE.match(clean["mac-address"]):
                raise Trap("invalid value for argument mac-address", 1)
            # printed upper-case with colons, whichever separator was sent
            clean["mac-address"] = re.sub(r"[.-]", ":", clean["mac-address"]).upper()
        for name, value in clean.items():
            desc = menu.descs.get(name, "")
            bounds = re.fullmatch(r"(\d+)\.\.(\d+)", desc)
            if bounds and not (value.isdigit() and int(bounds.group(1)) <= int(value) <= int(bounds.group(2))):
                raise Trap(f"invalid value for argument {name}", 1)
            longest = re.fullmatch(r"string value, max length (\d+)", desc)
            if longest and len(value) > int(longest.group(1)):
                raise Trap(f"invalid value for argument {name}: string too long", 1)
        for name in ("address", "gateway", "remote-address", "remote.address", "router-id"):
            if name in clean and path != "/ip/address":
                try:
                    (ipaddress.ip_network if "/" in clean[name] else ipaddress.ip_address)(clean[name])
                except ValueError:
                    raise Trap(f"invalid value for argument {name}", 1) from None
        for name in ("as", "remote-as", "remote.as"):  # 6.x data has no descriptions
            if name in clean and not clean[name].isdigit():
                raise Trap(f"invalid value for argument {name}", 1)
        if "local.role" in clean and clean["local.role"] not in ("ebgp", "ibgp", "ebgp-peer", "ibgp-rr", "ibgp-rr-client"):
            raise Trap("invalid value for argument local.role", 1)
        if menu.unique is not None:
            ufield, message = menu.unique
            if ufield in clean:
                for row in self.state[path]:
                    if row is not current and row.get(ufield) == clean[ufield]:
                        raise Trap(message, 4)
        return clean

    def _add(self, path: str, menu: MenuDef, attrs: dict[str, str]) -> str:
        clean = self._check(path, menu, attrs, None)
        for name in sorted(menu.required):
            if name not in clean:
                raise Trap(f"failure: {name} not specified", 1) if name != "instance" else Trap("failure: instance not set", 1)
        row = {**menu.defaults, **clean}
        if "name" in menu.fields and "name" not in row:
            prefix = path.rsplit("/", 1)[1].replace("-", "")
            row["name"] = f"{prefix}{len(self.state[path]) + 1}"
        return self._insert(path, row)[".id"]

    def _find(self, path: str, ident: str) -> dict[str, str]:
        for row in self.state[path]:
            if row[".id"] == ident or (not ident.startswith("*") and row.get("name") == ident):
                return row
        raise Trap("no such item", 0)

    def _set(self, path: str, menu: MenuDef, attrs: dict[str, str]) -> None:
        if ".id" not in attrs:
            raise Trap("no such item", 0)
        targets = [self._find(path, i) for i in attrs[".id"].split(",")]
        for row in targets:
            clean = self._check(path, menu, attrs, row)
            row.update(clean)

    def _remove(self, path: str, attrs: dict[str, str]) -> None:
        if ".id" not in attrs:
            raise Trap("no such item", 0)
        targets = [self._find(path, i) for i in attrs[".id"].split(",")]
        for row in targets:
            self.state[path].remove(row)


# --------------------------------------------------------------------------
# TLS certificates for api-ssl tests


def make_self_signed(directory: Path, *, cn: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (and key) for 127.0.0.1, made with the openssl CLI."""
    cert, key = directory / "router.crt", directory / "router.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def running_peer(**kwargs: Any) -> Iterator[RouterOSPeer]:
    peer = RouterOSPeer(**kwargs)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
