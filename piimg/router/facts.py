"""What piimg reads from the router besides the items it manages (pure helpers).

* ``/interface``: the ports that exist, so a port in ``router.ports`` the
  router does not have is a plan conflict before anything is written (a
  bridge port add with an unknown interface traps "input does not match any
  value of interface" mid-apply: restraml's inspect dumps give
  ``interface/bridge/port/add interface`` as a reference to an existing interface).
* ``/interface/list``: whether the factory ``LAN`` list exists.
* ``/ip/firewall/filter``: input-chain rules that drop what comes from
  interfaces outside a list (the factory "defconf: drop all not coming from
  LAN" rule), so the plan can say what the lab bridge would lose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

INTERFACES: Final = "/interface"
LISTS: Final = "/interface/list"
LIST_MEMBERS: Final = "/interface/list/member"
FILTER: Final = "/ip/firewall/filter"
#: read-only menus read with every plan
FACT_PATHS: Final = (INTERFACES, LISTS, FILTER)

#: /interface types that are ports one can plug a Pi into (SFP cages are "ether" too)
_PORT_TYPES: Final = frozenset({"ether", "wlan", "wifi", "wifiwave2", "vlan", "bond", "veth"})

Rows = Mapping[str, Iterable[Mapping[str, str]]]


def _rows(current: Rows, path: str) -> list[Mapping[str, str]]:
    return list(current.get(path, ()))


def interface_names(current: Rows) -> set[str] | None:
    """Every interface name, or None when /interface was not read (offline planning)."""
    if INTERFACES not in current:
        return None
    return {str(r.get("name", "")) for r in _rows(current, INTERFACES)} - {""}


def port_names(current: Rows) -> list[str]:
    """The router's ports, in its order (ether1, ether2, ..., sfp1), for messages."""
    return [str(r["name"]) for r in _rows(current, INTERFACES) if r.get("name") and r.get("type", "ether") in _PORT_TYPES]


def has_list(current: Rows, name: str) -> bool:
    return any(r.get("name") == name for r in _rows(current, LISTS))


def _active(row: Mapping[str, str]) -> bool:
    return str(row.get("disabled", "no")).lower() not in ("yes", "true") and str(row.get("invalid", "no")).lower() not in ("yes", "true")


def input_drops(current: Rows) -> list[tuple[str, str, Mapping[str, str]]]:
    """Active input-chain drop/reject rules keyed on *not* an interface or list.

    Returns ``(kind, name, rule)`` with kind ``list`` (``in-interface-list=!NAME``)
    or ``interface`` (``in-interface=!NAME``).
    """
    out = []
    for rule in _rows(current, FILTER):
        if rule.get("chain") != "input" or rule.get("action") not in ("drop", "reject") or not _active(rule):
            continue
        for field, kind in (("in-interface-list", "list"), ("in-interface", "interface")):
            value = str(rule.get(field, ""))
            if value.startswith("!"):
                out.append((kind, value[1:], rule))
    return out


def describe_rule(rule: Mapping[str, str]) -> str:
    comment = rule.get("comment")
    return f'"{comment}"' if comment else f"{rule.get('.id', '?')}"
