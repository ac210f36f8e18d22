"""Every cross-field rule of the spec, checked once, when the file is loaded.

``piimg validate`` rejects exactly what ``piimg build``, ``piimg manifests``
and first boot would reject: no renderer, template or build step checks a
spec value again (they may assume a loaded :class:`~piimg.spec.model.Spec` is
valid). ``tests/test_spec_verdicts.py`` holds that promise: it feeds every
rule to ``validate`` and to ``build`` and wants the same verdict.

Where a check belongs:

* the shape of one value (a type, a pattern, a range): the section loader in
  :mod:`piimg.spec.load` that reads the key;
* anything that relates two keys, or needs domain knowledge beyond one value
  (k3s flags, pools vs subnet, secrets from the environment): a rule here.

To add a rule: write ``def _rule_name(ctx: _Ctx, spec: Spec) -> None`` that
raises ``ctx.err("the.key[i]", "what is wrong", hint=...)`` (the key path of
the offending value; one line, no trailing period), append it to
:data:`RULES`, and add one broken spec to the ``CASES`` table in
``tests/test_config_validation.py`` (and to ``VERDICTS`` in
``tests/test_spec_verdicts.py`` if a later command used to catch it). Rules
run in the order of :data:`RULES`; the first problem is reported.

Secrets the spec names by environment variable are read here too, once
(:func:`resolve_env_secrets`), and travel with the spec as
``spec.env_secrets``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from piimg import versions
from piimg.errors import ConfigError
from piimg.spec import k3sflags
from piimg.spec.model import AddressRange, Arch, Ingress, IPv4Address, Role, Spec
from piimg.spec.secrets import EnvSecrets

if TYPE_CHECKING:
    from piimg.spec.load import _Ctx

Rule = Callable[["_Ctx", Spec], None]


def _router_ca_file(ctx: _Ctx, spec: Spec) -> None:
    if spec.router.ca_file is not None:
        ca = Path(spec.router.ca_file).expanduser()
        ca = ca if ca.is_absolute() else spec.paths.root / ca
        if not ca.is_file():
            raise ctx.err("router.ca_file", f"{spec.router.ca_file}: no such file")


def _wifi_country(ctx: _Ctx, spec: Spec) -> None:
    if spec.wifi is not None and spec.locale.wifi_country is None:
        # Raspberry Pi OS keeps the WLAN rfkill-blocked until a regulatory country is set
        raise ctx.err("locale.wifi_country", "required when wifi is set (Wi-Fi stays blocked without it)",
                      hint="set the two-letter code of the country the Pi is in, e.g. wifi_country: GB")


def _node_addresses(ctx: _Ctx, spec: Spec) -> None:
    net = spec.network
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


def _node_roles(ctx: _Ctx, spec: Spec) -> None:
    if not spec.servers:
        raise ctx.err("nodes", "needs a node with role: server (the first server initialises the cluster)")
    if spec.nodes[0].role is not Role.SERVER:
        raise ctx.err("nodes[0].role", "the first node must be the initial server (role: server)")


def _addresses_outside_lb_pools(ctx: _Ctx, spec: Spec) -> None:
    """MetalLB hands out every address of a pool to services and announces it over
    BGP: an address that is already a node, the gateway or the router's API
    endpoint would be answered by two machines."""
    owners: list[tuple[str, IPv4Address, str]] = [
        (f"nodes[{i}].address", n.address, f"{n.hostname}'s address") for i, n in enumerate(spec.nodes)
    ]
    owners.append(("network.gateway", spec.network.gateway, "the gateway"))
    try:
        router = IPv4Address(spec.router.host)
    except ValueError:  # a host name: nothing to compare before it is resolved
        router = None
    if router is not None:
        owners.append(("router.host", router, "the router's API address"))
        for i, n in enumerate(spec.nodes):
            if n.address == router:
                raise ctx.err("router.host", f"{router} is nodes[{i}].address ({n.hostname}), a Pi, not the router",
                              hint="router.host is the MikroTik's address, usually network.gateway")
    for key, addr, what in owners:
        for i, pool in enumerate(spec.cluster.pools):
            for j, rng in enumerate(pool.addresses):
                if addr in rng:
                    raise ctx.err(
                        key,
                        f"{addr} ({what}) is inside cluster.pools[{i}].addresses[{j}] {rng} (pool {pool.name})",
                        hint="MetalLB would give this address to a LoadBalancer service too; "
                             "keep the pools apart from the addresses of nodes and router",
                    )


def _lb_pools(ctx: _Ctx, spec: Spec) -> None:
    net = spec.network
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


def _bgp_asn(ctx: _Ctx, spec: Spec) -> None:
    if spec.router.asn == spec.cluster.bgp.asn and not spec.cluster.bgp.allow_ibgp:
        raise ctx.err(
            "cluster.bgp.asn",
            f"{spec.cluster.bgp.asn} equals router.asn; the cluster peers with the router over eBGP",
            hint="pick another private ASN, or set cluster.bgp.allow_ibgp: true if you really want iBGP",
        )


def _login_possible(ctx: _Ctx, spec: Spec) -> None:
    if not spec.access.ssh_authorized_keys and spec.access.password_hash is None:
        raise ctx.err(
            "access.ssh_authorized_keys",
            "empty, no ~/.ssh/id_*.pub found and no access.password_hash: nobody could log in to the nodes",
            hint="add your public key, or create one with ssh-keygen -t ed25519",
        )


def _disabled_components(ctx: _Ctx, spec: Spec) -> None:
    disable = spec.cluster.disable
    if "servicelb" not in disable:
        raise ctx.err(
            "cluster.disable",
            "must include servicelb: k3s's ServiceLB would answer for LoadBalancer services instead of MetalLB",
        )
    if spec.cluster.ingress is Ingress.TRAEFIK and "traefik" in disable:
        raise ctx.err("cluster.disable", "disables traefik, but cluster.ingress is traefik")


def _k3s_extra_server_args(ctx: _Ctx, spec: Spec) -> None:
    """Flags merged into every server's k3s config file (:mod:`piimg.spec.k3sflags`)."""
    raw = spec.cluster.extra_server_args
    for arg in k3sflags.parse_extra_args(raw):
        where = arg.where
        if not raw[arg.index].startswith("--"):
            raise ctx.err(where, f"{raw[arg.index]!r} is not a k3s server flag (--name or --name=value)")
        if not arg.key:
            raise ctx.err(where, "is not a k3s flag (--name or --name=value)")
        if arg.key in k3sflags.MANAGED_KEYS:
            raise ctx.err(where, f"sets {arg.key}, which piimg manages itself")
        if arg.key not in k3sflags.LIST_FLAGS:
            continue
        for item in arg.items():
            if not isinstance(item, str) or not item:
                # a bare --tls-san (or --disable=a,,b) would write true or "" into the list
                raise ctx.err(where, f"--{arg.key} needs a value (--{arg.key}=VALUE)")
            if arg.key == "disable" and item.startswith(k3sflags.PIIMG_ADDON_PREFIX):
                # --disable NAME deletes the addon file NAME: ours must stay.
                raise ctx.err(where, f"disables {item}, which piimg deploys")
            if arg.key == "disable" and item == "traefik" and spec.cluster.ingress is Ingress.TRAEFIK:
                raise ctx.err(where, "disables traefik, but cluster.ingress is traefik")


