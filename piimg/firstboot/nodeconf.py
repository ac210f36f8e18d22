"""``node.json``: the contract between the host-side builder and first boot.

The builder writes it into the payload (``/boot/firmware/piimg/node.json``);
first boot reads it from ``/opt/piimg/node.json``. Stdlib only, Python 3.9+.

Secret-bearing parts of the payload: ``secrets`` in node.json (the k3s
token, BGP password, k3s node password, the node's SSH host key and, on
servers, the k3s CA files as ``k3s_tls/<path>``), every file under
``manifests/`` (a BGP password Secret) and the host-key block of
``user-data``: listed once in :mod:`firstboot.scrub`, whose step, the first,
removes them from the boot partition once the root-only copy is checked.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

SCHEMA = 1
PAYLOAD_DIR = "piimg"  # folder on the boot partition
INSTALL_DIR = "/opt/piimg"  # where the first-run hook copies the payload
UNIT_NAME = "piimg-firstboot.service"
# k3s in the payload: PAYLOAD_DIR/K3S_DIR/{K3S_SCRIPT, K3S_BINARY, K3S_IMAGES/<tarball>}
K3S_DIR = "k3s"
K3S_SCRIPT = "install.sh"
K3S_BINARY = "k3s"
K3S_IMAGES = "images"


@dataclass
class K3sConfig:
    """k3s as the build verified it; first boot checks the payload's files against these digests."""

    version: str  # a release, e.g. v1.36.3+k3s1
    config_yaml: str  # content of /etc/rancher/k3s/config.yaml (token included)
    # DNS must resolve this before k3s pulls its images: piimg.versions.K3S_REGISTRY_HOST,
    # written by the builder; None with the airgap images on the card.
    registry_host: Optional[str]
    server_url: Optional[str] = None  # agents and joining servers: https://SERVER:6443
    arch: str = ""  # arm64 | armhf: the build of the payload's binary
    install_sha256: str = ""  # of k3s/install.sh (the script at the version's tag)
    binary_sha256: str = ""  # of k3s/k3s (per the release's sha256sum file)
    airgap_images: Optional[str] = None  # file name under k3s/images/ (cluster.airgap)
    airgap_sha256: Optional[str] = None


def _missing(cls: Any, data: Dict[str, Any], prefix: str = "") -> List[str]:
    """The fields of dataclass ``cls`` without a default that ``data`` lacks, as ``prefix + name``."""
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    return [prefix + name for name in required if name not in data]


@dataclass
class IngressRef:
    namespace: str
    service: str


@dataclass
class NodeConfig:
    cluster: str
    hostname: str
    role: str  # "server" | "agent"
    initial_server: bool
    address: str
    prefixlen: int
    gateway: str
    dns: List[str]
    user: str
    init_format: str  # "systemd" | "cloudinit" | "cloudinit-rpi"
    k3s: K3sConfig
    # where the server waits for MetalLB's pods: piimg.versions.METALLB_NAMESPACE,
    # written by the builder (the payload carries piimg/firstboot only, not versions.py)
    metallb_namespace: str
    # k3s_token, bgp_password, node_password, ssh_host_ed25519_key, k3s_tls/<path below server/tls>
    secrets: Dict[str, str] = field(default_factory=dict)
    ssh_host_public_key: Optional[str] = None  # "ssh-ed25519 AAAA... root@host", the public half of the above
    manifests: List[str] = field(default_factory=list)  # file names under manifests/
    ingress: Optional[IngressRef] = None  # server only: Service to wait for
    timezone: str = "Etc/UTC"
    # Optional overrides of first boot's wait limits in seconds, by name
    # (network, clock, server, node, metallb, ingress, install, command, http,
    # backoff_initial, backoff_max); see firstboot.context.DEFAULT_TIMEOUTS.
    timeouts: Dict[str, float] = field(default_factory=dict)
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "NodeConfig":
        if data.get("schema") != SCHEMA:
            raise ValueError("node.json: unsupported schema %r (expected %d)" % (data.get("schema"), SCHEMA))
        missing = _missing(cls, data)
        if isinstance(data.get("k3s"), dict):
            missing += _missing(K3sConfig, data["k3s"], "k3s.")
        if missing:
            # node.json and this code come from the same build; a gap means a hand-made or mixed payload
            raise ValueError("node.json: missing %s (rebuild the image with piimg build)" % ", ".join(missing))
        data = dict(data)
        data["k3s"] = K3sConfig(**data["k3s"])
        if data.get("ingress") is not None:
            data["ingress"] = IngressRef(**data["ingress"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "NodeConfig":
        return cls.from_dict(json.loads(text))
