"""Run first boot in a child process the way the unit does, with a recording runner.

Usage: python -I driver.py run --config ... --root ...; environment:
FB_PAYLOAD (the directory holding ``firstboot/``, like /opt/piimg), FB_CTL
(recorder control dir), FB_KILL="STEP:start|done" to SIGKILL itself there.
"""

import os
import signal
import sys

sys.path[:0] = [os.environ["FB_PAYLOAD"], os.path.dirname(os.path.abspath(__file__))]

from firstboot.main import main  # noqa: E402
from recorder import Recorder  # noqa: E402

KILL = os.environ.get("FB_KILL", "")


def _loopback_only():
    """The same guarantee as tests/conftest.py, inside this child: loopback only, no DNS."""
    import ipaddress
    import socket

    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def is_loopback(host):
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def connect(self, address):
        if self.family != socket.AF_UNIX and not is_loopback(address[0]):
            raise AssertionError(f"first boot under test tried to connect to {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not is_loopback(host):
            raise AssertionError(f"first boot under test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo


_loopback_only()


def hook(step, phase):
    if f"{step}:{phase}" == KILL:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], runner=Recorder(os.environ["FB_CTL"]), hook=hook))
