"""Reading ``piimg.yaml``: the YAML loader, typed field readers and section loaders.

Everything is checked once, when the file is loaded: a build never fails
halfway because of a bad value. The section loaders here check the shape of
each value (type, pattern, range); :func:`parse` then runs the cross-field
rules of :mod:`piimg.spec.rules` and reads the secrets the spec names by
environment variable. Each error names the key path and the offending
value, e.g. ``nodes[1].address: 10.0.5.3 is outside network.subnet
10.0.2.0/23``. The readers are typed (``_str`` returns ``str``, or
``str | None`` with ``optional=True``): no ``Any`` leaves this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final, Literal, TypeVar, overload
from urllib.parse import urlsplit

from piimg.errors import ConfigError
from piimg.paths import ProjectPaths
from piimg.spec import sshkeys, yamlload
from piimg.spec.model import (
    DEFAULT_K3S_VERSION,
    DEFAULT_METALLB_VERSION,
    AccessSpec,
    AddressRange,
    Arch,
    BgpSpec,
    ClusterSpec,
    ImageSpec,
    Ingress,
    InitFormat,
    IPv4Address,
    IPv4Network,
    LocaleSpec,
    NetworkSpec,
    NodeSpec,
    PoolSpec,
    Role,
    RouterKind,
    RouterSpec,
    Spec,
    WifiSpec,
)
from piimg.spec.rules import cross_check, resolve_env_secrets
from piimg.units import is_sha256

T = TypeVar("T")

_HOSTNAME_RE: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAC_RE: Final = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")
_K3S_VERSION_RE: Final = re.compile(r"v1\.\d+\.\d+(-rc\d+)?\+k3s\d+")
_METALLB_VERSION_RE: Final = re.compile(r"v0\.\d+\.\d+")
_ENV_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER_RE: Final = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_K3S_CHANNELS: Final = ("stable", "latest", "testing")
_KNOWN_DISABLE: Final = ("traefik", "servicelb", "metrics-server", "local-storage", "coredns", "runtimes")
#: The artefact mirror when the spec sets no ``cluster.artifact_mirror`` (CI, a site-wide
#: mirror); read and checked at load like the key, then stored in it.
MIRROR_ENV: Final = "PIIMG_ARTIFACT_MIRROR"


class _Ctx:
    """Key-path bookkeeping while reading the raw mapping."""

    def __init__(self, file: str | None) -> None:
        self.file = file

    def err(self, key: str, message: str, *, hint: str | None = None) -> ConfigError:
        return ConfigError(key, message, hint=hint, file=self.file)


def _join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


def _mapping(ctx: _Ctx, key: str, value: object, allowed: Iterable[str]) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.err(key, f"expected a mapping, got {_type_name(value)}")
    allowed = list(allowed)
    for k in value:
        if not isinstance(k, str) or k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
            raise ctx.err(_join(key, str(k)), "unknown key", hint=hint)
    return dict(value)


@overload
def _str(ctx: _Ctx, key: str, value: object) -> str: ...
@overload
def _str(ctx: _Ctx, key: str, value: object, *, optional: Literal[True]) -> str | None: ...
def _str(ctx: _Ctx, key: str, value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        raise ctx.err(key, f"expected a non-empty string, got {_type_name(value) if value != '' else 'an empty string'}")
    return str(value)


def _bool(ctx: _Ctx, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ctx.err(key, f"expected true or false, got {value!r}")
    return value


@overload
def _int(ctx: _Ctx, key: str, value: object) -> int: ...
@overload
def _int(ctx: _Ctx, key: str, value: object, *, optional: Literal[True]) -> int | None: ...
def _int(ctx: _Ctx, key: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.err(key, f"expected a whole number, got {value!r}")
    return value


def _list(ctx: _Ctx, key: str, value: object) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.err(key, f"expected a list, got {_type_name(value)}")
    return value


def _enum(ctx: _Ctx, key: str, value: object, enum_type: type[T]) -> T:
    choices = [e.value for e in enum_type]  # type: ignore[attr-defined]
    if value not in choices:
        raise ctx.err(key, f"{value!r} is not one of: {', '.join(choices)}")
    return enum_type(value)  # type: ignore[call-arg]


def _ip(ctx: _Ctx, key: str, value: object) -> IPv4Address:
    try:
        return IPv4Address(str(value))
    except ValueError:
        raise ctx.err(key, f"{value!r} is not an IPv4 address") from None


def _net(ctx: _Ctx, key: str, value: object) -> IPv4Network:
    try:
        return IPv4Network(str(value), strict=True)
    except ValueError as exc:
        raise ctx.err(key, f"{value!r} is not an IPv4 network ({exc})") from None


def _range(ctx: _Ctx, key: str, value: object) -> AddressRange:
    text = str(value).strip()
    if "/" in text:
        net = _net(ctx, key, text)
        return AddressRange(net.network_address, net.broadcast_address, text)
    parts = [p.strip() for p in text.split("-")]
    if len(parts) != 2:
        raise ctx.err(key, f"{value!r} is not a range (write FIRST-LAST or a CIDR block)")
    first, last = _ip(ctx, key, parts[0]), _ip(ctx, key, parts[1])
    if last < first:
        raise ctx.err(key, f"{value!r} ends before it starts")
    return AddressRange(first, last, f"{first}-{last}")


def _asn(ctx: _Ctx, key: str, value: object) -> int:
    """Private (RFC 6996) or documentation (RFC 5398) 16-bit ASNs, or any valid 32-bit ASN.

    The seed network uses 64500, which is in the documentation range: fine on
    a private peering that never reaches the Internet.
    """
    asn = _int(ctx, key, value)
    if not 1 <= asn <= 4294967294 or asn in (23456, 65535):
        raise ctx.err(key, f"{asn} is not a valid AS number (1-4294967294, not 23456 or 65535)")
    if asn < 64496:
        raise ctx.err(
            key,
            f"{asn} is a public AS number",
            hint="use a private one: 64512-65534 or 4200000000-4294967294 (RFC 6996)",
        )
    return int(asn)


@overload
def _env_name(ctx: _Ctx, key: str, value: object) -> str: ...
@overload
def _env_name(ctx: _Ctx, key: str, value: object, *, optional: Literal[True]) -> str | None: ...
def _env_name(ctx: _Ctx, key: str, value: object, *, optional: bool = False) -> str | None:
    name = _str(ctx, key, value, optional=True) if optional else _str(ctx, key, value)
    if name is not None and not _ENV_RE.fullmatch(name):
        raise ctx.err(key, f"{name!r} is not an environment variable name")
    return name


def _load_image(ctx: _Ctx, raw: object) -> ImageSpec:
    d = _mapping(ctx, "image", raw, ImageSpec.__dataclass_fields__)
    base = ImageSpec()
    url = _str(ctx, "image.url", d.get("url", base.url), optional=True)
    sha = _str(ctx, "image.sha256", d.get("sha256", base.sha256), optional=True)
    if sha is not None:
        sha = sha.lower()
        if not is_sha256(sha):
            raise ctx.err("image.sha256", f"{sha!r} is not a SHA-256 hex digest (64 hex digits)")
    for key, value in (("image.url", url), ("image.catalog", d.get("catalog"))):
        scheme = str(value).split("://", 1)[0] if "://" in str(value or "") else None
        if scheme is not None and scheme not in ("http", "https", "file"):
            raise ctx.err(key, f"{value!r}: only http://, https://, file:// or a local path")
    if url and url.startswith("http://") and sha is None:
        raise ctx.err("image.sha256", "required with an http:// image.url (nothing else proves the download is genuine)")
    if sha is not None and url is None:
        raise ctx.err("image.sha256", "given without image.url", hint="the catalog provides the checksum for image.os")
    return ImageSpec(
        os=_str(ctx, "image.os", d.get("os", base.os)),
        catalog=_str(ctx, "image.catalog", d.get("catalog", base.catalog)),
        url=url,
        sha256=sha,
        init_format=_enum(ctx, "image.init_format", d.get("init_format", base.init_format.value), InitFormat),
        arch=_enum(ctx, "image.arch", d.get("arch", base.arch.value), Arch),
    )


def _load_access(ctx: _Ctx, raw: object) -> AccessSpec:
    d = _mapping(ctx, "access", raw, AccessSpec.__dataclass_fields__)
    base = AccessSpec()
    user = _str(ctx, "access.user", d.get("user", base.user))
    if not _USER_RE.fullmatch(user) or user == "root":
        raise ctx.err("access.user", f"{user!r} is not a valid login name (lowercase letters, digits, _ and -; not root)")
    keys = []
    for i, k in enumerate(_list(ctx, "access.ssh_authorized_keys", d.get("ssh_authorized_keys"))):
        key = _str(ctx, f"access.ssh_authorized_keys[{i}]", k).strip()
        try:
            sshkeys.parse(key)  # type, base64, the blob's own type name and fields (see sshkeys)
        except sshkeys.BadKey as exc:
            raise ctx.err(f"access.ssh_authorized_keys[{i}]", f"not an OpenSSH public key: {exc}",
                          hint="paste the whole line of the .pub file (ssh-keygen -y -f KEY prints it), "
                               "or leave the list empty to use ~/.ssh/id_*.pub") from None
        keys.append(key)
    pw = _str(ctx, "access.password_hash", d.get("password_hash"), optional=True)
    if pw is not None and not re.fullmatch(r"\$6\$(rounds=\d+\$)?[^$]*\$[./A-Za-z0-9]{86}", pw):
        raise ctx.err(
            "access.password_hash",
            "is not a crypt(3) SHA-512 hash ($6$salt$...)",
            hint="make one with: openssl passwd -6",
        )
    return AccessSpec(user=user, ssh_authorized_keys=tuple(keys), password_hash=pw)


def _known_timezones() -> frozenset[str]:
    """The IANA zone names this machine knows (empty when it has no tz database:
    then any well-formed name is accepted; the Pi image has the full database)."""
    import zoneinfo

    try:
        zones = zoneinfo.available_timezones()
    except OSError:
        return frozenset()
    return frozenset(zones | {"UTC"}) if zones else frozenset()


def _load_locale(ctx: _Ctx, raw: object) -> LocaleSpec:
    d = _mapping(ctx, "locale", raw, LocaleSpec.__dataclass_fields__)
    base = LocaleSpec()
    tz = _str(ctx, "locale.timezone", d.get("timezone", base.timezone))
    if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", tz):
        raise ctx.err("locale.timezone", f"{tz!r} is not a time zone name like Europe/Berlin")
    zones = _known_timezones()
    if zones and tz not in zones:
        close = difflib.get_close_matches(tz, sorted(zones), n=1)
        raise ctx.err("locale.timezone", f"{tz!r} is not a known time zone (IANA tz database)",
                      hint=f"did you mean {close[0]!r}?" if close else "see /usr/share/zoneinfo")
    keymap = _str(ctx, "locale.keymap", d.get("keymap", base.keymap))
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", keymap):
        raise ctx.err("locale.keymap", f"{keymap!r} is not a keymap name like us or de")
    country = _str(ctx, "locale.wifi_country", d.get("wifi_country"), optional=True)
    if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
        raise ctx.err("locale.wifi_country", f"{country!r} is not a two-letter country code like GB")
    return LocaleSpec(timezone=tz, keymap=keymap, wifi_country=country)


def _load_wifi(ctx: _Ctx, raw: object) -> WifiSpec | None:
    if raw is None:
        return None
    d = _mapping(ctx, "wifi", raw, WifiSpec.__dataclass_fields__)
    if "ssid" not in d:
        raise ctx.err("wifi.ssid", "required when wifi is set")
    if "psk_env" not in d:
        raise ctx.err("wifi.psk_env", "required when wifi is set (the passphrase is read from this environment variable)")
    psk_env = _env_name(ctx, "wifi.psk_env", d["psk_env"])
    return WifiSpec(
        ssid=_str(ctx, "wifi.ssid", d["ssid"]),
        psk_env=psk_env,
        hidden=_bool(ctx, "wifi.hidden", d.get("hidden", WifiSpec.__dataclass_fields__["hidden"].default)),  # ssid is required
    )


def _load_network(ctx: _Ctx, raw: object) -> NetworkSpec:
    d = _mapping(ctx, "network", raw, NetworkSpec.__dataclass_fields__)
    base = NetworkSpec()
    subnet = _net(ctx, "network.subnet", d.get("subnet", str(base.subnet)))
    gateway = _ip(ctx, "network.gateway", d.get("gateway", str(base.gateway)))
    pool = _range(ctx, "network.dhcp_pool", d.get("dhcp_pool", base.dhcp_pool.text))
    dns_raw = d.get("dns", [str(a) for a in base.dns])
    dns = tuple(_ip(ctx, f"network.dns[{i}]", v) for i, v in enumerate(_list(ctx, "network.dns", dns_raw)))
    if not dns:
        raise ctx.err("network.dns", "needs at least one DNS server")
    usable = (subnet.network_address, subnet.broadcast_address)
    if gateway not in subnet or gateway in usable:
        raise ctx.err("network.gateway", f"{gateway} is not a host address in network.subnet {subnet}")
    if not pool.within(subnet):
        raise ctx.err("network.dhcp_pool", f"{pool} is not inside network.subnet {subnet}")
    if gateway in pool:
        raise ctx.err("network.dhcp_pool", f"{pool} contains network.gateway {gateway}")
    for edge in usable:
        if edge in pool:
            raise ctx.err("network.dhcp_pool", f"{pool} contains {edge}, the network or broadcast address of {subnet}")
    return NetworkSpec(subnet=subnet, gateway=gateway, dhcp_pool=pool, dns=dns)


def _load_router(ctx: _Ctx, raw: object) -> RouterSpec:
    d = _mapping(ctx, "router", raw, [f for f in RouterSpec.__dataclass_fields__])
    base = RouterSpec()
    port = _int(ctx, "router.port", d.get("port"), optional=True)
    if port is not None and not 1 <= port <= 65535:
        raise ctx.err("router.port", f"{port} is not a TCP port")
    version = _str(ctx, "router.version", d.get("version", base.version))
    if version != "auto" and not re.fullmatch(r"[67](\.\d+)?", version):
        raise ctx.err("router.version", f"{version!r} is not auto, 6, 7 or 7.N (e.g. 7.20)")
    ports = tuple(_str(ctx, f"router.ports[{i}]", p) for i, p in enumerate(_list(ctx, "router.ports", d.get("ports", list(base.ports)))))
    if len(set(ports)) != len(ports):
        raise ctx.err("router.ports", "lists a port twice")
    ca_file = _str(ctx, "router.ca_file", d.get("ca_file"), optional=True)
    host = _str(ctx, "router.host", d.get("host", base.host))
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        hint = "give the port in router.port" if ":" in host else None
        raise ctx.err("router.host", f"{host!r} is not an IPv4 address or host name", hint=hint)
    return RouterSpec(
        kind=_enum(ctx, "router.kind", d.get("kind", base.kind.value), RouterKind),
        host=host,
        port=port,
        tls=_bool(ctx, "router.tls", d.get("tls", base.tls)),
        tls_verify=_bool(ctx, "router.tls_verify", d.get("tls_verify", base.tls_verify)),
        ca_file=ca_file,
        username=_str(ctx, "router.username", d.get("username", base.username)),
        password_env=_env_name(ctx, "router.password_env", d.get("password_env", base.password_env)),
        version=version,
        asn=_asn(ctx, "router.asn", d.get("asn", base.asn)),
        bridge=_str(ctx, "router.bridge", d.get("bridge", base.bridge)),
        ports=ports,
        pool_name=_str(ctx, "router.pool_name", d.get("pool_name", base.pool_name)),
        dhcp_server=_str(ctx, "router.dhcp_server", d.get("dhcp_server", base.dhcp_server)),
    )


def _load_pools(ctx: _Ctx, raw: object) -> tuple[PoolSpec, ...]:
    if raw is None:
        return ClusterSpec().pools
    pools = []
    buggy_default = PoolSpec.__dataclass_fields__["avoid_buggy_ips"].default  # PoolSpec has required fields
    for i, item in enumerate(_list(ctx, "cluster.pools", raw)):
        key = f"cluster.pools[{i}]"
        d = _mapping(ctx, key, item, PoolSpec.__dataclass_fields__)
        if "name" not in d:
            raise ctx.err(f"{key}.name", "required")
        name = _str(ctx, f"{key}.name", d["name"])
        if not _HOSTNAME_RE.fullmatch(name):
            raise ctx.err(f"{key}.name", f"{name!r} is not a valid Kubernetes name (lowercase RFC 1123 label)")
        addrs = _list(ctx, f"{key}.addresses", d.get("addresses"))
        if not addrs:
            raise ctx.err(f"{key}.addresses", "needs at least one CIDR block or FIRST-LAST range")
        pools.append(
            PoolSpec(
                name=name,
                addresses=tuple(_range(ctx, f"{key}.addresses[{j}]", a) for j, a in enumerate(addrs)),
                avoid_buggy_ips=_bool(ctx, f"{key}.avoid_buggy_ips", d.get("avoid_buggy_ips", buggy_default)),
            )
        )
    if not pools:
        raise ctx.err("cluster.pools", "needs at least one address pool for LoadBalancer services")
    return tuple(pools)


def _load_cluster(ctx: _Ctx, raw: object) -> ClusterSpec:
    d = _mapping(ctx, "cluster", raw, ClusterSpec.__dataclass_fields__)
    base = ClusterSpec()
    name = _str(ctx, "cluster.name", d.get("name", base.name))
    if not _HOSTNAME_RE.fullmatch(name):
        raise ctx.err("cluster.name", f"{name!r} is not a lowercase RFC 1123 label")
    k3s = _str(ctx, "cluster.k3s_version", d.get("k3s_version", base.k3s_version))
    if k3s not in _K3S_CHANNELS and not _K3S_VERSION_RE.fullmatch(k3s):
        raise ctx.err(
            "cluster.k3s_version",
            f"{k3s!r} is not a k3s release like {DEFAULT_K3S_VERSION} or a channel ({', '.join(_K3S_CHANNELS)})",
        )
    mlb = _str(ctx, "cluster.metallb_version", d.get("metallb_version", base.metallb_version))
    if not _METALLB_VERSION_RE.fullmatch(mlb):
        raise ctx.err("cluster.metallb_version", f"{mlb!r} is not a MetalLB release like {DEFAULT_METALLB_VERSION}")
    disable = tuple(_str(ctx, f"cluster.disable[{i}]", v) for i, v in enumerate(_list(ctx, "cluster.disable", d.get("disable", list(base.disable)))))
    for i, item in enumerate(disable):
        if item not in _KNOWN_DISABLE:
            raise ctx.err(f"cluster.disable[{i}]", f"{item!r} is not a k3s component ({', '.join(_KNOWN_DISABLE)})")
    extra = tuple(
        _str(ctx, f"cluster.extra_server_args[{i}]", v)
        for i, v in enumerate(_list(ctx, "cluster.extra_server_args", d.get("extra_server_args")))
    )
    ingress = _enum(ctx, "cluster.ingress", d.get("ingress", base.ingress.value), Ingress)
    bgp_raw = _mapping(ctx, "cluster.bgp", d.get("bgp"), BgpSpec.__dataclass_fields__)
    bgp_pw = _env_name(ctx, "cluster.bgp.password_env", bgp_raw.get("password_env"), optional=True)
    bgp = BgpSpec(
        asn=_asn(ctx, "cluster.bgp.asn", bgp_raw.get("asn", base.bgp.asn)),
        password_env=bgp_pw,
        allow_ibgp=_bool(ctx, "cluster.bgp.allow_ibgp", bgp_raw.get("allow_ibgp", base.bgp.allow_ibgp)),
    )
    install_sha = _str(ctx, "cluster.k3s_install_sha256", d.get("k3s_install_sha256"), optional=True)
    if install_sha is not None:
        install_sha = install_sha.lower()
        if not is_sha256(install_sha):
            raise ctx.err("cluster.k3s_install_sha256", f"{install_sha!r} is not a SHA-256 hex digest (64 hex digits)")
    return ClusterSpec(
        name=name,
        k3s_version=k3s,
        airgap=_bool(ctx, "cluster.airgap", d.get("airgap", base.airgap)),
        artifact_mirror=_mirror(ctx, "cluster.artifact_mirror", d.get("artifact_mirror")),
        k3s_install_sha256=install_sha,
        disable=disable,
        extra_server_args=extra,
        bgp=bgp,
        pools=_load_pools(ctx, d.get("pools")),
        metallb_version=mlb,
        ingress=ingress,
    )


def _mirror(ctx: _Ctx, key: str, value: object) -> str | None:
    """An artefact mirror's base URL, without the trailing slash.

    Plain http:// only for a loopback address: the k3s binary's checksum comes
    from the release's sha256sum file, which a mirror serves too, so the
    transport must be trustworthy (TLS, or this machine).
    """
    url = _str(ctx, key, value, optional=True)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ctx.err(key, f"{url!r} is not an http(s) URL like https://mirror.example/piimg")
    if parts.query or parts.fragment:
        raise ctx.err(key, f"{url!r}: a base URL has no ?query or #fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ctx.err(
            key,
            f"{url!r}: plain http:// is only accepted for a loopback address",
            hint="the mirror also serves the checksum files; use https://",
        )
    return str(url).rstrip("/")


def _cluster_mirror_from_env(ctx: _Ctx, cluster: ClusterSpec, env: Mapping[str, str]) -> ClusterSpec:
    """``cluster`` with ``$PIIMG_ARTIFACT_MIRROR`` as its mirror when the key is unset (the key
    wins), checked by the same rule: ``validate`` and ``build`` see one effective mirror."""
    if cluster.artifact_mirror is not None:
        return cluster
    value = env.get(MIRROR_ENV, "").strip()
    if not value:
        return cluster
    return dataclasses.replace(cluster, artifact_mirror=_mirror(ctx, f"${MIRROR_ENV}", value))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_nodes(ctx: _Ctx, raw: object) -> tuple[NodeSpec, ...]:
    if raw is None:
        return Spec().nodes
    nodes = []
    for i, item in enumerate(_list(ctx, "nodes", raw)):
        key = f"nodes[{i}]"
        d = _mapping(ctx, key, item, NodeSpec.__dataclass_fields__)
        for required in ("hostname", "address"):
            if required not in d:
                raise ctx.err(f"{key}.{required}", "required")
        hostname = _str(ctx, f"{key}.hostname", d["hostname"])
        if not _HOSTNAME_RE.fullmatch(hostname):
            raise ctx.err(
                f"{key}.hostname",
                f"{hostname!r} is not a valid hostname (RFC 1123: lowercase letters, digits and -, at most 63)",
            )
        mac = _str(ctx, f"{key}.mac", d.get("mac"), optional=True)
        if mac is not None:
            if not _MAC_RE.fullmatch(mac):
                raise ctx.err(f"{key}.mac", f"{mac!r} is not a MAC address like dc:a6:32:01:02:03")
            mac = mac.replace("-", ":").upper()
        nodes.append(
            NodeSpec(
                hostname=hostname,
                role=_enum(ctx, f"{key}.role", d.get("role", "server" if i == 0 else "agent"), Role),
                address=_ip(ctx, f"{key}.address", d["address"]),
                mac=mac,
            )
        )
    if not nodes:
        raise ctx.err("nodes", "needs at least one node")
    return tuple(nodes)


@dataclasses.dataclass(frozen=True)
class KeyFile:
    """One ``~/.ssh/id_*.pub``: its key line, or what is wrong with it."""

    path: Path
    line: str
    problem: str | None = None

    @property
    def shown(self) -> str:
        """``~/.ssh/id_ed25519.pub``: how the summary names it."""
        return f"~/.ssh/{self.path.name}"


def find_ssh_key_files(home: Path | None = None) -> list[KeyFile]:
    """The user's ``~/.ssh/id_*.pub`` files with a key line, each checked; empty or unreadable
    files are skipped (they hold no key to install)."""
    ssh_dir = (home or Path.home()) / ".ssh"
    found = []
    for pub in sorted(ssh_dir.glob("id_*.pub")):
        try:
            text = pub.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            found.append(KeyFile(pub, "", "not an OpenSSH public key: not UTF-8 text"))
            continue
        except OSError:
            continue
        if text:
            line = text.splitlines()[0].strip()
            try:
                sshkeys.parse(line)
            except sshkeys.BadKey as exc:
                found.append(KeyFile(pub, line, f"not an OpenSSH public key: {exc}"))
                continue
            found.append(KeyFile(pub, line))
    return found


def default_key_files(home: Path | None = None) -> list[KeyFile]:
    """The user's public key files (``~/.ssh/id_*.pub``), used when the spec lists no key; a
    file holding something else is refused by name."""
    found = find_ssh_key_files(home)
    for key in found:
        if key.problem:
            raise ConfigError("access.ssh_authorized_keys", f"{key.path}: {key.problem}",
                              hint="fix or remove that file, or list the keys in access.ssh_authorized_keys")
    return found


_TOP_KEYS: Final = ("image", "access", "locale", "wifi", "network", "router", "cluster", "nodes")


def parse(
    raw: object,
    *,
    file: str | None = None,
    paths: ProjectPaths | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Spec:
    """Turn the raw YAML document into a validated :class:`Spec` (of the project ``paths``,
    by default the current folder)."""
    env = os.environ if env is None else env
    ctx = _Ctx(file)
    if raw is not None and not isinstance(raw, dict):
        raise ctx.err("", f"{file or '<string>'}: expected a mapping of sections ({', '.join(_TOP_KEYS)}), "
                      f"got {_type_name(raw)}")
    top = _mapping(ctx, "", raw, _TOP_KEYS)
    access = _load_access(ctx, top.get("access"))
    if not access.ssh_authorized_keys:
        files = default_key_files(home)
        access = AccessSpec(access.user, tuple(k.line for k in files), access.password_hash,
                            ssh_key_files=tuple(k.shown for k in files))
    spec = Spec(
        image=_load_image(ctx, top.get("image")),
        access=access,
        locale=_load_locale(ctx, top.get("locale")),
        wifi=_load_wifi(ctx, top.get("wifi")),
        network=_load_network(ctx, top.get("network")),
        router=_load_router(ctx, top.get("router")),
        cluster=_cluster_mirror_from_env(ctx, _load_cluster(ctx, top.get("cluster")), env),
        nodes=_load_nodes(ctx, top.get("nodes")),
        paths=paths or ProjectPaths.in_folder(Path.cwd()),
        source=file or "<string>",
    )
    cross_check(ctx, spec)
    return dataclasses.replace(spec, env_secrets=resolve_env_secrets(ctx, spec, env))


def loads(
    text: str,
    *,
    file: str | None = None,
    paths: ProjectPaths | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Spec:
    """Parse and validate spec text (``file`` names it in messages)."""
    raw = yamlload.load_text(text, file=file)  # bounded, duplicate keys refused, errors in words
    return parse(raw, file=file, paths=paths, env=env, home=home)


def load(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Spec:
    """Load and validate the spec file at ``path``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:  # read no more than the bound: a wrong -c FILE may be huge
            data = fh.read(yamlload.MAX_BYTES + 1)
        if len(data) > yamlload.MAX_BYTES:
            raise ConfigError("", f"{path}: larger than {yamlload.MAX_BYTES // 1024} KiB: not a spec",
                              hint="a spec is a few kilobytes; is this the right file?")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file", hint="create one with: piimg init") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path}: cannot read: {exc}") from None
    return loads(text, file=str(path), paths=ProjectPaths.for_spec(path), env=env, home=home)


