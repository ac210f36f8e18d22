"""A Raspberry-Pi-OS-like disk image with a real (amd64) Debian bookworm inside.

What is under test end to end is systemd, cloud-init, NetworkManager and
piimg's scripts, not the CPU, so amd64 is enough (arm64 through qemu-user
debootstrap takes ~15 min here). The layout copies Raspberry Pi OS:

- MBR, partition 1 FAT32 labelled ``bootfs`` at 8 MiB, partition 2 ext4
  ``rootfs``; ``/etc/fstab`` mounts the FAT at ``/boot/firmware`` by PARTUUID.
- ``cmdline.txt`` and ``config.txt`` are the released image's own
  (:mod:`tests.piosfacts`, from pi-gen at cited commits) with three changes for
  qemu: ``console=ttyS0,115200`` instead of ``serial0``/``tty1`` and no
  ``quiet`` (the serial log is the test's only view of a boot), and
  ``kernel=``/``initramfs`` lines in config.txt (qemu plays the firmware: it
  loads the kernel and initrd named there from the FAT).
- a user ``pi`` with uid 1000, ssh installed but disabled (Pi OS enables it at
  boot when the FAT holds an ``ssh`` flag file: ``sshswitch.service``, of
  which this image carries a stand-in).

Three flavours, two root filesystems:

- ``systemd`` (Bookworm, Debian bookworm): no cloud-init
  (``/etc/cloud/cloud-init.disabled``); boot 1 is ``init=.../firstboot``,
  boot 2 runs the ``systemd.run=`` hook, boot 3 is a normal boot.
- ``cloudinit`` (current Trixie, Debian trixie): no ``init=``; the FAT carries
  the release's placeholder ``user-data``, ``meta-data``, ``network-config``;
  boot 1 is already a systemd boot running cloud-init.
- ``cloudinit-2025-10-01`` (the first Trixie release): the same boot order,
  but the FAT carries no seed files at all.

Stand-ins for what Raspberry Pi OS has and plain Debian lacks (and for the
internet, which the guest cannot reach):

- ``init=/usr/lib/raspberrypi-sys-mods/firstboot`` (systemd flavour): Pi OS
  grows the root partition there on the very first boot; the stand-in only
  takes itself off ``cmdline.txt`` and reboots, as Pi OS does. Nothing stands
  in for rpi-imager's ``/boot/firstrun.sh`` path fix-up: piimg hooks
  ``/boot/firmware/firstrun.sh``, the path the FAT really has.
- ``/usr/lib/raspberrypi-sys-mods/imager_custom``, ``userconf`` and
  ``cancel-rename`` are absent: firstrun.sh and user-data take their plain-Debian
  fallback paths.
- cloud-init's NoCloud configuration is pi-gen's real ``99_raspberry-pi.cfg``
  (``seedfrom: file:///boot/firmware``); Pi OS's distro renderers (netplan for
  NetworkManager) come from a second file. A drop-in orders
  ``cloud-init-local`` after the FAT's mount: without it the upstream race
  cloud-init#6614 (the seed read before ``/boot/firmware`` is mounted) would
  make the test flaky; ``piimg status`` diagnoses that race on real Pis.
- ``sshswitch.service``: enables ssh when the FAT holds an ``ssh`` file.
- ``regenerate_ssh_host_keys.service`` and its script: Raspberry Pi OS's own,
  verbatim, enabled: they replace every SSH host key at the first normal boot.
- eth0: predictable interface names are off (the Pi's NIC is eth0).
- NTP: ``piimg-e2e-timesync.service`` marks the clock synchronised (the guest
  clock comes from the host; no UDP leaves qemu's restricted network).
- ``piimg-e2e-probe.service``: test instrumentation; once a normal boot has
  settled (first-boot service finished) it prints a summary line to the
  serial console and powers off, which ends the boot. When first boot is not
  done it first prints the guest's network state and logs
  (``netdiag.sh``, lines ``PIIMG-E2E-DIAG:``).

The debootstrap result is cached under ``$PIIMG_E2E_CACHE`` (default
``~/.cache/piimg/e2e``) keyed by suite, mirror and package list;
``PIIMG_E2E_FRESH=1`` (CI) builds it anew. Needs root (debootstrap, chroot).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests import piosfacts

SUITE: Final = "bookworm"  # the machine's own release: its apt mirror carries it
# Raspberry Pi OS follows Debian: Bookworm images use the systemd.run= hook,
# the cloud-init images are Trixie (cloud-init 25; Bookworm's 22.4 lacks e.g.
# `to: default` routes in network-config v2). Same mirror, another suite.
FLAVOUR_SUITES: Final = {"systemd": "bookworm", "cloudinit": "trixie", "cloudinit-2025-10-01": "trixie"}
#: the Raspberry Pi OS release each flavour's boot partition copies (tests/piosfacts.py)
FLAVOUR_RELEASES: Final = {"systemd": "bookworm", "cloudinit": "trixie", "cloudinit-2025-10-01": "trixie-2025-10-01"}
ARCH: Final = "amd64"
PACKAGES: Final = (
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",
    "udev",
    "dbus",
    "kmod",
    "iproute2",
    "netbase",
    "python3",
    # debootstrap resolves no virtual packages or alternatives: name the providers
    "python3-cffi-backend",  # python3-cryptography -> python3-cffi-backend-api-*
    "libpam-systemd",  # polkitd (network-manager) -> default-logind | logind
    "openssh-server",
    "network-manager",
    "cloud-init",
    "sudo",
    "ca-certificates",
    "curl",
    "linux-image-amd64",
    "initramfs-tools",
    "dosfstools",
    "e2fsprogs",
)
# Raspberry Pi OS Trixie renders cloud-init's network-config through netplan
# (NetworkManager backend); cloud-init's own v2 parser, used for the other
# renderers, rejects netplan-only syntax such as `to: default` routes.
# cloud-init's keyboard module needs keyboard-configuration + console-setup
# (setupcon), which Pi OS has.
SUITE_PACKAGES: Final = {"bookworm": (), "trixie": ("netplan.io", "keyboard-configuration", "console-setup")}
FLAVOURS: Final = ("systemd", "cloudinit", "cloudinit-2025-10-01")


def packages(suite: str) -> tuple[str, ...]:
    return PACKAGES + SUITE_PACKAGES.get(suite, ())

MIB: Final = 1024 * 1024
BOOT_START: Final = 8 * MIB  # Raspberry Pi OS puts bootfs at 8 MiB
BOOT_SIZE: Final = 512 * MIB  # as Bookworm images (4 KiB clusters: enough for FAT32)
ROOT_SIZE: Final = 2048 * MIB
HOSTNAME: Final = "raspberrypi"

# qemu plays the firmware: it loads the kernel and initrd named here from the FAT
# (appended to the release's real config.txt, tests/piosfacts.py).
QEMU_CONFIG: Final = """\

