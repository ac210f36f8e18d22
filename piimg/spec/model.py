"""The cluster spec (``piimg.yaml``): the typed, frozen model and its defaults.

Loading and per-field checks live in :mod:`piimg.spec.load`, the cross-field
rules in :mod:`piimg.spec.rules`; both run once, when the file is loaded, so a
build never fails halfway because of a bad value.

Why dataclasses and not pydantic: the rules here are mostly cross-field
network checks whose messages we want to word ourselves, one line each; the
model is small and frozen; and one dependency less keeps ``pipx install``
light on a Pi-owner's laptop.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from piimg import versions
from piimg.errors import ConfigError
from piimg.paths import ProjectPaths
from piimg.spec.secrets import EnvSecrets

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network

DEFAULT_CATALOG: Final = "https://downloads.raspberrypi.com/os_list_imagingutility_v4.json"
DEFAULT_K3S_VERSION: Final = versions.K3S_VERSION
DEFAULT_METALLB_VERSION: Final = versions.METALLB_VERSION


class InitFormat(enum.StrEnum):
    AUTO = "auto"
    SYSTEMD = "systemd"
    CLOUDINIT = "cloudinit"
    CLOUDINIT_RPI = "cloudinit-rpi"


class Arch(enum.StrEnum):
    """The OS image's userland architecture: which k3s binary the nodes get."""

    AUTO = "auto"
    ARM64 = "arm64"
    ARMHF = "armhf"


class Role(enum.StrEnum):
    SERVER = "server"
    AGENT = "agent"


class RouterKind(enum.StrEnum):
    """What the BGP router is: a MikroTik piimg configures over its API, or an
    FRR-based router (OPNsense/pfSense FRR plugin, VyOS, UniFi, OpenWrt, a
    Linux box) piimg writes bgpd configuration for."""

    ROUTEROS = "routeros"
    FRR = "frr"


class Ingress(enum.StrEnum):
    NGINX = "nginx"
    INGRESS_NGINX = "ingress-nginx"
    TRAEFIK = "traefik"
    NONE = "none"


@dataclass(frozen=True)
class AddressRange:
    """An inclusive IPv4 range; written ``a-b`` or as a CIDR block."""

    first: IPv4Address
    last: IPv4Address
    text: str

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, IPv4Address) and self.first <= addr <= self.last

    def overlaps(self, other: AddressRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def within(self, net: IPv4Network) -> bool:
        return self.first in net and self.last in net

    def touches(self, net: IPv4Network) -> bool:
        return self.first <= net.broadcast_address and net.network_address <= self.last

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ImageSpec:
    os: str = "raspios-lite-arm64"
    catalog: str = DEFAULT_CATALOG
    url: str | None = None
    sha256: str | None = None
    init_format: InitFormat = InitFormat.AUTO
    arch: Arch = Arch.AUTO


@dataclass(frozen=True)
class AccessSpec:
    user: str = "pi"
    ssh_authorized_keys: tuple[str, ...] = ()
    password_hash: str | None = None
    #: where each key came from when the spec listed none (``~/.ssh/id_ed25519.pub``, for the
    #: summary); empty when the keys are in the spec
    ssh_key_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocaleSpec:
    timezone: str = "Etc/UTC"
    keymap: str = "us"
    wifi_country: str | None = None


@dataclass(frozen=True)
class WifiSpec:
    ssid: str
    psk_env: str
    hidden: bool = False


@dataclass(frozen=True)
class NetworkSpec:
    subnet: IPv4Network = IPv4Network("10.0.2.0/23")
    gateway: IPv4Address = IPv4Address("10.0.2.1")
    dhcp_pool: AddressRange = AddressRange(IPv4Address("10.0.3.1"), IPv4Address("10.0.3.254"), "10.0.3.1-10.0.3.254")
    dns: tuple[IPv4Address, ...] = (IPv4Address("8.8.8.8"), IPv4Address("8.8.4.4"))


@dataclass(frozen=True)
class RouterSpec:
    kind: RouterKind = RouterKind.ROUTEROS
    host: str = "10.0.2.1"
    port: int | None = None
    tls: bool = True
    tls_verify: bool = True
    ca_file: str | None = None
    username: str = "admin"
    password_env: str = "PIIMG_ROUTER_PASSWORD"
    version: str = "auto"
    asn: int = 65530
    bridge: str = "bridge2"
    ports: tuple[str, ...] = ("ether6", "ether7", "ether8", "ether9", "ether10")
    pool_name: str = "lab-pool"
    dhcp_server: str = "dhcp2"

    @property
    def api_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8729 if self.tls else 8728


@dataclass(frozen=True)
class BgpSpec:
    asn: int = 64500
    password_env: str | None = None
    allow_ibgp: bool = False


@dataclass(frozen=True)
class PoolSpec:
    name: str
    addresses: tuple[AddressRange, ...]
    avoid_buggy_ips: bool = True


@dataclass(frozen=True)
class ClusterSpec:
    name: str = "homelab"
    k3s_version: str = DEFAULT_K3S_VERSION
    disable: tuple[str, ...] = ("traefik", "servicelb")
    extra_server_args: tuple[str, ...] = ()
    bgp: BgpSpec = BgpSpec()
    pools: tuple[PoolSpec, ...] = (
        PoolSpec("default", (AddressRange(IPv4Address("10.0.4.0"), IPv4Address("10.0.5.255"), "10.0.4.0/23"),)),
    )
    metallb_version: str = DEFAULT_METALLB_VERSION
    ingress: Ingress = Ingress.NGINX
    #: ship the release's airgap images tarball too: k3s then needs no registry
    airgap: bool = False
    #: base URL that holds every upstream artefact under ``<host>/<path>``;
    #: ``$PIIMG_ARTIFACT_MIRROR`` when the key is unset (filled in at load)
    artifact_mirror: str | None = None
    #: SHA-256 of install.sh at ``k3s_version``, for versions piimg does not pin
    k3s_install_sha256: str | None = None


@dataclass(frozen=True)
class NodeSpec:
    hostname: str
    role: Role
    address: IPv4Address
    mac: str | None = None


@dataclass(frozen=True)
class Spec:
    """A loaded, validated cluster spec."""

    image: ImageSpec = ImageSpec()
    access: AccessSpec = AccessSpec()
    locale: LocaleSpec = LocaleSpec()
    wifi: WifiSpec | None = None
    network: NetworkSpec = NetworkSpec()
    router: RouterSpec = RouterSpec()
    cluster: ClusterSpec = ClusterSpec()
    nodes: tuple[NodeSpec, ...] = (NodeSpec("k8s-master", Role.SERVER, IPv4Address("10.0.2.10")),)
    #: the project's files (build/, .piimg/); relative paths in the spec (image.url) are relative to paths.root
    paths: ProjectPaths = field(default_factory=lambda: ProjectPaths.in_folder(Path.cwd()), compare=False)
    source: str = field(default="<defaults>", compare=False)
    #: secrets from the environment variables named by ``*_env`` keys, read once at load
    env_secrets: EnvSecrets = field(default_factory=EnvSecrets, compare=False, repr=False)

    @property
    def servers(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role is Role.SERVER)

    @property
    def initial_server(self) -> NodeSpec:
        """The first server: it initialises the cluster, the others join it."""
        return self.servers[0]

    def node(self, hostname: str) -> NodeSpec:
        for node in self.nodes:
            if node.hostname == hostname:
                return node
        choices = ", ".join(n.hostname for n in self.nodes)
        raise ConfigError("nodes", f"no node named {hostname!r} (nodes: {choices})")

    @property
    def prefixlen(self) -> int:
        return self.network.subnet.prefixlen

