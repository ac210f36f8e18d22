"""OpenSSH public keys (``authorized_keys`` lines), parsed the way sshd reads them.

A key mangled by a copy-paste (a line break, a cut-off end, a missing
character) must be refused at ``piimg validate``: with password login off, a
node that boots with it is a node nobody can log in to. So each key is
decoded, not pattern-matched:

* ``TYPE BASE64 [COMMENT]``; the base64 must decode strictly (RFC 4648);
* the decoded blob starts with its own type name (an SSH ``string``,
  RFC 4251 §5), which must equal TYPE: this is what ``ssh-keygen -l`` and
  sshd's ``sshkey_read`` check;
* the rest of the blob must be exactly the fields of that type, nothing
  missing and nothing left over: ``ssh-rsa`` mpint e, mpint n (RFC 4253
  §6.6; n of at least 1024 bits, OpenSSH's SSH_RSA_MINIMUM_MODULUS_SIZE);
  ``ecdsa-sha2-*`` curve name and an uncompressed point (RFC 5656 §3.1);
  ``ssh-ed25519`` a 32-byte key (RFC 8709 §4); the FIDO ``sk-`` types add
  the application string (OpenSSH PROTOCOL.u2f).

The accepted types are the plain (not certificate, not signature-only) key
types of OpenSSH's ``keyimpls[]`` (openssh/openssh-portable@0ef0f5a8:
sshkey.c, names from ssh-ed25519.c, ssh-ed25519-sk.c, ssh-ecdsa.c,
ssh-ecdsa-sk.c, ssh-rsa.c) that the sshd of Raspberry Pi OS Bookworm
(OpenSSH 9.2) and Trixie (10.0) both accept. Left out on purpose:
``ssh-dss`` (refused by sshd's default PubkeyAcceptedAlgorithms since 7.0,
removed in 10.0), ``ssh-mldsa44-ed25519@openssh.com`` (only in OpenSSH
builds newer than either release), certificates (they belong with
``cert-authority``, not in a key list).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

#: key type -> ECDSA curve name inside the blob (None: not ECDSA)
KEY_TYPES: Final[dict[str, str | None]] = {
    "ssh-ed25519": None,
    "sk-ssh-ed25519@openssh.com": None,
    "ecdsa-sha2-nistp256": "nistp256",
    "ecdsa-sha2-nistp384": "nistp384",
    "ecdsa-sha2-nistp521": "nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com": "nistp256",
    "ssh-rsa": None,
}
#: bytes of an uncompressed point (0x04 || X || Y), SEC 1 §2.3.3
_POINT_SIZE: Final = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
ED25519_KEY_SIZE: Final = 32
RSA_MIN_BITS: Final = 1024
_REFUSED: Final = {
    "ssh-dss": "DSA keys are refused by sshd (since OpenSSH 7.0) and gone in OpenSSH 10",
}


class BadKey(ValueError):
    """Why a public key line is not usable."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` shows it: SHA256 of the blob, base64 without padding."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    @property
    def line(self) -> str:
        text = f"{self.type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def string(self, what: str) -> bytes:
        if self.pos + 4 > len(self.data):
            raise BadKey(f"the key data ends before its {what} (cut off?)")
        n = int.from_bytes(self.data[self.pos : self.pos + 4], "big")
        start = self.pos + 4
        if start + n > len(self.data):
            raise BadKey(f"the key data ends inside its {what} (cut off?)")
        self.pos = start + n
        return self.data[start : start + n]

    def end(self) -> None:
        if self.pos != len(self.data):
            raise BadKey(f"{len(self.data) - self.pos} stray bytes after the key data")


def _mpint_bits(raw: bytes, what: str) -> int:
    if not raw or raw[0] & 0x80:
        raise BadKey(f"the RSA {what} is not a positive number")
    return int.from_bytes(raw, "big").bit_length()


def parse(line: str) -> PublicKey:
    """Parse one ``TYPE BASE64 [COMMENT]`` line; :class:`BadKey` says what is wrong."""
    parts = line.strip().split(None, 2)
    if not parts:
        raise BadKey("empty")
    ktype = parts[0]
    if ktype in _REFUSED:
        raise BadKey(_REFUSED[ktype])
    if ktype not in KEY_TYPES:
        if "/" in ktype or ktype.startswith(("~", ".")) or ktype.endswith(".pub"):
            raise BadKey("looks like a file name; paste the key itself (the one line of the .pub file)")
        if ktype.startswith("-----BEGIN"):
            raise BadKey("is a private key or a PEM block; paste the public key (the .pub file), never the private one")
        raise BadKey(f"unknown key type {ktype[:40]!r} (known: {', '.join(KEY_TYPES)})")
    if len(parts) < 2:
        raise BadKey(f"{ktype} with no key data after it")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("the key data is not valid base64 (a character lost or added in copying?)") from None
    r = _Reader(blob)
    inner = r.string("type name")
    if inner != ktype.encode():
        raise BadKey(f"the line says {ktype} but the key data is of type {inner[:40]!r}".replace("b'", "'"))
    curve = KEY_TYPES[ktype]
    if ktype == "ssh-rsa":
        _mpint_bits(r.string("exponent"), "exponent")
        bits = _mpint_bits(r.string("modulus"), "modulus")
        if bits < RSA_MIN_BITS:
            raise BadKey(f"a {bits}-bit RSA key; sshd refuses RSA keys under {RSA_MIN_BITS} bits")
    elif curve is not None:
        name = r.string("curve name")
        if name != curve.encode():
            raise BadKey(f"{ktype} key data names the curve {name[:20]!r}".replace("b'", "'"))
        point = r.string("public point")
        if len(point) != _POINT_SIZE[curve] or point[0] != 4:
            raise BadKey(f"the {curve} public point has {len(point)} bytes, not {_POINT_SIZE[curve]} (cut off?)")
    else:
        key = r.string("public key")
        if len(key) != ED25519_KEY_SIZE:
            raise BadKey(f"the Ed25519 public key has {len(key)} bytes, not {ED25519_KEY_SIZE} (cut off?)")
    if ktype.startswith("sk-"):
        r.string("FIDO application")
    r.end()
    return PublicKey(ktype, blob, parts[2].strip() if len(parts) > 2 else "")