def metallb_version_tuple(version: str) -> tuple[int, int, int]:
    """``v0.16.1`` -> (0, 16, 1); the loader has checked the ``vX.Y.Z`` shape."""
    major, minor, patch = version.removeprefix("v").split(".")
    return int(major), int(minor), int(patch)


def _metallb_version(ctx: _Ctx, spec: Spec) -> None:
    """A MetalLB configured by custom resources, whose chart the chart repository has."""
    version = spec.cluster.metallb_version
    number = metallb_version_tuple(version)
    if number < versions.METALLB_MIN_VERSION:
        raise ctx.err(
            "cluster.metallb_version",
            f"{version} is configured by a ConfigMap; piimg writes MetalLB custom resources (IPAddressPool, "
            f"BGPPeer v1beta2), which MetalLB reads from v0.13.0 on",
            hint=f"use {versions.METALLB_VERSION}",
        )
    chart = versions.metallb_chart_version(version)
    newest = max(metallb_version_tuple(c) for c in versions.METALLB_PUBLISHED_CHARTS)
    if chart not in versions.METALLB_PUBLISHED_CHARTS and number <= newest:
        raise ctx.err(
            "cluster.metallb_version",
            f"{version} has no chart {chart} in MetalLB's chart repository {versions.METALLB_CHART_REPO}, "
            "so k3s's Helm job would fail",
            hint=f"pick a published release, e.g. {versions.METALLB_VERSION}",
        )


#: ``uname -m``-style words in Raspberry Pi OS download names -> Go/OCI architecture.
_ARCH_WORDS: Final = (("arm64", "arm64"), ("aarch64", "arm64"), ("armhf", "arm"), ("armel", "arm"), ("armv7", "arm"))