# piimg e2e: qemu loads these from the FAT, playing the Pi firmware
[all]
kernel=vmlinuz
initramfs initrd.img followkernel
"""

# Pi OS Trixie's NoCloud configuration is the real file (tests/piosfacts.py:
# pi-gen's 99_raspberry-pi.cfg of the 2025-10-01 release, seedfrom
# file:///boot/firmware; later releases moved it into rpi-cloud-init-mods,
# which is not public). This one only names the renderers Pi OS has: netplan
# hands network-config to NetworkManager.
RENDERERS_CFG: Final = """\
# piimg e2e: as on Raspberry Pi OS, netplan renders network-config for NetworkManager
system_info:
  network:
    renderers: [ netplan, network-manager, networkd ]
"""

# Stand-in for raspberrypi-sys-mods' /usr/lib/raspberrypi-sys-mods/firstboot,
# run once as init= on a fresh Bookworm card: Pi OS grows the root partition
# there; this one only takes itself off cmdline.txt and reboots, as Pi OS does.
SYS_MODS_FIRSTBOOT: Final = """\
#!/bin/sh
# piimg e2e stand-in for raspberrypi-sys-mods firstboot (no partition resize)
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -o remount,rw /
# the real firstboot's main() starts with regenerate_ssh_host_keys (firstboot:83-84)
/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys || echo "piimg-e2e: regenerate_ssh_host_keys failed"
mount /boot/firmware
echo "piimg-e2e: sys-mods firstboot stand-in: removing init= from cmdline.txt"
sed -i 's| init=/usr/lib/raspberrypi-sys-mods/firstboot||' /boot/firmware/cmdline.txt
sync
umount /boot/firmware
mount -o remount,ro /
sync
echo b > /proc/sysrq-trigger
sleep 10
"""
SYS_MODS_INIT: Final = "init=/usr/lib/raspberrypi-sys-mods/firstboot"

# No NTP server is reachable (restrict=on; guestfwd carries TCP only), but the
# guest's clock comes from the host's RTC and is right: declare it synchronised
# the way systemd-timesyncd does after its first NTP answer.
TIMESYNC_UNIT: Final = """\
[Unit]
Description=piimg e2e stand-in for an NTP answer (clock comes from the host)
After=systemd-timesyncd.service
Before=time-sync.target
Wants=time-sync.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /run/systemd/timesync && touch /run/systemd/timesync/synchronized'

