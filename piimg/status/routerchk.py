"""Router-side checks: BGP sessions with every node, BGP routes for every LB IP.

RouterOS 6 shows sessions as ``/routing bgp peer`` entries with
``state=established``; RouterOS 7 has a separate ``/routing/bgp/session``
menu whose entries carry ``remote.address`` and the ``established`` flag.
Routes learned over BGP carry the ``bgp`` flag (``b`` in ``/ip route print``)
in both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from piimg.spec.model import Spec
from piimg.status.model import Check, State

Rows = list[dict[str, Any]]
#: reads one menu (e.g. "/routing/bgp/session") as a list of property dicts
MenuReader = Callable[[str], Rows]


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "yes")


def _addr(value: object) -> str:
    text = str(value or "")
    return text.split("/")[0].split("%")[0]


def major_version(resource_version: str) -> int:
    """``"7.20.1 (stable)"`` -> 7."""
    try:
        return int(resource_version.split(".")[0])
    except ValueError:
        return 7


def sessions(read: MenuReader, major: int) -> dict[str, str]:
    """Map of node address -> session state ('established' or why not)."""
    out: dict[str, str] = {}
    if major >= 7:
        for row in read("/routing/bgp/session"):
            addr = _addr(row.get("remote.address"))
            out[addr] = "established" if _truthy(row.get("established")) else str(row.get("state") or "not established")
    else:
        for row in read("/routing/bgp/peer"):
            addr = _addr(row.get("remote-address"))
            out[addr] = str(row.get("state") or "idle")
    return out


def bgp_routes(read: MenuReader) -> list[tuple[str, list[str]]]:
    routes = []
    for row in read("/ip/route"):
        if not _truthy(row.get("bgp")):
            continue
        gateways = [_addr(g) for g in str(row.get("gateway") or "").split(",") if g]
        routes.append((str(row.get("dst-address") or ""), gateways))
    return routes


def check_router(spec: Spec, read: MenuReader, version: str, lb_ips: Iterable[str]) -> list[Check]:
    major = major_version(version)
    checks = []
    state = sessions(read, major)
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
        checks.append(Check("router bgp", State.OK, f"RouterOS {version}: {len(spec.nodes)} session(s) established"))

    node_addrs = {str(n.address) for n in spec.nodes}
    routes = bgp_routes(read)
    missing, good = [], []
    lb_ips = list(lb_ips)
    for ip in lb_ips:
        addr = ipaddress.IPv4Address(ip)
        via = [
            gws for dst, gws in routes
            if dst and addr in ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
            and any(g in node_addrs for g in gws)
        ]
        if via:
            good.append(f"{ip} via {', '.join(sorted({g for gws in via for g in gws if g in node_addrs}))}")
        else:
            missing.append(ip)
    if not lb_ips:
        checks.append(Check("router routes", State.SKIPPED, "no LoadBalancer IP to look for"))
    elif missing:
        checks.append(Check("router routes", State.FAIL, f"no BGP route with a node as gateway for {', '.join(missing)}"))
    else:
        checks.append(Check("router routes", State.OK, "; ".join(good)))
    return checks
