"""Steps 1-4: hostname, static address, network + clock, memory cgroup."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import List, Optional, Tuple

from .context import Context, RebootRequested, StepError, is_stub
from .runner import CommandError
from .store import write_atomic

NM_CONNECTION = "piimg-eth0"
NM_KEYFILE = "/etc/NetworkManager/system-connections/%s.nmconnection" % NM_CONNECTION
# k3s needs the memory cgroup; Raspberry Pi kernels disable it unless asked.
# https://docs.k3s.io/installation/requirements?os=pi
CGROUP_WORDS = ("cgroup_memory=1", "cgroup_enable=memory")


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


# -- 1. hostname --------------------------------------------------------------------
def hosts_with(text: str, hostname: str) -> str:
    """/etc/hosts with exactly one ``127.0.1.1 hostname`` line (Debian convention)."""
    lines = [ln for ln in text.splitlines() if ln.split()[:1] != ["127.0.1.1"]]
    lines.append("127.0.1.1\t%s" % hostname)
    return "\n".join(lines) + "\n"


def step_hostname(ctx: Context) -> None:
    name = ctx.config.hostname
    hostname_file = ctx.path("/etc/hostname")
    hosts_file = ctx.path("/etc/hosts")
    current = (_read(hostname_file) or "").strip()
    hosts = _read(hosts_file) or "127.0.0.1\tlocalhost\n"
    want_hosts = hosts_with(hosts, name)
    if current == name and hosts == want_hosts:
        ctx.log.info("hostname already %s" % name)
        return
    write_atomic(hostname_file, name + "\n")
    write_atomic(hosts_file, want_hosts)
    ctx.run(["hostnamectl", "set-hostname", name])
    ctx.log.info("hostname set to %s" % name)


# -- 2. static address ----------------------------------------------------------------
def nm_keyfile(address: str, prefixlen: int, gateway: str, dns: List[str]) -> str:
    """A NetworkManager keyfile pinning eth0 to the node's address.

    Priority above the image's default "Wired connection 1" (DHCP), so this one
    wins at every boot. Format: nm-settings-keyfile(5).
    """
    return (
        "[connection]\n"
        "id=%s\n"
        "type=ethernet\n"
        "interface-name=eth0\n"
        "autoconnect=true\n"
        "autoconnect-priority=100\n"
        "\n[ethernet]\n"
        "\n[ipv4]\n"
        "method=manual\n"
        "address1=%s/%d,%s\n"
        "dns=%s\n"
        "\n[ipv6]\n"
        "method=auto\n"
    ) % (NM_CONNECTION, address, prefixlen, gateway, "".join(d + ";" for d in dns))


def step_address(ctx: Context) -> None:
    cfg = ctx.config
    if cfg.init_format != "systemd":
        ctx.log.info("static address comes from cloud-init's network-config (%s): nothing to do" % cfg.init_format)
        return
    path = ctx.path(NM_KEYFILE)
    want = nm_keyfile(cfg.address, cfg.prefixlen, cfg.gateway, list(cfg.dns))
    if _read(path) == want:
        ctx.log.info("%s already in place" % NM_KEYFILE)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, want, 0o600)  # NetworkManager ignores keyfiles readable by others
    try:
        ctx.run(["nmcli", "connection", "reload"])
    except CommandError as exc:
        if exc.returncode == 127:
            # Bullseye and older configure addresses with dhcpcd; the build refuses
            # them, so this is an image piimg does not know: say so, do not pretend.
            raise StepError(
                "NetworkManager (nmcli) is not installed, so the static address %s cannot be set: piimg "
                "supports Raspberry Pi OS Bookworm and later" % cfg.address
            ) from exc
        raise
    try:
        ctx.run(["nmcli", "connection", "up", NM_CONNECTION])
    except CommandError as exc:
        # No cable yet, or the link is still negotiating: autoconnect brings it
        # up later, and the network wait below reports what is missing.
        ctx.log.warn(str(exc))
    ctx.log.info("eth0 pinned to %s/%d via %s" % (cfg.address, cfg.prefixlen, cfg.gateway))


# -- 3. network and clock ---------------------------------------------------------------
def default_route(ctx: Context) -> Tuple[bool, str]:
    text = _read(ctx.path("/proc/net/route"))
    if text is None:
        return False, "cannot read /proc/net/route"
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "00000000" and int(fields[3], 16) & 1:
            return True, "default route via %s" % fields[0]
    return False, "no default route (is the Ethernet cable plugged in, is the router's DHCP/gateway up?)"


def dns_works(host: Optional[str]) -> Tuple[bool, str]:
    if not host:
        return True, "no name to resolve"
    try:
        ipaddress.ip_address(host)
        return True, "%s is an address" % host
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return False, "DNS cannot resolve %s (%s)" % (host, exc)
    return True, "resolved %s" % host


def clock_synced(ctx: Context) -> Tuple[bool, str]:
    # systemd-timesyncd touches this file once it has synchronised.
    if os.path.exists(ctx.path("/run/systemd/timesync/synchronized")):
        return True, "timesyncd synchronised"
    try:
        res = ctx.runner.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"], timeout=ctx.timeouts["command"], check=False
        )
    except CommandError as exc:
        return False, "clock not synchronised (%s)" % exc
    if res.stdout.strip() == "yes":
        return True, "NTP synchronised"
    return False, "clock not synchronised by NTP yet (no RTC on a Pi; is UDP 123 to the internet allowed?)"


def step_network(ctx: Context) -> None:
    ctx.log.info(ctx.wait_for("a default route", lambda: default_route(ctx), "network"))
    # k3s itself comes from the payload; DNS is needed for image pulls (k3s's
    # system images are on docker.io) unless the payload carries the airgap images.
    host = ctx.config.k3s.registry_host
    ctx.log.info(ctx.wait_for("DNS", lambda: dns_works(host), "network"))
    ctx.log.info(ctx.wait_for("clock synchronisation", lambda: clock_synced(ctx), "clock"))


# -- 4. memory cgroup ----------------------------------------------------------------------
def memory_cgroup(ctx: Context) -> Tuple[bool, str]:
    controllers = _read(ctx.path("/sys/fs/cgroup/cgroup.controllers"))
    if controllers is not None:
        if "memory" in controllers.split():
            return True, "cgroup v2 memory controller present"
        return False, "/sys/fs/cgroup/cgroup.controllers lacks 'memory' (%s)" % controllers.strip()
    cgroups = _read(ctx.path("/proc/cgroups")) or ""
    for line in cgroups.splitlines():
        fields = line.split()
        if fields[:1] == ["memory"] and len(fields) >= 4:
            return fields[3] == "1", "cgroup v1 memory enabled=%s" % fields[3]
    return False, "no memory cgroup (neither cgroup v2 controllers nor /proc/cgroups lists it)"


def cmdline_with_cgroup(text: str) -> str:
    words = text.split()
    for w in CGROUP_WORDS:
        if w not in words:
            words.append(w)
    return " ".join(words) + "\n"  # the firmware reads exactly one line


def step_cgroup(ctx: Context) -> None:
    ok, detail = memory_cgroup(ctx)
    if ok:
        ctx.log.info(detail)
        return
    cmdline = os.path.join(ctx.boot_dir, "cmdline.txt")
    if is_stub(cmdline):
        raise StepError(
            "memory cgroup missing (%s), and %s is the 'DO NOT EDIT' stub, not the boot partition's "
            "cmdline.txt: is /boot/firmware mounted?" % (detail, cmdline)
        )
    text = _read(cmdline)
    if text is None:
        raise StepError("memory cgroup missing (%s) and %s is unreadable" % (detail, cmdline))
    want = cmdline_with_cgroup(text.strip())
    if text != want:
        write_atomic(cmdline, want)
        ctx.log.info("added %s to %s" % (" ".join(CGROUP_WORDS), cmdline))
    boot_id = (_read(ctx.path("/proc/sys/kernel/random/boot_id")) or "").strip()
    reboot = ctx.store.get("cgroup_reboot")
    if reboot and reboot.get("boot_id") != boot_id:
        raise StepError(
            "the memory cgroup is still missing after a reboot (%s); %s contains '%s' but the kernel "
            "did not enable it: check that cmdline.txt is a single line and that the kernel supports "
            "cgroup_enable=memory; k3s cannot run without it" % (detail, cmdline, " ".join(CGROUP_WORDS))
        )
    ctx.store.set("cgroup_reboot", {"boot_id": boot_id, "count": int((reboot or {}).get("count", 0)) + 1})
    ctx.log.info("%s: rebooting once so the kernel picks up the cgroup flags" % detail)
    ctx.run(["systemctl", "reboot"])
    raise RebootRequested("rebooting to enable the memory cgroup")
