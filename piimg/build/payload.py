"""What piimg writes onto a node's boot partition, as plain bytes by path.

Pure functions of the spec, the node, the secrets and the init format; the
image code (:mod:`piimg.build.images`) only copies the result into the
FAT file system. Layout on the boot partition::

    ssh                         empty flag file: sshd enabled at boot
    cmdline.txt                 edited (cgroup flags, first-boot hook)
    firstrun.sh                 systemd format only
    user-data meta-data network-config   cloud-init formats only
    piimg/firstboot/*.py        the first-boot program (stdlib only)
    piimg/node.json             this node's settings and secrets
    piimg/piimg-firstboot.service
    piimg/manifests/*.yaml      initial server only: MetalLB, ingress, ... (charts inline)
    piimg/k3s/install.sh        k3s's install script at the pinned tag (verified)
    piimg/k3s/k3s               the k3s binary of the image's architecture (verified)
    piimg/k3s/images/*.tar.zst  cluster.airgap only: the release's airgap images

Big files are given as :class:`~pathlib.Path` (read when written), not bytes.
"""

from __future__ import annotations

import hashlib
import secrets as _random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import piimg.firstboot
from piimg.build import cmdline
from piimg.errors import ConfigError
from piimg.firstboot.identity import HOST_KEY_SECRET, NODE_PASSWORD_SECRET, TLS_SECRET_PREFIX
from piimg.firstboot.nodeconf import (
    INSTALL_DIR,
    K3S_BINARY,
    K3S_DIR,
    K3S_IMAGES,
    K3S_SCRIPT,
    PAYLOAD_DIR,
    UNIT_NAME,
    IngressRef,
    K3sConfig,
    NodeConfig,
)
from piimg.manifests import bgp_password, ingress_service, k3s_server_url, render, render_addons, render_k3s_config
from piimg.spec.model import InitFormat, NodeSpec, Role, Spec
from piimg.spec.secrets import Secrets
from piimg.versions import K3S_REGISTRY_HOST, METALLB_NAMESPACE

if TYPE_CHECKING:
    from piimg.fetch.artifacts import ClusterArtifacts

#: k3s needs the memory cgroup; Raspberry Pi OS kernels leave it off unless asked
#: (the most common reason a k3s node never becomes Ready on a Pi).
CGROUP_WORDS: Final = ("cgroup_memory=1", "cgroup_enable=memory")
#: rpi-imager's first-run hook (rpi-imager@72ad1179:src/downloadthread.cpp:2590):
#: run the script instead of the normal boot target, then reboot. firstrun.sh
#: removes these words again. The path is where the FAT is mounted on Bookworm
#: and later (/boot/firmware), not Imager's /boot/firstrun.sh: that one works
#: only because Bookworm's first boot is init=.../firstboot and the initramfs
#: imager_fixup rewrites it on the card (raspberrypi-sys-mods@3af395f6:
#: initramfs-tools/scripts/local-bottom/imager_fixup:13,26); on an image whose
#: first boot is a systemd boot it names a missing file, kernel-command-line.service
#: fails and its FailureAction=exit shuts the Pi down. The fixup's grep does not
#: match this spelling, so it leaves cmdline.txt and firstrun.sh alone.
SYSTEMD_RUN_WORDS: Final = (
    "systemd.run=/boot/firmware/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
)
SYSTEMD_RUN_KEYS: Final = ("systemd.run", "systemd.run_success_action", "systemd.unit")
#: The Wi-Fi regulatory domain as rpi-imager sets it (rpi-imager@72ad1179:
#: src/imagewriter.cpp:3891-3897): the kernel allows the country's channels
#: from the first moment, before any user-space tool runs.
REGDOM_KEY: Final = "cfg80211.ieee80211_regdom"
FIRSTBOOT_DIR: Final = Path(piimg.firstboot.__file__).parent


