"""RouterOS versions and what differs between them for the items piimg manages.

Three BGP dialects matter here:

* **RouterOS 6** (6.43 and later): ``/routing bgp instance`` holds ``as`` and
  ``router-id``; one ``/routing bgp peer`` per neighbour (``instance=``,
  ``remote-address``, ``remote-as``, ``ttl``, ``tcp-md5-key``,
  ``address-families``). 6.43 is the first release with the plain-text API
  login that librouteros uses (help.mikrotik.com "API", "Initial login").
* **RouterOS 7.0-7.19**: the routing stack was rewritten; one
  ``/routing/bgp/connection`` per neighbour carries ``as``, ``router-id``,
  ``remote.address``, ``remote.as`` and ``local.role``; the instance menu is
  gone. 7.19 renamed the connection's ``address-families`` to ``afi``
  (ansible-collections/community.routeros PR #360).
* **RouterOS 7.20 and later**: ``/routing/bgp/instance`` is back (7.20
  changelog; ddelnano/terraform-provider-mikrotik PR #243): it holds ``as``
  and ``router-id`` (moved off the connection) and every connection must name
  its ``instance=`` (ansible-collections/community.routeros PR #404).
* **RouterOS 7.22 and later** add ``multipath`` to that instance: an integer,
  the number of equal paths to install (help.mikrotik.com "routing bgp":
  "multipath (integer [0..4294967295]) BGP will pick configured amount of
  routes with similar attributes and install ECMP routes"; it first appears in
  the 7.22 ``/console/inspect`` dump, tikoci/restraml docs/7.22/inspect.json,
  and not in 7.20.x or 7.21.x; ansible community.routeros PR #457 ">= 7.22").
  The 7.22.2+ dumps complete every yes/no argument with ``yes``/``no`` but
  not ``multipath``, so it is not a boolean. RouterOS 6 and 7.0-7.21 document
  "Multipath is not supported": no ECMP there.

Since 7.18 the API answers a print with no rows with ``!empty`` before
``!done`` (MikroTik API manual; jaov/mikrotik-java v3.0.8 "Fix of !empty
response introduced in RouterOS 7.18"); librouteros skips it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Final

from piimg.errors import RouterError

#: The oldest RouterOS piimg talks to: the first with the post-6.43 API login.
MIN_VERSION: Final = (6, 43)
#: The first RouterOS with BGP multipath (ECMP) on /routing/bgp/instance.
MULTIPATH_VERSION: Final = (7, 22)

_VERSION_RE: Final = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")


class BgpStyle(enum.Enum):
    V6 = "6"  # /routing/bgp/instance + /routing/bgp/peer
    V7 = "7"  # /routing/bgp/connection with as/router-id on it
    V7_20 = "7.20"  # /routing/bgp/instance + /routing/bgp/connection instance=

    @property
    def remote_address_field(self) -> str:
        """The neighbour's address: ``remote-address`` on a 6 peer, ``remote.address`` on a 7 connection."""
        return "remote-address" if self is BgpStyle.V6 else "remote.address"


#: Every spelling of the neighbour-address field (the planner compares it without its /32).
REMOTE_ADDRESS_FIELDS: Final = frozenset(style.remote_address_field for style in BgpStyle)


@dataclass(frozen=True)
class Dialect:
    """What piimg needs to know about one RouterOS release."""

    version: tuple[int, int]
    #: the version as the router (or the spec) wrote it, e.g. "7.20.1 (stable)"
    text: str

    @property
    def bgp(self) -> BgpStyle:
        if self.version[0] == 6:
            return BgpStyle.V6
        if self.version < (7, 20):
            return BgpStyle.V7
        return BgpStyle.V7_20

    @property
    def name(self) -> str:
        """Human name of the dialect family."""
        return {BgpStyle.V6: "RouterOS 6", BgpStyle.V7: "RouterOS 7.0-7.19", BgpStyle.V7_20: "RouterOS 7.20+"}[self.bgp]

    @property
    def span(self) -> str:
        """The releases that render the same commands as this one, e.g. ``RouterOS 7.0-7.18``."""
        if self.bgp is BgpStyle.V6:
            return "RouterOS 6"
        if self.bgp is BgpStyle.V7:
            return "RouterOS 7.0-7.18" if self.afi_field == "address-families" else "RouterOS 7.19"
        return "RouterOS 7.22 and later" if self.has_multipath else "RouterOS 7.20-7.21"

    @property
    def has_bgp_instance(self) -> bool:
        return self.bgp in (BgpStyle.V6, BgpStyle.V7_20)

    @property
    def afi_field(self) -> str:
        # 7.19 renamed address-families to afi on /routing/bgp/connection
        # (ansible-collections/community.routeros PR #360).
        if self.bgp is not BgpStyle.V6 and self.version >= (7, 19):
            return "afi"
        return "address-families"

    @property
    def remote_address_field(self) -> str:
        return self.bgp.remote_address_field

    @property
    def has_multipath(self) -> bool:
        # `multipath` exists on the instance from 7.22 on (7.20 and 7.21 trap
        # "unknown parameter multipath"; see the module docstring).
        return self.bgp is BgpStyle.V7_20 and self.version >= MULTIPATH_VERSION

    @property
    def empty_reply(self) -> bool:
        """Whether an empty print answers ``!empty`` (7.18 and later)."""
        return self.version >= (7, 18)

    def __str__(self) -> str:
        """``RouterOS 7.16.1 stable, 7.0-7.18 command set``: one level of words, no nested parentheses."""
        version, _, channel = self.text.partition(" ")
        channel = channel.strip().strip("()")
        family = self.span.removeprefix("RouterOS ")
        return f"RouterOS {version}{f' {channel}' if channel else ''}, {'6.x' if family == '6' else family} command set"


def parse_version(text: str) -> tuple[int, int]:
    """``"7.20.1 (stable)"`` -> ``(7, 20)``; ``"6.49.10 (long-term)"`` -> ``(6, 49)``; ``"7"`` -> ``(7, 0)``."""
    match = _VERSION_RE.match(str(text))
    if not match:
        raise RouterError(f"cannot read the RouterOS version from {text!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def dialect_for(text: str) -> Dialect:
    """The dialect for a version string; unsupported versions are a clear error."""
    version = parse_version(text)
    if version[0] not in (6, 7) or version < MIN_VERSION:
        raise RouterError(
            f"RouterOS {text} is not supported (piimg supports 6.43 and later 6.x, and 7.x)",
            hint="upgrade the router to RouterOS 7 (or at least 6.43, the first with the current API login)",
        )
    return Dialect(version, str(text))


def dialect_from_spec(version: str) -> Dialect:
    """The dialect named by ``router.version`` (``6``, ``7`` or ``7.N``; not ``auto``).

    ``6`` means the last 6.x releases; ``7`` means 7.0-7.18 (``address-families``).
    """
    if version == "auto":
        raise RouterError("router.version is auto: the version is only known after connecting")
    if version == "6":
        return Dialect((6, 49), "6")
    return dialect_for(version)


def detect_version(api: Any) -> Dialect:
    """Ask the router (``/system/resource/print``) which RouterOS it runs."""
    from librouteros.exceptions import LibRouterosError

    try:
        rows = list(api("/system/resource/print"))
    except LibRouterosError as exc:
        raise RouterError(f"cannot read /system/resource: {exc}") from None
    if not rows or "version" not in rows[0]:
        raise RouterError("/system/resource did not report a version")
    return dialect_for(str(rows[0]["version"]))


def same_family(a: Dialect, b: Dialect) -> bool:
    """Whether two dialects render the same commands (used to check ``router.version``)."""
    return a.span == b.span