[Install]
WantedBy=sysinit.target
"""

# Raspberry Pi OS's SSH host key regeneration, verbatim from
# raspberrypi-sys-mods@3af395f6 (debian/raspberrypi-sys-mods.regenerate_ssh_host_keys.service,
# usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys): enabled on the image,
# it replaces every host key at the first normal boot (Bookworm's firstboot
# also runs the script at boot 1). piimg must keep its pre-generated key anyway.
REGENERATE_SSH_HOST_KEYS_UNIT: Final = """\
[Unit]
Description=Regenerate SSH host keys
Before=ssh.service
ConditionFileIsExecutable=/usr/bin/ssh-keygen

[Service]
Type=oneshot
ExecStart=/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys

[Install]
WantedBy=multi-user.target
"""
REGENERATE_SSH_HOST_KEYS_SH: Final = """\
#!/bin/sh -e

rm -f /etc/ssh/ssh_host_*_key*
ssh-keygen -A > /dev/null
systemctl -q disable regenerate_ssh_host_keys
"""

SSHSWITCH_UNIT: Final = """\
# piimg e2e stand-in for Raspberry Pi OS's sshswitch.service (raspberrypi-sys-mods):
# an `ssh` or `ssh.txt` file on the boot partition enables sshd once.
[Unit]
Description=Turn on SSH if /boot/firmware/ssh is present
ConditionPathExistsGlob=|/boot/firmware/ssh
ConditionPathExistsGlob=|/boot/firmware/ssh.txt
After=regenerate_ssh_host_keys.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c "systemctl enable --now ssh && rm -f /boot/firmware/ssh ; rm -f /boot/firmware/ssh.txt"

[Install]
WantedBy=multi-user.target
"""

#: Exit 0 if and only if the status.json named by the argument says first boot
#: is done (its top-level "state"; every step has a "state" of its own).
FIRSTBOOT_DONE_SH: Final = (
    """python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["state"] != "done")'"""
)

#: The user the e2e spec names (access.user) and the probe logs in as.
LOGIN_USER: Final = "pi"
#: Where the probe finds the e2e session's private key (root-only, on the test
#: image's root file system; never on a boot partition): install_login_key().
LOGIN_KEY: Final = "/usr/local/lib/piimg-e2e/login_key"