def image_architecture(spec: Spec) -> tuple[str, str, str] | None:
    """(architecture, spec key, value) of the OS image's userland; None when unknown.

    ``image.arch`` when set; otherwise the name: Raspberry Pi OS names its
    downloads by architecture (raspios_lite_arm64, raspios_lite_armhf;
    ``image.os`` slugs follow them), and so do the image files
    (2025-10-01-raspios-trixie-armhf-lite.img.xz).
    """
    if spec.image.arch is not Arch.AUTO:
        return ("arm" if spec.image.arch is Arch.ARMHF else "arm64"), "image.arch", spec.image.arch.value
    if spec.image.url is not None:
        key, value = "image.url", spec.image.url.rsplit("/", 1)[-1]
    else:
        key, value = "image.os", spec.image.os
    words = value.lower().replace("_", "-").replace(".", "-").split("-")
    for word, arch in _ARCH_WORDS:
        if word in words:
            return arch, key, value
    return None


def _component_architectures(ctx: _Ctx, spec: Spec) -> None:
    """Every component piimg deploys must publish images for the image's architecture."""
    found = image_architecture(spec)
    if found is None:
        return
    arch, key, value = found
    components = ["k3s", "klipper-helm (the HelmChart job image)", "metallb"]
    ingress_component = versions.INGRESS_COMPONENT.get(spec.cluster.ingress.value)
    if ingress_component is not None:
        components.append(ingress_component)
    for name in components:
        platforms, source = versions.ARCHITECTURES[name]
        if arch in platforms:
            continue
        bits = "32-bit ARM (armhf)" if arch == "arm" else arch
        if name == ingress_component:
            raise ctx.err(
                "cluster.ingress",
                f"{name} publishes no {bits} images (only {', '.join(sorted(platforms))}; "
                f"{source}), but {key} {value!r} is a {bits} image",
                hint="use a 64-bit image (image.os: raspios-lite-arm64), or cluster.ingress: ingress-nginx or traefik",
            )
        raise ctx.err(key, f"{value!r} is a {bits} image, and {name} publishes none ({source})")


def _pinned_artifacts(ctx: _Ctx, spec: Spec) -> None:
    """k3s and the charts must be files piimg can verify: a release (no channel) with a pinned install.sh."""
    from piimg.fetch import artifacts  # the pins are read where they are verified

    try:
        artifacts.check_pins(spec)
    except ConfigError as exc:
        raise ctx.err(exc.key, exc.message.removeprefix(f"{exc.key}: "), hint=exc.hint) from None


#: Every cross-field rule, in the order they run. Append new rules here.
RULES: Final[tuple[Rule, ...]] = (
    _router_ca_file,
    _wifi_country,
    _node_addresses,
    _node_roles,
    _addresses_outside_lb_pools,
    _lb_pools,
    _bgp_asn,
    _login_possible,
    _disabled_components,
    _k3s_extra_server_args,
    _metallb_version,
    _component_architectures,
    _pinned_artifacts,
)


#: RouterOS's tcp-md5-key: "string value, max length 80" (every 7.x
#: /console/inspect dump in tikoci/restraml, 7.9-7.24); the API encodes words
#: as ASCII (librouteros protocol.encode_word), so a non-ASCII key cannot even
#: be sent. Printable ASCII also keeps it intact through FRR and MetalLB config.
BGP_KEY_MAX: Final = 80


def _check_bgp_key(ctx: _Ctx, name: str, key: str) -> None:
    if len(key) > BGP_KEY_MAX:
        raise ctx.err("cluster.bgp.password_env", f"the BGP key in ${name} has {len(key)} characters; RouterOS takes at most {BGP_KEY_MAX}")
    if not all(" " <= c <= "~" for c in key):
        raise ctx.err("cluster.bgp.password_env", f"the BGP key in ${name} must be printable ASCII (RouterOS's API sends ASCII only)")


def resolve_env_secrets(ctx: _Ctx, spec: Spec, env: Mapping[str, str]) -> EnvSecrets:
    """Read the secrets the spec names by environment variable, once; refuse missing or bad ones."""
    wifi = None
    if spec.wifi is not None:
        name = spec.wifi.psk_env
        if name not in env:
            raise ctx.err("wifi.psk_env", f"environment variable {name} is not set")
        wifi = env[name]
        if not 8 <= len(wifi) <= 63:
            raise ctx.err("wifi.psk_env", f"the passphrase in ${name} must be 8 to 63 characters (WPA2)")
    bgp = None
    if spec.cluster.bgp.password_env is not None:
        name = spec.cluster.bgp.password_env
        bgp = env.get(name)
        if not bgp:
            raise ctx.err("cluster.bgp.password_env", f"environment variable {name} is not set")
        _check_bgp_key(ctx, name, bgp)
    return EnvSecrets(wifi_passphrase=wifi, bgp_password=bgp)


def cross_check(ctx: _Ctx, spec: Spec) -> None:
    """Run :data:`RULES` on a spec whose sections are loaded; raise the first problem."""
    for rule in RULES:
        rule(ctx, spec)