@dataclass(frozen=True)
class BootEdits:
    """Everything to write into one node's boot partition."""

    files: dict[str, bytes | Path]  # path on the boot partition -> content (created or replaced)
    cmdline_add: tuple[str, ...]  # words cmdline.txt must carry, once
    cmdline_drop_keys: tuple[str, ...]  # keys of words removed first (stale values of a rebuild)
    remove: tuple[str, ...] = ()  # files or folders removed first (payload of an earlier build)
    instance_id: str | None = None

    def apply_cmdline(self, text: bytes) -> bytes:
        return cmdline.edit(text, add=self.cmdline_add, drop_keys=self.cmdline_drop_keys).encode()


def firstboot_files() -> dict[str, bytes]:
    """The first-boot package: every ``.py`` of ``piimg/firstboot`` (no caches)."""
    return {f"firstboot/{p.name}": p.read_bytes() for p in sorted(FIRSTBOOT_DIR.glob("*.py"))}


def _ingress(spec: Spec) -> IngressRef | None:
    ref = ingress_service(spec)
    return IngressRef(namespace=ref[0], service=ref[1]) if ref else None


def node_config(
    spec: Spec,
    node: NodeSpec,
    secrets: Secrets,
    fmt: InitFormat,
    manifests: list[str],
    artifacts: ClusterArtifacts | None = None,
) -> NodeConfig:
    initial = node == spec.initial_server
    node_secrets = {"k3s_token": secrets.k3s_token}
    bgp = bgp_password(spec)
    if bgp:
        node_secrets["bgp_password"] = bgp
    public_key = None
    if secrets.identity is not None:
        mine = secrets.identity.node(node.hostname)
        node_secrets[NODE_PASSWORD_SECRET] = mine.node_password
        node_secrets[HOST_KEY_SECRET] = mine.host_key.private_openssh.decode()
        public_key = mine.host_key.public_line
        if node.role is Role.SERVER:
            # Every server gets the same CAs: HA servers share them (k3s would
            # otherwise take them from the first server's datastore).
            for name, data in sorted(secrets.identity.ca.server_files.items()):
                node_secrets[TLS_SECRET_PREFIX + name] = data.decode()
    return NodeConfig(
        cluster=spec.cluster.name,
        hostname=node.hostname,
        role=node.role.value,
        initial_server=initial,
        address=str(node.address),
        prefixlen=spec.prefixlen,
        gateway=str(spec.network.gateway),
        dns=[str(d) for d in spec.network.dns],
        user=spec.access.user,
        init_format=fmt.value,
        k3s=_k3s_config(spec, node, secrets, initial, artifacts),
        metallb_namespace=METALLB_NAMESPACE,
        secrets=node_secrets,
        ssh_host_public_key=public_key,
        manifests=manifests,
        ingress=_ingress(spec) if initial else None,
        timezone=spec.locale.timezone,
    )


def _k3s_config(
    spec: Spec, node: NodeSpec, secrets: Secrets, initial: bool, artifacts: ClusterArtifacts | None
) -> K3sConfig:
    conf = K3sConfig(
        version=spec.cluster.k3s_version,
        config_yaml=render_k3s_config(spec, node, secrets),
        registry_host=K3S_REGISTRY_HOST,
        server_url=None if initial else k3s_server_url(spec),
    )
    if artifacts is not None:
        k = artifacts.k3s
        conf.arch = k.arch
        conf.install_sha256 = k.install_sh.sha256
        conf.binary_sha256 = k.binary.sha256
        if k.airgap_images is not None:
            conf.airgap_images = k.airgap_images.name
            conf.airgap_sha256 = k.airgap_images.sha256
            conf.registry_host = None
    return conf