# Test instrumentation, not part of Raspberry Pi OS: once a normal boot has
# finished (first-boot service included), print a summary to the serial console
# and power off, so that a boot ends when there is nothing more to wait for.
# (The first-run hook boot never reaches multi-user.target: it reboots.)
PROBE_SH: Final = """\
#!/bin/sh
systemctl is-system-running --wait >/dev/null 2>&1
# Type=exec: "active" while the program runs (multi-user.target is reached meanwhile)
while case "$(systemctl show -p ActiveState --value piimg-firstboot.service)" in activating|active|deactivating) true;; *) false;; esac; do sleep 2; done
echo "PIIMG-E2E-PROBE: system=$(systemctl is-system-running) hostname=$(hostname)" \\
     "firstboot=$(systemctl show -p ActiveState --value piimg-firstboot.service)/$(systemctl show -p Result --value piimg-firstboot.service)" \\
     "multiuser_at=$(systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target)" \\
     "firstboot_last_log_at=$(journalctl -b -u piimg-firstboot.service -o short-monotonic --no-pager -q | tail -n 1 | sed 's/^\\[ *\\([0-9.]*\\)\\].*/\\1/')" \\
     "enabled=$(systemctl is-enabled piimg-firstboot.service 2>&1)" \\
     "ssh=$(systemctl is-enabled ssh.service 2>&1)/$(systemctl is-active ssh.service 2>&1)"
echo "PIIMG-E2E-HOSTKEY: $(ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null | grep -v '^#' | cut -d' ' -f2-3)"
# key-only login with a locked password, for real: the spec's user logs in to
# this sshd with the e2e session's own key (LOGIN_KEY), the host key pinned
U=@LOGIN_USER@
case "$(getent shadow "$U" | cut -d: -f2)" in "!"*|"*"*) pw="locked";; "") pw="empty";; *) pw="set";; esac
printf '127.0.0.1 %s\\n' "$(cut -d' ' -f1-2 /etc/ssh/ssh_host_ed25519_key.pub)" > /run/piimg-e2e-known_hosts
login=$(ssh -n -i @LOGIN_KEY@ -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \\
        -o UserKnownHostsFile=/run/piimg-e2e-known_hosts -o ConnectTimeout=60 "$U@127.0.0.1" 'echo "ok-$(id -un)"' 2>/run/piimg-e2e-login.err) || login=failed
echo "PIIMG-E2E-LOGIN: user=$U password=$pw" \\
     "usepam=$(sshd -T -C "user=$U,host=localhost,addr=127.0.0.1" 2>&1 | sed -n 's/^usepam //p')" \\
     "login=$login"
if [ "$login" != "ok-$U" ]; then
    sed 's/^/PIIMG-E2E-LOGIN-ERR: /' /run/piimg-e2e-login.err
    journalctl -b --no-pager -q -u ssh.service | tail -n 20 | sed 's/^/PIIMG-E2E-LOGIN-ERR: /'
fi
systemctl --failed --no-legend --plain | sed 's/^/PIIMG-E2E-FAILED: /'
# first boot not done (failed, or given up on a wait): the guest's side of it on the console
if ! @FIRSTBOOT_DONE@ /boot/firmware/piimg/status.json 2>/dev/null; then
    /usr/local/lib/piimg-e2e/netdiag.sh
fi
systemctl poweroff
""".replace("@FIRSTBOOT_DONE@", FIRSTBOOT_DONE_SH).replace("@LOGIN_USER@", LOGIN_USER).replace("@LOGIN_KEY@", LOGIN_KEY)

