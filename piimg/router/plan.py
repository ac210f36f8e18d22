"""Desired state + the router's current items -> a plan of operations (pure).

The planner never talks to a router: it gets the rows of every managed menu
(as the API prints them) and returns what to add, set and remove, what it
refuses to touch (conflicts with unmanaged items) and what the user should
know. An empty plan is an explicit "no changes".
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from piimg.router import facts
from piimg.router.dialects import REMOTE_ADDRESS_FIELDS, BgpStyle, Dialect
from piimg.router.model import (
    BGP_CONNECTION,
    BGP_INSTANCE,
    BRIDGE_PORT,
    IP_ADDRESS,
    LAN_LIST,
    SECRET_FIELDS,
    Desired,
    Menu,
    is_owned,
    lan_member,
    marker,
    menus_for,
)

#: rows as the API returns them, per menu path ("/ip/pool": [{".id": "*1", ...}])
Current = Mapping[str, Iterable[Mapping[str, object]]]
Row = dict[str, str]

MASK: Final = "********"

Action = Literal["add", "set", "remove"]


def normalize_value(value: object) -> str:
    """API values (librouteros turns yes/true into True, digits into int) back to text."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def normalize_row(row: Mapping[str, object]) -> Row:
    return {k: normalize_value(v) for k, v in row.items()}


def _canon(field_name: str, value: str) -> str:
    low = value.strip().lower()
    if low in ("yes", "true"):
        return "yes"
    if low in ("no", "false"):
        return "no"
    if field_name in REMOTE_ADDRESS_FIELDS and low.endswith("/32"):
        return low[:-3]
    if field_name in ("dns-server", "ranges"):
        return ",".join(p.strip() for p in low.split(","))
    if field_name == "mac-address":
        return low.replace("-", ":")
    return value.strip()


def same_value(field_name: str, want: str, have: str | None) -> bool:
    if field_name in SECRET_FIELDS and (have is None or (have != "" and set(have) == {"*"})):
        # RouterOS hides sensitive values from accounts without the "sensitive"
        # policy (the field is left out, or printed as stars, e.g. napalm-ros's
        # v6 mock _routing_bgp_peer_print.json has "tcp-md5-key": "*****"); an
        # unreadable secret cannot be compared, so it is left alone rather than
        # rewritten on every run.
        return True
    if have is None:
        return False
    return _canon(field_name, want) == _canon(field_name, have)


def _quote(value: str) -> str:
    if value == "" or any(c in value for c in ' "\\;$=') or value != value.strip():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        return f'"{escaped}"'
    return value


def format_props(props: Mapping[str, str], *, mask: bool = True) -> str:
    return " ".join(f"{k}={MASK if mask and k in SECRET_FIELDS else _quote(v)}" for k, v in props.items())


@dataclass(frozen=True)
class Operation:
    """One change on the router."""

    action: Action
    menu: Menu
    key: str
    #: add: every field; set: the changed fields' new values; remove: nothing
    props: dict[str, str] = field(default_factory=dict)
    #: set: the changed fields' current values
    old: dict[str, str] = field(default_factory=dict)
    #: the router's .id of the item (set, remove)
    item_id: str | None = None

    def brief(self) -> str:
        """``add /ip/pool lab-pool``; sets list the changed fields (secrets masked)."""
        text = f"{self.action} {self.menu.path} {self.key}"
        if self.action == "set":
            text += " " + format_props(self.props)
        return text

    def describe(self) -> str:
        """One line for the user, secrets masked."""
        if self.action == "add":
            return f"+ add {self.menu.what} {self.key}: {self.menu.console} add {format_props(self.props)}"
        if self.action == "set":
            changes = ", ".join(
                f"{k} {MASK if k in SECRET_FIELDS else _quote(self.old.get(k, '') or '(unset)')} -> "
                f"{MASK if k in SECRET_FIELDS else _quote(v)}"
                for k, v in self.props.items()
            )
            return f"~ set {self.menu.what} {self.key}: {changes}"
        return f"- remove {self.menu.what} {self.key} (managed by piimg, no longer in the spec)"