def k3s_files(artifacts: ClusterArtifacts) -> dict[str, bytes | Path]:
    """The k3s files of the payload (install script, binary, airgap images)."""
    k = artifacts.k3s
    files: dict[str, bytes | Path] = {
        f"{PAYLOAD_DIR}/{K3S_DIR}/{K3S_SCRIPT}": k.install_sh.path,
        f"{PAYLOAD_DIR}/{K3S_DIR}/{K3S_BINARY}": k.binary.path,
    }
    if k.airgap_images is not None:
        files[f"{PAYLOAD_DIR}/{K3S_DIR}/{K3S_IMAGES}/{k.airgap_images.name}"] = k.airgap_images.path
    return files


def common_files(artifacts: ClusterArtifacts | None = None) -> dict[str, bytes | Path]:
    """The payload files that are the same on every node of a build, whatever the node:
    the first-boot program, its unit and the k3s files. ``piimg build`` writes
    them once, into the layer all nodes share (:mod:`piimg.image.overlay`)."""
    files: dict[str, bytes | Path] = {f"{PAYLOAD_DIR}/{name}": data for name, data in firstboot_files().items()}
    unit = FIRSTBOOT_DIR / UNIT_NAME
    if unit.is_file():
        files[f"{PAYLOAD_DIR}/{UNIT_NAME}"] = unit.read_bytes()
    if artifacts is not None:
        files.update(k3s_files(artifacts))
    return files


def payload_files(
    spec: Spec, node: NodeSpec, secrets: Secrets, fmt: InitFormat, artifacts: ClusterArtifacts | None = None
) -> dict[str, bytes | Path]:
    """``piimg/...`` files (paths relative to the boot partition).

    ``artifacts`` (what :func:`piimg.fetch.artifacts.obtain_cluster_artifacts`
    returns) puts k3s on the card and the charts into the manifests; without
    them first boot refuses to install k3s (it downloads nothing itself).
    """
    files = common_files(artifacts)
    manifests: list[str] = []
    if node == spec.initial_server:
        charts = artifacts.charts if artifacts is not None else None
        for name, text in sorted(render_addons(spec, charts=charts).items()):
            files[f"{PAYLOAD_DIR}/manifests/{name}"] = text.encode()
            manifests.append(name)
    files[f"{PAYLOAD_DIR}/node.json"] = node_config(spec, node, secrets, fmt, manifests, artifacts).to_json().encode()
    return files


def wifi_psk(ssid: str, passphrase: str) -> str:
    """The WPA2 pre-shared key (PBKDF2-HMAC-SHA1, 4096 rounds, salted by the SSID).

    What rpi-imager writes instead of the passphrase, so the passphrase itself
    never lands on the card; wpa_supplicant and NetworkManager take the 64 hex
    digits as the key.
    """
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


def _wifi(spec: Spec, node: NodeSpec) -> dict[str, Any] | None:
    if spec.wifi is None:
        return None
    passphrase = spec.env_secrets.wifi_passphrase
    if passphrase is None:  # a Spec built by hand, not loaded: load() always reads it
        raise ConfigError("wifi.psk_env", f"environment variable {spec.wifi.psk_env} was not read when the spec was loaded")
    return {
        "ssid": spec.wifi.ssid,
        "psk": wifi_psk(spec.wifi.ssid, passphrase),
        "hidden": spec.wifi.hidden,
        "country": spec.locale.wifi_country or "",
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node.hostname}.{spec.wifi.ssid}.piimg")),
    }


def _ssh_host_key(node: NodeSpec, secrets: Secrets) -> dict[str, str] | None:
    if secrets.identity is None:
        return None
    key = secrets.identity.node(node.hostname).host_key
    return {"private": key.private_openssh.decode(), "public": key.public_line}


def _context(spec: Spec, node: NodeSpec, secrets: Secrets) -> dict[str, Any]:
    return {
        "ssh_host_key": _ssh_host_key(node, secrets),
        "wifi": _wifi(spec, node),
        "hostname": node.hostname,
        "role": node.role.value,
        "address": str(node.address),
        "prefixlen": spec.prefixlen,
        "gateway": str(spec.network.gateway),
        "dns": [str(d) for d in spec.network.dns],
        "user": spec.access.user,
        "password_hash": spec.access.password_hash or "",
        "ssh_keys": list(spec.access.ssh_authorized_keys),
        "timezone": spec.locale.timezone,
        "keymap": spec.locale.keymap,
        "wifi_country": (spec.locale.wifi_country or "").upper(),
        "payload_dir": PAYLOAD_DIR,
        "install_dir": INSTALL_DIR,
        "unit": UNIT_NAME,
    }