# What a failed network wait needs explained, printed by the probe when first
# boot is not done: the routes and addresses the guest has, what NetworkManager
# and netplan made of the configuration, and the network-related logs. Every
# line is prefixed (the test collects them from the whole serial log); no
# command's failure or absence stops the rest.
DIAG_PREFIX: Final = "PIIMG-E2E-DIAG:"
NETDIAG_SH: Final = """\
#!/bin/sh
section() {
    printf '%s ===== %s\\n' "$P" "$1"
    shift
    "$@" 2>&1 | sed "s/^/$P /"
}
P='@PREFIX@'
section "uptime, load" cat /proc/uptime /proc/loadavg
section "ip route" ip route show table all
section "ip -4 addr" ip -4 addr show
section "ip link" ip link show
section "/proc/net/route" cat /proc/net/route
section "nmcli device" nmcli -f DEVICE,TYPE,STATE,CONNECTION device status
section "nmcli connection" nmcli -f NAME,UUID,TYPE,DEVICE,AUTOCONNECT,ACTIVE connection show
section "nmcli eth0" nmcli -f GENERAL.STATE,GENERAL.REASON,GENERAL.CONNECTION,IP4.ADDRESS,IP4.GATEWAY,IP4.ROUTE device show eth0
section "networkctl" networkctl list --no-pager
section "netplan and NetworkManager files" sh -c 'ls -l /etc/netplan /etc/NetworkManager/system-connections /run/NetworkManager/system-connections'
section "cloud-init status" cloud-init status --long
section "journal: NetworkManager, networkd, cloud-init, piimg-firstboot" sh -c 'journalctl -b --no-pager -o short-monotonic -u NetworkManager.service -u systemd-networkd.service -u cloud-init-local.service -u cloud-init-network.service -u cloud-init.service -u cloud-config.service -u piimg-firstboot.service | tail -n 150'
section "/var/log/cloud-init.log (network)" sh -c 'grep -iE "network|netplan|route|renderer" /var/log/cloud-init.log | tail -n 60'
exit 0
""".replace("@PREFIX@", DIAG_PREFIX)
PROBE_UNIT: Final = """\
[Unit]
Description=piimg e2e probe: report and power off once boot has settled
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/lib/piimg-e2e/probe.sh
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""

# Applied inside the chroot after debootstrap; part of the cache key.
CONFIGURE_SH: Final = """\
set -eu
echo {hostname} > /etc/hostname
printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t{hostname}\\n::1\\t\\tlocalhost ip6-localhost ip6-loopback\\n' > /etc/hosts
useradd -m -u 1000 -U -G sudo,adm,dialout,users -s /bin/bash pi
passwd -l pi
passwd -l root
echo 'pi ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/010_pi-nopasswd
chmod 0440 /etc/sudoers.d/010_pi-nopasswd
mkdir -p /boot/firmware
# the Pi's wired interface is eth0: no predictable interface names, in the
# initramfs too (it names the interfaces before the root's udev runs)
mkdir -p /etc/systemd/network
printf '[Match]\nOriginalName=*\n\n[Link]\nNamePolicy=kernel\nMACAddressPolicy=persistent\n' > /etc/systemd/network/99-default.link
update-initramfs -u -k all
systemctl disable ssh.service ssh.socket 2>/dev/null || true
systemctl enable sshswitch.service piimg-e2e-probe.service piimg-e2e-timesync.service regenerate_ssh_host_keys.service
systemctl enable systemd-timesyncd.service NetworkManager.service
systemctl set-default multi-user.target
# no getty on the serial console: nobody logs in, the log stays readable
systemctl mask serial-getty@ttyS0.service
echo 'Etc/UTC' > /etc/timezone
ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime
rm -f /etc/machine-id /var/lib/dbus/machine-id
touch /etc/machine-id
"""


@dataclass(frozen=True)
class BaseImage:
    """A built base image and what the test needs to know about it."""

    path: Path
    flavour: str
    disk_id: str  # 8 hex digits; PARTUUIDs are <disk_id>-01 / -02
    boot_offset: int  # bytes
    root_offset: int  # bytes


def mirror() -> str:
    """The Debian mirror this machine's apt uses (the only one we may reach)."""
    override = os.environ.get("PIIMG_E2E_MIRROR")
    if override:
        return override
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        # deb822: "URIs: http://deb.debian.org/debian" followed by "Suites: bookworm ..."
        for block in re.split(r"\n\s*\n", text):
            uri = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", block, re.M)
            if uri and suites and SUITE in suites.group(1).split() and "security" not in uri.group(1):
                return uri.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if m.group(2) == SUITE:
                return m.group(1)
    return "http://deb.debian.org/debian"


