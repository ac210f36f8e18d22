"""k3s's join token, re-implemented from its source for tests (not from piimg's code).

Source: k3s-io/k3s@0566d4571ef8e44fdc87aee1ddf42667256f5e84:pkg/clientaccess/token.go

* ``tokenPrefix = "K10"``, ``caHashLength = sha256.Size * 2``;
* ``parseToken``: a token without the prefix becomes ``K10:::<token>``; after
  the prefix, ``SplitN(token, "::", 2)`` gives the CA hash (empty or exactly
  64 characters, else "invalid token CA hash length") and the credentials,
  ``SplitN(creds, ":", 2)`` gives username and a non-empty password (else
  "invalid token format");
* ``hashCA``: a bundle of one certificate hashes the literal bytes; a bundle
  of several hashes the DER of the root that ``certs[0].Verify`` reaches, the
  roots being the later certificates with no AuthorityKeyId or AKI == SKI.

The root search uses ``openssl verify`` (a different implementation from the
``cryptography`` calls piimg makes), with the same root/intermediate split.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TOKEN_PREFIX = "K10"
CA_HASH_LENGTH = 64
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


@dataclass
class ParsedToken:
    ca_hash: str
    username: str
    password: str


def parse_token(token: str) -> ParsedToken:
    if not token:
        raise ValueError("token must not be empty")
    if not token.startswith(TOKEN_PREFIX):
        token = TOKEN_PREFIX + ":::" + token
    token = token[len(TOKEN_PREFIX):]
    parts = token.split("::", 1)
    ca_hash, creds = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
    if ca_hash and len(ca_hash) != CA_HASH_LENGTH:
        raise ValueError("invalid token CA hash length")
    user_pass = creds.split(":", 1)
    if len(user_pass) != 2 or not user_pass[1]:
        raise ValueError("invalid token format")
    return ParsedToken(ca_hash, user_pass[0], user_pass[1])


def _is_root(cert: x509.Certificate) -> bool:
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return True
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = None
    return not aki or aki == ski


def hash_ca(bundle: bytes) -> str:
    blocks = _PEM_RE.findall(bundle)
    if len(blocks) <= 1:
        return hashlib.sha256(bundle).hexdigest()
    certs = [x509.load_pem_x509_certificate(b) for b in blocks]
    roots = [c for c in certs[1:] if _is_root(c)]
    intermediates = [c for c in certs[1:] if not _is_root(c)]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pem = lambda cs: b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cs)  # noqa: E731
        (d / "roots.pem").write_bytes(pem(roots))
        (d / "inter.pem").write_bytes(pem(intermediates))
        (d / "leaf.pem").write_bytes(pem(certs[:1]))
        argv = ["openssl", "verify", "-show_chain", "-purpose", "any", "-CAfile", str(d / "roots.pem")]
        if intermediates:
            argv += ["-untrusted", str(d / "inter.pem")]
        out = subprocess.run([*argv, str(d / "leaf.pem")], capture_output=True, text=True)
    if out.returncode != 0:
        # Go falls back to hashing the whole file when the chain does not verify.
        return hashlib.sha256(bundle).hexdigest()
    # The last certificate of the chain openssl printed is the root.
    subjects = re.findall(r"^depth=\d+: (.*?)(?: \(untrusted\))?$", out.stdout, re.M)
    root_subject = subjects[-1]
    for root in roots:
        common_name = root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        if root_subject.endswith(f"CN = {common_name!s}"):
            return hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    raise AssertionError(f"openssl's root {root_subject!r} is not among the bundle's roots")
