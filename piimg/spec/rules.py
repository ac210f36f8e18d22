"""The cross-field rules of the spec: addresses, pools, ASNs, roles, access.

Run by :func:`piimg.spec.load.parse` once every section has been read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from piimg.spec.model import AddressRange, IPv4Address, Role, Spec

if TYPE_CHECKING:
    from piimg.spec.load import _Ctx


def cross_check(ctx: _Ctx, spec: Spec) -> None:
    if spec.router.ca_file is not None:
        ca = Path(spec.router.ca_file).expanduser()
        ca = ca if ca.is_absolute() else spec.base_dir / ca
        if not ca.is_file():
            raise ctx.err("router.ca_file", f"{spec.router.ca_file}: no such file")
    net = spec.network
    if spec.wifi is not None and spec.locale.wifi_country is None:
        # Raspberry Pi OS keeps the WLAN rfkill-blocked until a regulatory country is set
        raise ctx.err("locale.wifi_country", "required when wifi is set (Wi-Fi stays blocked without it)",
                      hint="set the two-letter code of the country the Pi is in, e.g. wifi_country: GB")
    seen_names: dict[str, int] = {}
    seen_addrs: dict[IPv4Address, int] = {}
    seen_macs: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        key = f"nodes[{i}]"
        if node.hostname in seen_names:
            raise ctx.err(f"{key}.hostname", f"{node.hostname!r} is already used by nodes[{seen_names[node.hostname]}]")
        seen_names[node.hostname] = i
        addr = node.address
        if addr not in net.subnet:
            raise ctx.err(f"{key}.address", f"{addr} is outside network.subnet {net.subnet}")
        if addr in (net.subnet.network_address, net.subnet.broadcast_address):
            raise ctx.err(f"{key}.address", f"{addr} is the network or broadcast address of network.subnet {net.subnet}")
        if addr == net.gateway:
            raise ctx.err(f"{key}.address", f"{addr} is network.gateway, the router's own address")
        if addr in net.dhcp_pool:
            raise ctx.err(f"{key}.address", f"{addr} is inside network.dhcp_pool {net.dhcp_pool}; give nodes static addresses outside it")
        if addr in seen_addrs:
            raise ctx.err(f"{key}.address", f"{addr} is already used by nodes[{seen_addrs[addr]}]")
        seen_addrs[addr] = i
        if node.mac is not None:
            if node.mac in seen_macs:
                raise ctx.err(f"{key}.mac", f"{node.mac} is already used by nodes[{seen_macs[node.mac]}]")
            seen_macs[node.mac] = i
    if not spec.servers:
        raise ctx.err("nodes", "needs a node with role: server (the first server initialises the cluster)")
    if spec.nodes[0].role is not Role.SERVER:
        raise ctx.err("nodes[0].role", "the first node must be the initial server (role: server)")
    all_ranges: list[tuple[str, AddressRange]] = []
    for i, pool in enumerate(spec.cluster.pools):
        for j, rng in enumerate(pool.addresses):
            key = f"cluster.pools[{i}].addresses[{j}]"
            if rng.touches(net.subnet):
                raise ctx.err(
                    key,
                    f"{rng} overlaps network.subnet {net.subnet}",
                    hint="LoadBalancer pools must lie outside the lab subnet; they are reached through BGP routes",
                )
            for other_key, other in all_ranges:
                if rng.overlaps(other):
                    raise ctx.err(key, f"{rng} overlaps {other_key} ({other})")
            all_ranges.append((key, rng))
    names = [p.name for p in spec.cluster.pools]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise ctx.err(f"cluster.pools[{i}].name", f"{name!r} is used by another pool")
    if spec.router.asn == spec.cluster.bgp.asn and not spec.cluster.bgp.allow_ibgp:
        raise ctx.err(
            "cluster.bgp.asn",
            f"{spec.cluster.bgp.asn} equals router.asn; the cluster peers with the router over eBGP",
            hint="pick another private ASN, or set cluster.bgp.allow_ibgp: true if you really want iBGP",
        )
    if not spec.access.ssh_authorized_keys and spec.access.password_hash is None:
        raise ctx.err(
            "access.ssh_authorized_keys",
            "empty, no ~/.ssh/id_*.pub found and no access.password_hash: nobody could log in to the nodes",
            hint="add your public key, or create one with ssh-keygen -t ed25519",
        )
