"""The router configuration the spec asks for: a list of items per RouterOS menu.

Every item piimg creates carries the comment marker ``piimg: <cluster>``
(per-node items add ``node <hostname>``), so later runs know what they own
and never touch anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from piimg.router.dialects import BgpStyle, Dialect
from piimg.spec.model import Spec

MARKER_PREFIX: Final = "piimg: "


def marker(cluster: str) -> str:
    return f"{MARKER_PREFIX}{cluster}"


def node_marker(cluster: str, hostname: str) -> str:
    return f"{marker(cluster)} node {hostname}"


def is_owned(comment: object, cluster: str) -> bool:
    """Whether an item's comment says piimg created it for this cluster."""
    if not isinstance(comment, str):
        return False
    mark = marker(cluster)
    return comment == mark or comment.startswith(mark + " ")


def _plain(value: str) -> str:
    return value


def _ip_only(value: str) -> str:
    return value.split("/", 1)[0]


def _upper(value: str) -> str:
    return value.upper()


@dataclass(frozen=True)
class Menu:
    """One RouterOS menu piimg manages, and how its items are identified."""

    path: str
    #: the field that identifies an item (``name``, ``interface``, ...)
    key: str
    #: what the item is, for messages
    what: str
    #: normalises the key value (an address's prefix does not change identity)
    key_norm: Callable[[str], str] = _plain
    #: fields that must not be shared with an unmanaged item either
    exclusive: tuple[str, ...] = ()
    #: how to remove a conflicting unmanaged item by hand (format with key=)
    fix: str = ""
    #: dynamic rows are not configuration (a dynamic DHCP lease gives way to a static one)
    skip_dynamic: bool = False
    #: a second field that is part of the identity (``list`` of an interface list member)
    key_with: str = ""
    #: an unmanaged item with the same identity already does what piimg wants:
    #: leave it, no conflict (the user added the bridge to LAN by hand)
    shared: bool = False

    def identity(self, row: Mapping[str, str]) -> str | None:
        value = row.get(self.key)
        if value is None or value == "":
            return None
        if self.key_with:
            return f"{self.key_norm(value)} in {row.get(self.key_with, '')}"
        return self.key_norm(value)

    @property
    def console(self) -> str:
        """The menu as RouterOS console/export syntax: ``/ip dhcp-server lease``."""
        parts = self.path.strip("/").split("/")
        return "/" + parts[0] + (" " + " ".join(parts[1:]) if len(parts) > 1 else "")


BRIDGE: Final = Menu("/interface/bridge", "name", "bridge", fix="rename or remove the bridge {key}, or set router.bridge")
BRIDGE_PORT: Final = Menu(
    "/interface/bridge/port", "interface", "bridge port", fix="/interface bridge port remove [find interface={key}]"
)
IP_ADDRESS: Final = Menu(
    "/ip/address", "address", "address", key_norm=_ip_only, fix="remove {key} from the other interface, or change network.gateway"
)
IP_POOL: Final = Menu("/ip/pool", "name", "IP pool", fix="remove the pool {key}, or set router.pool_name")
DHCP_SERVER: Final = Menu(
    "/ip/dhcp-server", "name", "DHCP server", exclusive=("interface",), fix="remove or disable the DHCP server {key}, or set router.dhcp_server"
)
DHCP_NETWORK: Final = Menu("/ip/dhcp-server/network", "address", "DHCP network", fix="/ip dhcp-server network remove [find address={key}]")
DHCP_LEASE: Final = Menu(
    "/ip/dhcp-server/lease",
    "mac-address",
    "static lease",
    key_norm=_upper,
    exclusive=("address",),
    fix="/ip dhcp-server lease remove [find mac-address={key}]",
    skip_dynamic=True,
)
LIST_MEMBER: Final = Menu(
    "/interface/list/member",
    "interface",
    "interface list member",
    key_with="list",
    shared=True,
    fix="/interface list member remove [find interface={key}]",
)
BGP_INSTANCE: Final = Menu("/routing/bgp/instance", "name", "BGP instance", fix="remove the BGP instance {key}")
BGP_PEER: Final = Menu(
    "/routing/bgp/peer", "name", "BGP peer", exclusive=(BgpStyle.V6.remote_address_field,), fix="/routing bgp peer remove [find name={key}]"
)
BGP_CONNECTION: Final = Menu(
    "/routing/bgp/connection",
    "name",
    "BGP connection",
    exclusive=(BgpStyle.V7.remote_address_field,),
    fix="/routing bgp connection remove [find name={key}]",
)

#: The LAN menus, which every RouterOS piimg supports has, in dependency order (see :func:`menus_for`).
_LAN_MENUS: Final = (BRIDGE, BRIDGE_PORT, IP_ADDRESS, IP_POOL, DHCP_SERVER, DHCP_NETWORK, DHCP_LEASE, LIST_MEMBER)

#: The interface list the factory ("defconf") firewall trusts: its input chain
#: ends in `action=drop in-interface-list=!LAN` ("defconf: drop all not coming
#: from LAN", e.g. kaihendry/mikrotik-configs@3001d1a1:default.cfg.rsc, an
#: export of a 6.48.3 router's default configuration).
LAN_LIST: Final = "LAN"

#: Fields whose values are secrets: masked in plans, never logged.
SECRET_FIELDS: Final = frozenset({"tcp-md5-key"})


def bgp_peer_menu(dialect: Dialect) -> Menu:
    """Where one BGP neighbour is configured: a peer on RouterOS 6, a connection on RouterOS 7."""
    return BGP_PEER if dialect.bgp is BgpStyle.V6 else BGP_CONNECTION


