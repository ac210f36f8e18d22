"""Router-side checks: BGP sessions with every node, BGP routes for every LB IP.

Pure functions of the menus read from the router (a :data:`MenuReader`) and
its :class:`~piimg.router.dialects.Dialect`, which ``router-setup`` uses
too: RouterOS 6 shows a session's state on the ``/routing bgp peer`` entry
itself (``state=established``); RouterOS 7 has a separate
``/routing/bgp/session`` menu whose entries carry ``remote.address`` and the
``established`` flag. Routes learned over BGP carry the ``bgp`` flag (``b``
in ``/ip route print``) in both; only the ones with the ``active`` flag
(``A``: installed and used for forwarding) count. ``/ip route print`` also
lists BGP routes that lost best-path selection, were filtered or whose gateway
does not resolve, without ``A`` (help.mikrotik.com "IP Routing": "Flags: D -
dynamic; X - disabled, I - inactive, A - active; ... b - bgp").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from piimg.router.dialects import BgpStyle, Dialect
from piimg.router.model import bgp_peer_menu
from piimg.spec.model import Spec
from piimg.status.model import Check, State

Rows = list[dict[str, Any]]
#: reads one menu (e.g. "/routing/bgp/session") as a list of property dicts
MenuReader = Callable[[str], Rows]
#: opens the router and returns (menu reader, dialect); raises PiimgError
RouterOpener = Callable[[], tuple[MenuReader, Dialect]]

#: RouterOS 7's read-only view of the BGP sessions (help.mikrotik.com "BGP", "Session")
V7_SESSION_MENU = "/routing/bgp/session"


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "yes")


def _addr(value: object) -> str:
    text = str(value or "")
    return text.split("/")[0].split("%")[0]


def session_menu(dialect: Dialect) -> str:
    """Where the router shows its BGP sessions' state."""
    return bgp_peer_menu(dialect).path if dialect.bgp is BgpStyle.V6 else V7_SESSION_MENU


def sessions(read: MenuReader, dialect: Dialect) -> dict[str, str]:
    """Map of node address -> session state ('established' or why not)."""
    out: dict[str, str] = {}
    field = dialect.remote_address_field
    for row in read(session_menu(dialect)):
        addr = _addr(row.get(field))
        if dialect.bgp is BgpStyle.V6:
            out[addr] = str(row.get("state") or "idle")
        else:
            out[addr] = "established" if _truthy(row.get("established")) else str(row.get("state") or "not established")
    return out


def bgp_routes(read: MenuReader, *, active: bool = True) -> list[tuple[str, list[str]]]:
    """BGP routes as (dst-address, gateways); with ``active`` only the installed ones."""
    routes = []
    for row in read("/ip/route"):
        if not _truthy(row.get("bgp")):
            continue
        if active and (not _truthy(row.get("active")) or _truthy(row.get("inactive"))):
            continue
        gateways = [_addr(g) for g in str(row.get("gateway") or "").split(",") if g]
        routes.append((str(row.get("dst-address") or ""), gateways))
    return routes


def _covers(dst: str, addr: ipaddress.IPv4Address) -> bool:
    return bool(dst) and addr in ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)


def check_router(spec: Spec, read: MenuReader, dialect: Dialect, lb_ips: Iterable[str]) -> list[Check]:
    checks = []
    state = sessions(read, dialect)
    problems = []
    for node in spec.nodes:
        st = state.get(str(node.address))
        if st is None:
            problems.append(f"{node.hostname} ({node.address}): no BGP peer/session")
        elif st != "established":
            problems.append(f"{node.hostname} ({node.address}): {st}")
    if problems:
        checks.append(Check("router bgp", State.FAIL, "; ".join(problems)))
    else:
        checks.append(Check("router bgp", State.OK, f"RouterOS {dialect.text}: {len(spec.nodes)} session(s) established"))

    node_addrs = {str(n.address) for n in spec.nodes}
    routes = bgp_routes(read)
    received = bgp_routes(read, active=False)
    missing, good, inactive = [], [], []
    lb_ips = list(lb_ips)
    for ip in lb_ips:
        addr = ipaddress.IPv4Address(ip)
        via = [gws for dst, gws in routes if _covers(dst, addr) and any(g in node_addrs for g in gws)]
        if via:
            good.append(f"{ip} via {', '.join(sorted({g for gws in via for g in gws if g in node_addrs}))}")
        elif any(_covers(dst, addr) and any(g in node_addrs for g in gws) for dst, gws in received):
            inactive.append(ip)
        else:
            missing.append(ip)
    if not lb_ips:
        checks.append(Check("router routes", State.SKIPPED, "no LoadBalancer IP to look for"))
    elif missing or inactive:
        why = []
        if missing:
            why.append(f"no BGP route with a node as gateway for {', '.join(missing)}")
        if inactive:
            why.append(f"BGP route(s) for {', '.join(inactive)} received but not active (not installed: "
                       "filtered, not the best path, or the gateway does not resolve)")
        checks.append(Check("router routes", State.FAIL, "; ".join(why)))
    else:
        checks.append(Check("router routes", State.OK, "; ".join(good)))
    return checks