def summary(spec: Spec) -> list[str]:
    """A short human description of what the spec will build."""
    net, r, c = spec.network, spec.router, spec.cluster
    lines = [f"cluster {c.name}: {len(spec.nodes)} node(s), k3s {c.k3s_version}, ingress {c.ingress.value}"]
    for n in spec.nodes:
        mac = f", mac {n.mac}" if n.mac else ""
        lines.append(f"  {n.hostname:<20} {n.role.value:<6} {n.address}{mac}")
    if len(spec.servers) == 1:
        # k3s sets --cluster-init only with several servers declared (docs/cli/server.md: it
        # "Initialize[s] a new cluster using embedded Etcd"); without it k3s keeps SQLite (kine)
        lines.append("datastore: SQLite on the one server (declare every server now if you want HA later: "
                     "adding servers afterwards means restarting the first with --cluster-init)")
    else:
        lines.append(f"datastore: embedded etcd across {len(spec.servers)} servers")
    lines.append(f"network {net.subnet}, gateway {net.gateway}, DHCP pool {net.dhcp_pool}, DNS {', '.join(map(str, net.dns))}")
    for p in c.pools:
        lines.append(f"LB pool {p.name}: {', '.join(map(str, p.addresses))}")
    bgp_pw = f", TCP-MD5 key from ${c.bgp.password_env}" if c.bgp.password_env else ""
    lines.append(f"BGP: cluster AS {c.bgp.asn} <-> router AS {r.asn}{bgp_pw}")
    lines.append(
        f"router {r.username}@{r.host}:{r.api_port} ({'TLS' if r.tls else 'plain'}), RouterOS {r.version}, "
        f"bridge {r.bridge} on {', '.join(r.ports)}"
    )
    src = spec.image.url or f"{spec.image.os} from the Raspberry Pi Imager catalog"
    lines.append(f"image: {src} (init format {spec.image.init_format.value})")
    lines.append(f"access: user {spec.access.user}, {len(spec.access.ssh_authorized_keys)} SSH key(s), "
                 f"password login {'enabled' if spec.access.password_hash else 'disabled'}")
    files = spec.access.ssh_key_files or ("",) * len(spec.access.ssh_authorized_keys)
    for line, file in zip(spec.access.ssh_authorized_keys, files, strict=True):
        key = sshkeys.parse(line)  # checked at load; the fingerprint is what `ssh-keygen -l` shows
        lines.append(f"  key {key.type} {key.fingerprint}{f' {key.comment}' if key.comment else ''}"
                     f"{f' ({file})' if file else ''}")
    return lines