@dataclass(frozen=True)
class Conflict:
    """An unmanaged item in the way: reported, never changed."""

    menu: Menu
    key: str
    message: str
    fix: str

    def describe(self) -> str:
        return f"{self.menu.path} {self.key}: {self.message}; to fix: {self.fix}"


@dataclass(frozen=True)
class Plan:
    dialect: Dialect
    cluster: str
    operations: tuple[Operation, ...]
    conflicts: tuple[Conflict, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the router already matches the spec: "no changes"."""
        return not self.operations

    def lines(self) -> list[str]:
        """The plan as the user reads it (secrets masked)."""
        out = [f"router-setup plan for cluster {self.cluster} on {self.dialect}:"]
        if self.operations:
            out += [f"  {op.describe()}" for op in self.operations]
        elif not self.conflicts:
            out.append("  no changes: the router already matches the spec")
        for conflict in self.conflicts:
            out.append(f"  ! conflict: {conflict.describe()}")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  warning: {w}" for w in self.warnings]
        if self.operations:
            counts = {a: sum(op.action == a for op in self.operations) for a in ("add", "set", "remove")}
            out.append(f"{counts['add']} to add, {counts['set']} to change, {counts['remove']} to remove")
        return out


def _conflict(menu: Menu, key: str, row: Row, what: str, cluster: str) -> Conflict:
    comment = row.get("comment", "")
    owner = f"its comment is {comment!r}" if comment else "it has no piimg comment"
    where = ""
    if menu is IP_ADDRESS and row.get("interface"):
        where = f" on {row['interface']}"
    elif menu is BRIDGE_PORT and row.get("bridge"):
        where = f" in bridge {row['bridge']}"
    return Conflict(
        menu=menu,
        key=key,
        message=f"{what}{where} exists and is not managed by piimg ({owner}); piimg will not change it",
        fix=menu.fix.format(key=row.get(menu.key, key)) + f' (or set its comment to "{marker(cluster)}" to hand it to piimg)',
    )


def _with_router_facts(desired: Desired, current: Current) -> tuple[Desired, list[str]]:
    """Items and notes that depend on the router's own configuration (lists, firewall)."""
    rows = {path: [normalize_row(r) for r in current.get(path, ())] for path in facts.FACT_PATHS}
    rows[facts.LIST_MEMBERS] = [normalize_row(r) for r in current.get(facts.LIST_MEMBERS, ())]
    notes: list[str] = []
    items = list(desired.items)
    bridge = desired.bridge
    in_lan = facts.has_list(rows, LAN_LIST)
    if in_lan:
        # The factory firewall (and MAC server, neighbour discovery) trusts the
        # LAN list; the lab bridge joins it so the nodes get DHCP, DNS and BGP.
        items.append(lan_member(bridge, desired.cluster))
    members = {(r.get("interface"), r.get("list")) for r in rows[facts.LIST_MEMBERS] if r.get("dynamic") != "yes"}
    for kind, name, rule in facts.input_drops(rows):
        allowed = (
            (kind == "list" and ((name == LAN_LIST and in_lan) or (bridge, name) in members))
            or (kind == "interface" and name == bridge)
        )
        match = f"in-interface-list=!{name}" if kind == "list" else f"in-interface=!{name}"
        if allowed:
            if kind == "list" and name == LAN_LIST:
                notes.append(
                    f"{bridge} joins the interface list {LAN_LIST}: the firewall rule {facts.describe_rule(rule)} "
                    f"(chain=input action={rule.get('action')} {match}) would otherwise drop what the nodes send to the router"
                )
            continue
        fix = (f"/interface list member add list={name} interface={bridge}" if kind == "list"
               else "add an accept rule for it before that rule")
        notes.append(
            f"the firewall rule {facts.describe_rule(rule)} (chain=input action={rule.get('action')} {match}) "
            f"drops everything the nodes on {bridge} send to the router itself, because {bridge} is not "
            f"{'in the list ' + name if kind == 'list' else name}: BGP connections the nodes open (tcp/179; sessions "
            "still come up because the router connects out to them), DNS (udp/53), the API and possibly DHCP "
            f"requests; to allow them: {fix}"
        )
    return dataclasses.replace(desired, items=tuple(items)), notes


def make_plan(desired: Desired, current: Current) -> Plan:
    """Diff desired against current: adds/sets in dependency order, then removals in reverse."""
    desired, fact_notes = _with_router_facts(desired, current)
    cluster = desired.cluster
    changes: list[Operation] = []
    removals: list[Operation] = []
    conflicts: list[Conflict] = []
    interfaces = facts.interface_names({k: [normalize_row(r) for r in v] for k, v in current.items() if k == facts.INTERFACES})
    for menu in menus_for(desired.dialect):
        rows = [normalize_row(r) for r in current.get(menu.path, ())]
        if menu.skip_dynamic:
            rows = [r for r in rows if r.get("dynamic") != "yes"]
        owned = [r for r in rows if is_owned(r.get("comment"), cluster)]
        unowned = [r for r in rows if not is_owned(r.get("comment"), cluster)]
        matched: set[str] = set()
        wanted = {i.key for i in desired.items if i.menu is menu}
        for item in (i for i in desired.items if i.menu is menu):
            key = item.key
            if menu is BRIDGE_PORT and interfaces is not None and key not in interfaces:
                ports = facts.port_names({facts.INTERFACES: [normalize_row(r) for r in current[facts.INTERFACES]]})
                conflicts.append(
                    Conflict(
                        menu=menu,
                        key=key,
                        message=f"the router has no interface {key} (its ports: {', '.join(ports) or 'none'})",
                        fix="set router.ports to ports this router has",
                    )
                )
                continue
            theirs = next((r for r in unowned if menu.identity(r) == key), None)
            if theirs is not None and menu.shared:
                continue  # already there, made by the user: nothing to do, nothing to own
            if theirs is not None:
                conflicts.append(_conflict(menu, key, theirs, f"{menu.what} {key}", cluster))
                continue
            clash = next(
                (
                    (f, r)
                    for f in menu.exclusive
                    for r in unowned
                    if f in item.props and same_value(f, item.props[f], r.get(f))
                ),
                None,
            )
            if clash is not None:
                f, r = clash
                other = menu.identity(r) or r.get(".id", "?")
                conflicts.append(_conflict(menu, key, r, f"{menu.what} {other} with {f}={item.props[f]}", cluster))
                continue
            mine = next((r for r in owned if menu.identity(r) == key and r.get(".id") not in matched), None)
            if mine is None and menu.exclusive:
                # Our item under its old key (dhcp2 renamed to dhcp3 on the same
                # interface; a node renamed): rename it in place. Adding first and
                # removing the old one last would make two DHCP servers on one
                # interface, or two peers to one address, for a while.
                mine = next(
                    (
                        r
                        for r in owned
                        if r.get(".id") not in matched
                        and menu.identity(r) not in wanted
                        and any(f in item.props and same_value(f, item.props[f], r.get(f)) for f in menu.exclusive)
                    ),
                    None,
                )
            if mine is None:
                changes.append(Operation("add", menu, key, dict(item.props)))
                continue
            matched.add(mine.get(".id", ""))
            diff = {f: v for f, v in item.props.items() if not same_value(f, v, mine.get(f))}
            diff.update(_stale_secrets(item.props, mine))
            if diff:
                old = {f: mine.get(f, "") for f in diff}
                changes.append(Operation("set", menu, key, diff, old, mine.get(".id")))
        for row in owned:
            if row.get(".id") not in matched:
                key = menu.identity(row) or row.get(".id", "?")
                removals.append(Operation("remove", menu, key, item_id=row.get(".id")))
    operations = tuple(changes + removals[::-1])
    return Plan(
        dialect=desired.dialect,
        cluster=cluster,
        operations=operations,
        conflicts=tuple(conflicts),
        notes=desired.notes + tuple(fact_notes) + tuple(_orphan_instances(desired, current)),
        warnings=tuple(_management_warnings(desired, current, operations)),
    )


def _stale_secrets(want: Mapping[str, str], have: Mapping[str, object]) -> dict[str, str]:
    """Secret fields the spec no longer asks for but the router still has: cleared.

    Without ``cluster.bgp.password_env`` the nodes send no TCP-MD5 signature
    (and stock Raspberry Pi OS kernels cannot send one at all), so a key left
    on the router's peer would keep every session down. A value shown as stars
    is a key that exists but cannot be read; it is cleared all the same.
    """
    return {f: "" for f in SECRET_FIELDS if f not in want and str(have.get(f) or "") != ""}


def _orphan_instances(desired: Desired, current: Current) -> list[str]:
    """Instances RouterOS made when it upgraded 7.19 connections, that nothing uses once piimg's own is in place.

    Upgrading to 7.20 turns each group of connections into an instance named
    ``bgp-instance-N`` (terraform-routeros resource_routing_bgp_instance.go
    records ``name: "bgp-instance-1"``) and points the connections at it; piimg
    moves its own connections to its ``piimg-<cluster>`` instance, which
    leaves the auto-made one behind with the same AS. It is not piimg's to
    remove, so the plan says so.
    """
    if not desired.dialect.has_bgp_instance or desired.dialect.bgp is BgpStyle.V6:
        return []
    ours = next((i for i in desired.items if i.menu is BGP_INSTANCE), None)
    if ours is None:
        return []
    instances = [normalize_row(r) for r in current.get(BGP_INSTANCE.path, ())]
    connections = [normalize_row(r) for r in current.get(BGP_CONNECTION.path, ())]
    used = {c.get("instance") for c in connections if not is_owned(c.get("comment"), desired.cluster)}
    notes = []
    for inst in instances:
        name = inst.get("name", "")
        if is_owned(inst.get("comment"), desired.cluster) or name in used or name == ours.key:
            continue
        if inst.get("as") == ours.props.get("as"):
            notes.append(
                f"BGP instance {name} is not managed by piimg, has the same AS ({inst.get('as')}) and no connection "
                f"uses it once piimg's connections are on {ours.key} (RouterOS 7.20 makes such instances when it "
                f"upgrades 7.19 connections); if nothing else needs it: /routing bgp instance remove [find name={name}]"
            )
    return notes


def _management_warnings(desired: Desired, current: Current, operations: tuple[Operation, ...]) -> list[str]:
    """Changes that would cut the API connection itself (the router address we talk to)."""
    try:
        host = str(ipaddress.ip_address(desired.api_host))
    except ValueError:
        return []
    addresses = [normalize_row(r) for r in current.get(IP_ADDRESS.path, ())]
    ports = [normalize_row(r) for r in current.get(BRIDGE_PORT.path, ())]
    via = {r.get("interface", "") for r in addresses if r.get("address", "").split("/")[0] == host}
    moved = {op.key for op in operations if op.menu is BRIDGE_PORT and op.action in ("add", "set")}
    warnings = []
    for iface in sorted(via - {""}):
        if iface in moved:
            warnings.append(
                f"the API connection to {host} goes through {iface}, which this plan puts into bridge "
                f"{desired.bridge}: the connection will drop; connect through another port or address first"
            )
        in_bridge = {p.get("interface", "") for p in ports if p.get("bridge") == iface}
        members = [p for p in desired.ports if p in in_bridge and iface != desired.bridge]
        if members:
            # Also when the port is still a conflict: the user's fix (handing it
            # over) is what would cut the connection.
            verb = "this plan moves" if all(p in moved for p in members) else "router.ports asks to move"
            warnings.append(
                f"the API connection to {host} goes through bridge {iface}, and {verb} its "
                f"port(s) {', '.join(members)} to {desired.bridge}: if you are plugged into one of them, "
                "the connection will drop"
            )
    for op in operations:
        if op.menu is IP_ADDRESS and op.key == host and op.action in ("set", "remove"):
            warnings.append(f"this plan changes the address {host} that the API connection uses: the connection may drop")
    return warnings