def cache_root() -> Path:
    env = os.environ.get("PIIMG_E2E_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "piimg" / "e2e"


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MTOOLS_SKIP_CHECK": "1", "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc  # type: ignore[no-any-return]


def debootstrap_dir(suite: str = SUITE, *, fresh: bool | None = None, log: list[str] | None = None) -> Path:
    """The plain debootstrap result, cached by suite, arch, mirror and package list."""
    if fresh is None:
        fresh = os.environ.get("PIIMG_E2E_FRESH") == "1"
    url = mirror()
    key = _key(suite, ARCH, url, ",".join(packages(suite)))
    root = cache_root()
    done = root / f"debootstrap-{suite}-{key}"
    marker = root / f"debootstrap-{suite}-{key}.complete"
    if done.is_dir() and marker.exists() and not fresh:
        return done
    root.mkdir(parents=True, exist_ok=True)
    work = root / f"debootstrap-{suite}-{key}.tmp-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.monotonic()
    _sh(["debootstrap", "--variant=minbase", f"--arch={ARCH}", f"--include={','.join(packages(suite))}", suite, str(work), url])
    _sh(["chroot", str(work), "/bin/sh", "-c", "apt-get clean && rm -rf /var/lib/apt/lists/*"])
    marker.unlink(missing_ok=True)
    if done.exists():
        shutil.rmtree(done)
    work.rename(done)
    marker.write_text(json.dumps({"mirror": url, "packages": packages(suite)}) + "\n")
    if log is not None:
        log.append(f"debootstrap {suite}: {time.monotonic() - t0:.0f}s")
    return done


def rootfs(dest: Path, suite: str = SUITE, *, fresh: bool | None = None, log: list[str] | None = None) -> Path:
    """A configured copy of the (cached) debootstrap result of ``suite`` at ``dest``."""
    raw = debootstrap_dir(suite, fresh=fresh, log=log)
    t0 = time.monotonic()
    if dest.exists():
        shutil.rmtree(dest)
    _sh(["cp", "-a", "--reflink=auto", str(raw), str(dest)])
    _configure(dest)
    if log is not None:
        log.append(f"copy + configure {suite} rootfs: {time.monotonic() - t0:.0f}s")
    return dest


def _configure(root: Path) -> None:
    (root / "etc/systemd/system/sshswitch.service").write_text(SSHSWITCH_UNIT)
    (root / "etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg").write_text(piosfacts.nocloud_cfg())
    (root / "etc/cloud/cloud.cfg.d/98_piimg-e2e-renderers.cfg").write_text(RENDERERS_CFG)
    (root / "etc/systemd/system/piimg-e2e-probe.service").write_text(PROBE_UNIT)
    (root / "etc/systemd/system/piimg-e2e-timesync.service").write_text(TIMESYNC_UNIT)
    (root / "etc/systemd/system/regenerate_ssh_host_keys.service").write_text(REGENERATE_SSH_HOST_KEYS_UNIT)
    regen = root / "usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys"
    regen.parent.mkdir(parents=True, exist_ok=True)
    regen.write_text(REGENERATE_SSH_HOST_KEYS_SH)
    regen.chmod(0o755)
    sys_mods = root / "usr/lib/raspberrypi-sys-mods/firstboot"
    sys_mods.parent.mkdir(parents=True, exist_ok=True)
    sys_mods.write_text(SYS_MODS_FIRSTBOOT)
    sys_mods.chmod(0o755)
    probe = root / "usr/local/lib/piimg-e2e/probe.sh"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(PROBE_SH)
    probe.chmod(0o755)
    netdiag = probe.with_name("netdiag.sh")
    netdiag.write_text(NETDIAG_SH)
    netdiag.chmod(0o755)
    # as on Raspberry Pi OS: netplan hands every interface to NetworkManager
    netplan = root / "etc/netplan"
    netplan.mkdir(parents=True, exist_ok=True)
    nm_all = netplan / "00-network-manager-all.yaml"
    nm_all.write_text("# piimg e2e (as Raspberry Pi OS): NetworkManager renders netplan\nnetwork:\n  version: 2\n  renderer: NetworkManager\n")
    nm_all.chmod(0o600)
    # cloud-init-local must see the FAT mounted (or mount it itself by label):
    # order it after the mount so both ways agree.
    dropin = root / "etc/systemd/system/cloud-init-local.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "10-bootfs.conf").write_text("[Unit]\nRequiresMountsFor=/boot/firmware\n")
    _sh(["chroot", str(root), "/bin/sh", "-c", CONFIGURE_SH.format(hostname=HOSTNAME)])
    if not list((root / "boot").glob("vmlinuz-*")) or not list((root / "boot").glob("initrd.img-*")):
        raise RuntimeError(f"{root}/boot holds no kernel/initrd after debootstrap")


def install_login_key(root: Path, private_key: Path) -> None:
    """Put the e2e session's private key where the probe's login finds it (root-only).

    Test instrumentation on a test image's root file system: the spec
    authorises its public half, so the probe can log in as the spec's user.
    """
    dest = root / LOGIN_KEY.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_bytes(private_key.read_bytes())
    os.chown(tmp, 0, 0)
    tmp.rename(dest)


def _kernel_files(root: Path) -> tuple[Path, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    return kernels[-1], initrds[-1]


def _fstab(disk_id: str) -> str:
    return (
        "proc            /proc           proc    defaults          0       0\n"
        f"PARTUUID={disk_id}-01  /boot/firmware  vfat    defaults          0       2\n"
        f"PARTUUID={disk_id}-02  /               ext4    defaults,noatime  0       1\n"
    )


def cmdline(disk_id: str, flavour: str) -> str:
    """The release's cmdline.txt, with the serial console qemu shows and without ``quiet``."""
    words = piosfacts.cmdline(FLAVOUR_RELEASES[flavour], disk_id).split()
    words = [w for w in words if not w.startswith("console=") and w != "quiet"]
    return " ".join(["console=ttyS0,115200", *words]) + "\n"


def boot_files(disk_id: str, flavour: str) -> dict[str, str]:
    """What the flavour's FAT carries besides the kernel and initrd."""
    release = FLAVOUR_RELEASES[flavour]
    return {
        "cmdline.txt": cmdline(disk_id, flavour),
        "config.txt": piosfacts.config_txt(release) + QEMU_CONFIG,
        **piosfacts.seed_files(release),
    }


def build_image(out: Path, flavour: str, *, root: Path) -> BaseImage:
    """Write a fresh base image of ``flavour`` to ``out`` from the configured ``root`` (see rootfs()).

    No mounts, no loop devices: sfdisk, mkfs.vfat --offset + mcopy, mkfs.ext4 -d -E offset.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
    disk_id = secrets.token_hex(4)
    boot_sectors = BOOT_SIZE // 512
    root_start = BOOT_START + BOOT_SIZE
    total = root_start + ROOT_SIZE
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(total)
    table = (
        "label: dos\n"
        f"label-id: 0x{disk_id}\n"
        f"start={BOOT_START // 512}, size={boot_sectors}, type=c\n"
        f"start={root_start // 512}, size={ROOT_SIZE // 512}, type=83\n"
    )
    _sh(["sfdisk", "--no-reread", "--no-tell-kernel", str(tmp)], input=table)

    # FAT32 bootfs
    _sh(["mkfs.vfat", "-F", "32", "-n", "bootfs", f"--offset={BOOT_START // 512}", str(tmp), str(BOOT_SIZE // 1024)])
    fat = f"{tmp}@@{BOOT_START}"
    kernel, initrd = _kernel_files(root)
    staging = out.with_name(out.name + ".fat")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        files = boot_files(disk_id, flavour)
        for name, text in files.items():
            (staging / name).write_text(text)
        shutil.copyfile(kernel, staging / "vmlinuz")
        shutil.copyfile(initrd, staging / "initrd.img")
        _sh(["mcopy", "-i", fat, *[str(p) for p in sorted(staging.iterdir())], "::/"])
    finally:
        shutil.rmtree(staging)

    # ext4 rootfs: fstab and the flavour switch go in before mkfs -d, then come out again
    fstab = root / "etc/fstab"
    disabled = root / "etc/cloud/cloud-init.disabled"
    fstab.write_text(_fstab(disk_id))
    if flavour == "systemd":
        disabled.write_text("")
    try:
        _sh(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(root), "-E", f"offset={root_start}", str(tmp), f"{ROOT_SIZE // 1024}k"])
    finally:
        disabled.unlink(missing_ok=True)
        fstab.write_text("# written per image by tests/e2e/baseimage.py\n")
    tmp.rename(out)
    return BaseImage(path=out, flavour=flavour, disk_id=disk_id, boot_offset=BOOT_START, root_offset=root_start)
