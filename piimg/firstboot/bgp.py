"""Can this kernel sign BGP with TCP-MD5? (``cluster.bgp.password_env``)

MetalLB's native speaker sets the ``TCP_MD5SIG`` socket option on its BGP
socket when the BGPPeer has a password (metallb v0.16.1
internal/bgp/native/native.go: ``dialMD5`` -> ``SetsockoptTCPMD5Sig``). A
kernel built without ``CONFIG_TCP_MD5SIG`` answers ENOPROTOOPT ("protocol not
available"), the dial fails and no session ever comes up (metallb/metallb
#1125). Stock Raspberry Pi OS kernels are such kernels: raspberrypi/linux
arch/arm64/configs/bcm2712_defconfig and bcm2711_defconfig do not set it.

So first boot asks the kernel the same question on a throwaway socket,
before deploying a password nobody can use. Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any, Callable, Optional

from .context import Context, StepError

#: linux/tcp.h
TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
#: sizeof(struct __kernel_sockaddr_storage)
_SOCKADDR_STORAGE = 128

WHAT_TO_DO = (
    "either remove cluster.bgp.password_env from piimg.yaml, clear the TCP-MD5 key of the BGP peers "
    "on the router (piimg router-setup keeps a key it cannot read back) and rebuild the images; "
    "or boot a kernel built with CONFIG_TCP_MD5SIG=y and reboot (first boot resumes here)"
)


def md5sig_option(key: bytes, address: str = "127.0.0.1") -> bytes:
    """``struct tcp_md5sig`` for ``address`` (linux/tcp.h), as MetalLB passes it.

    tcpm_addr (sockaddr_storage: family in host order, port, IPv4 address),
    tcpm_flags, tcpm_prefixlen, tcpm_keylen, tcpm_ifindex, tcpm_key[80].
    """
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError("a TCP-MD5 key has at most %d bytes" % TCP_MD5SIG_MAXKEYLEN)
    addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + socket.inet_aton(address)
    return (
        addr.ljust(_SOCKADDR_STORAGE, b"\0")
        + struct.pack("=BBHi", 0, 0, len(key), 0)
        + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    )


def probe_md5sig(key: bytes, socket_factory: Callable[..., Any] = socket.socket) -> Optional[str]:
    """None if the kernel accepts ``key`` as a TCP-MD5 key; otherwise why not.

    The key goes on an unconnected socket that is closed right away: nothing
    is sent and nothing outlives the call.
    """
    if not key:
        return "the BGP password is empty"
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        return "the BGP password has %d bytes; the kernel takes at most %d (TCP_MD5SIG_MAXKEYLEN)" % (
            len(key), TCP_MD5SIG_MAXKEYLEN)
    sock = socket_factory(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig_option(key))
    except OSError as exc:
        if exc.errno == errno.ENOPROTOOPT:
            return "this kernel has no CONFIG_TCP_MD5SIG: setsockopt(TCP_MD5SIG) fails with %s" % (
                os.strerror(errno.ENOPROTOOPT))
        return "setsockopt(TCP_MD5SIG) failed: %s" % (exc.strerror or exc)
    finally:
        sock.close()
    return None


def kernel_release() -> str:
    try:
        return os.uname().release
    except (AttributeError, OSError):
        return "unknown"


def check_bgp_password(ctx: Context, socket_factory: Callable[..., Any] = socket.socket) -> None:
    """Fail the step when a BGP password is configured but this kernel cannot use it."""
    password = ctx.config.secrets.get("bgp_password")
    if not password:
        return
    problem = probe_md5sig(password.encode("utf-8"), socket_factory)
    if problem is None:
        ctx.log.info("kernel %s accepts TCP-MD5 keys: the BGP password can be used" % kernel_release())
        return
    raise StepError(
        "BGP password (cluster.bgp.password_env) cannot work on this node (kernel %s): %s, so MetalLB's "
        "speaker cannot open any BGP session (metallb/metallb#1125; stock Raspberry Pi OS kernels are built "
        "without it); %s" % (kernel_release(), problem, WHAT_TO_DO)
    )


def step_bgp(ctx: Context) -> None:
    """Agents: the MetalLB speaker on this node signs its BGP session too."""
    check_bgp_password(ctx)