def menus_for(dialect: Dialect) -> tuple[Menu, ...]:
    """The menus that exist (and that piimg reads) on this RouterOS, in dependency order.

    Adds and sets run top to bottom, removals bottom to top: a bridge before
    its ports, a pool before the DHCP server that hands it out, a BGP
    instance before the peers that name it.
    """
    instance = (BGP_INSTANCE,) if dialect.has_bgp_instance else ()
    return (*_LAN_MENUS, *instance, bgp_peer_menu(dialect))


@dataclass(frozen=True)
class Item:
    """One desired RouterOS item: its menu and the fields piimg sets."""

    menu: Menu
    props: dict[str, str]

    @property
    def key(self) -> str:
        key = self.menu.identity(self.props)
        assert key is not None, f"{self.menu.path} item without {self.menu.key}"
        return key


@dataclass(frozen=True)
class Desired:
    dialect: Dialect
    cluster: str
    items: tuple[Item, ...]
    #: things the user should know (e.g. no ECMP on this RouterOS)
    notes: tuple[str, ...] = ()
    #: the address the API connection goes to (for the management warning)
    api_host: str = ""
    #: the bridge and the ports router-setup puts into it
    ports: tuple[str, ...] = ()
    bridge: str = ""


def lan_member(bridge: str, cluster: str) -> Item:
    """The lab bridge in the ``LAN`` interface list (only planned when that list exists)."""
    return Item(LIST_MEMBER, {"interface": bridge, "list": LAN_LIST, "comment": marker(cluster)})


def instance_name(cluster: str) -> str:
    return f"piimg-{cluster}"


def peer_name(hostname: str) -> str:
    return f"piimg-{hostname}"


def desired_state(spec: Spec, dialect: Dialect, *, bgp_password: str | None) -> Desired:
    """Everything router-setup should create, for this spec on this RouterOS."""
    r, net, cluster = spec.router, spec.network, spec.cluster.name
    mark = marker(cluster)
    prefix = net.subnet.prefixlen
    items: list[Item] = [Item(BRIDGE, {"name": r.bridge, "comment": mark})]
    items += [Item(BRIDGE_PORT, {"interface": port, "bridge": r.bridge, "comment": mark}) for port in r.ports]
    items.append(Item(IP_ADDRESS, {"address": f"{net.gateway}/{prefix}", "interface": r.bridge, "comment": mark}))
    items.append(Item(IP_POOL, {"name": r.pool_name, "ranges": f"{net.dhcp_pool.first}-{net.dhcp_pool.last}", "comment": mark}))
    # A DHCP server added through the API starts disabled unless told otherwise.
    items.append(
        Item(
            DHCP_SERVER,
            {"name": r.dhcp_server, "interface": r.bridge, "address-pool": r.pool_name, "disabled": "no", "comment": mark},
        )
    )
    items.append(
        Item(
            DHCP_NETWORK,
            {
                "address": str(net.subnet),
                "gateway": str(net.gateway),
                "dns-server": ",".join(str(d) for d in net.dns),
                "comment": mark,
            },
        )
    )
    for node in spec.nodes:
        if node.mac:
            items.append(
                Item(
                    DHCP_LEASE,
                    {
                        "mac-address": node.mac.upper(),
                        "address": str(node.address),
                        "server": r.dhcp_server,
                        "comment": node_marker(cluster, node.hostname),
                    },
                )
            )

    notes: list[str] = []
    router_id = str(net.gateway)
    bgp_asn = str(spec.cluster.bgp.asn)
    role = "ibgp" if spec.router.asn == spec.cluster.bgp.asn else "ebgp"
    several = len(spec.nodes) > 1
    if dialect.has_bgp_instance:
        # RouterOS 6 ships a built-in instance "default" that piimg does not own;
        # rather than editing it, piimg adds its own instance (as, router-id) and
        # points its peers at it with instance=, like 7.20 requires anyway.
        inst = {"name": instance_name(cluster), "as": str(r.asn), "router-id": router_id, "comment": mark}
        if dialect.has_multipath and several:
            # ECMP across every node's MetalLB speaker (help.mikrotik.com "routing bgp": multipath).
            inst["multipath"] = str(len(spec.nodes))
        items.append(Item(BGP_INSTANCE, inst))
    if several and not dialect.has_multipath:
        notes.append(
            f"RouterOS {dialect.text} has no BGP multipath (ECMP): each LoadBalancer IP is routed to one node "
            "at a time (ECMP needs RouterOS 7.22 or later, which spreads it over all nodes)"
        )
    for node in spec.nodes:
        comment = node_marker(cluster, node.hostname)
        if dialect.bgp is BgpStyle.V6:
            props = {
                "name": peer_name(node.hostname),
                "instance": instance_name(cluster),
                dialect.remote_address_field: str(node.address),
                "remote-as": bgp_asn,
                "ttl": "default",
                "address-families": "ip",
            }
        else:
            props = {"name": peer_name(node.hostname)}
            if dialect.bgp is BgpStyle.V7_20:
                # 7.20: as/router-id live on the instance; a connection must name it.
                props["instance"] = instance_name(cluster)
            else:
                props["as"] = str(r.asn)
                props["router-id"] = router_id
            props.update(
                {
                    dialect.remote_address_field: str(node.address),
                    "remote.as": bgp_asn,
                    "local.role": role,
                    dialect.afi_field: "ip",
                }
            )
        if bgp_password:
            props["tcp-md5-key"] = bgp_password
        props["comment"] = comment
        items.append(Item(bgp_peer_menu(dialect), props))
    return Desired(
        dialect=dialect,
        cluster=cluster,
        items=tuple(items),
        notes=tuple(notes),
        api_host=r.host,
        ports=r.ports,
        bridge=r.bridge,
    )