def _cloudinit_install_cmd() -> str:
    d, p = INSTALL_DIR, PAYLOAD_DIR
    return (
        f"B=/boot/firmware; if [ ! -f {d}/.installed ]; then install -d -m 0700 -o root -g root {d} && "
        f'cp -R "$B/{p}/." {d}/ && chown -R root:root {d} && chmod -R go-rwx {d} && touch {d}/.installed; fi'
    )


#: cloud-init runcmd: the keymap through imager_custom where the image has it,
#: else straight into /etc/default/keyboard; never a failing command.
KEYMAP_CMD: Final = (
    "IC=/usr/lib/raspberrypi-sys-mods/imager_custom; "
    'if [ -x "$IC" ]; then "$IC" set_keymap "$1" || true; '
    "elif [ -f /etc/default/keyboard ]; then "
    "sed -i \"s/^XKBLAYOUT=.*/XKBLAYOUT=\\\"$1\\\"/\" /etc/default/keyboard; fi"
)
#: cloud-init runcmd: the Wi-Fi radio on, as rpi-imager's runcmd does
#: (customization_generator.cpp:790-792), plus NetworkManager's radio switch.
RADIO_CMD: Final = (
    "rfkill unblock wifi 2>/dev/null; "
    'for f in /var/lib/systemd/rfkill/*:wlan; do if [ -f "$f" ]; then echo 0 >"$f"; fi; done; '
    "nmcli radio wifi on 2>/dev/null; true"
)


def new_instance_id(node: NodeSpec) -> str:
    """Unique per build: cloud-init runs its once-per-instance modules again after a re-flash."""
    return f"piimg-{node.hostname}-{_random.token_hex(6)}"


def _regdom_words(spec: Spec) -> tuple[str, ...]:
    country = spec.locale.wifi_country
    return (f"{REGDOM_KEY}={country.upper()}",) if country else ()


def boot_edits(
    spec: Spec,
    node: NodeSpec,
    secrets: Secrets,
    fmt: InitFormat,
    *,
    instance_id: str | None = None,
    artifacts: ClusterArtifacts | None = None,
) -> BootEdits:
    """The complete set of boot-partition changes for ``node``."""
    ctx = _context(spec, node, secrets)
    files: dict[str, bytes | Path] = {"ssh": b""}
    files.update(payload_files(spec, node, secrets, fmt, artifacts))
    regdom = _regdom_words(spec)
    drop = ("ds", *SYSTEMD_RUN_KEYS, *((REGDOM_KEY,) if regdom else ()))
    if fmt is InitFormat.SYSTEMD:
        files["firstrun.sh"] = render("firstrun.sh.j2", **ctx).encode()
        return BootEdits(files, (*CGROUP_WORDS, *regdom, *SYSTEMD_RUN_WORDS), drop, remove=(PAYLOAD_DIR,))
    iid = instance_id or new_instance_id(node)
    files["user-data"] = render(
        "user-data.j2", install_cmd=_cloudinit_install_cmd(), keymap_cmd=KEYMAP_CMD, radio_cmd=RADIO_CMD, **ctx
    ).encode()
    files["meta-data"] = render("meta-data.j2", instance_id=iid, **ctx).encode()
    files["network-config"] = render("network-config.j2", **ctx).encode()
    return BootEdits(
        files, (*CGROUP_WORDS, *regdom, f"ds=nocloud;i={iid}"), drop, remove=(PAYLOAD_DIR, "firstrun.sh"), instance_id=iid
    )
