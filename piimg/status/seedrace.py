"""A node that answers SSH but is not the node piimg built: the cloud-init seed race.

On Raspberry Pi OS Trixie, ``cloud-init-local`` can run before ``/boot/firmware``
is mounted (cloud-init#6614, reproduced "reliably" on a Pi 5 with NVMe; the
unit has ``DefaultDependencies=no``, ``Before=sysinit.target`` and no
``RequiresMountsFor``: cloud-init@25.2:``systemd/cloud-init-local.service.tmpl``).
NoCloud's ``seedfrom`` read then fails, cloud-init falls back to the None data
source and ignores the seed: no user with your keys, not piimg's SSH host key,
no static address, no first-boot service. piimg cannot prevent it from the
boot partition. Seen from here the node answers SSH but presents another host
key than the one piimg generated, or refuses your key. A power cycle makes
cloud-init read the seed again (it still carries a new instance-id).

More often such a node does not answer at its static address at all: without
the seed's ``network-config`` NetworkManager takes a DHCP lease on eth0 and the
hostname stays the image's default ``raspberrypi`` (pi-gen ``build.sh``:
``TARGET_HOSTNAME=${TARGET_HOSTNAME:-raspberrypi}``; Pi OS ships avahi-daemon,
so ``raspberrypi.local`` answers). :func:`unreachable_hint` says where to look.

Facts in, verdict out: :func:`judge` is pure; ``checks.check_nodes`` gathers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from piimg.status.model import Check, State
from piimg.status.ssh import SshFailed

CLOUDINIT_FORMATS: Final = frozenset({"cloudinit", "cloudinit-rpi"})
#: SSH failures a node without its user-data shows: its own host key, no authorised key.
SIGNS: Final = {
    SshFailed.HOST_KEY_CHANGED: "presents another SSH host key than the one piimg put on the card",
    SshFailed.LOGIN_REFUSED: "refuses your SSH key",
}
HINT: Final = (
    "power-cycle the node: cloud-init reads the boot partition again at the next boot "
    "(cloud-init#6614: on Raspberry Pi OS Trixie cloud-init can run before /boot/firmware is mounted); "
    "if it keeps happening, flash the newest Raspberry Pi OS image"
)


@dataclass(frozen=True)
class NodeAccess:
    """What reaching one node over SSH showed."""

    hostname: str
    #: the init format the node's image was built with (build/last.json); None if unknown
    init_format: str | None
    #: how reading its first-boot status failed (an :class:`SshFailed` kind)
    ssh_failure: str


#: Said when a cloud-init node does not answer at its static address (cloud-init#6614: the seed was
#: not read, so neither the address nor the hostname from the card were applied).
UNREACHABLE_HINT: Final = (
    "if it stays unreachable after ~10 minutes it may be the cloud-init seed race (cloud-init#6614): "
    "the Pi booted with the image defaults (hostname raspberrypi, an address from DHCP) instead of the card's "
    "settings; look for it in the router's DHCP leases (RouterOS: /ip dhcp-server lease print) or "
    "`ping raspberrypi.local`, then power-cycle it once so cloud-init reads the boot partition again; "
    "if it comes up as raspberrypi again, flash the newest Raspberry Pi OS image; if it is in no lease at all, "
    "it is not the seed race: check power, the network cable and the HDMI console"
)


def unreachable_hint(init_format: str | None) -> str | None:
    """What to try when a node built with ``init_format`` does not answer at its address.

    Only cloud-init nodes can miss their seed (cloud-init#6614); a systemd-format
    card runs ``firstrun.sh`` from the kernel command line instead, and without a
    build record piimg does not guess.
    """
    return UNREACHABLE_HINT if init_format in CLOUDINIT_FORMATS else None


def judge(access: NodeAccess) -> Check | None:
    """The seed-race verdict, or None when the facts do not point at it."""
    sign = SIGNS.get(access.ssh_failure)
    if sign is None or access.init_format not in CLOUDINIT_FORMATS:
        return None
    return Check(
        f"firstboot {access.hostname}",
        State.FAIL,
        f"the node answers SSH but {sign}: cloud-init did not apply the card's user-data, most likely "
        f"because it read the boot partition before it was mounted (cloud-init seed race); {HINT}",
    )
