"""Resumable, verified HTTP downloads.

One file is fetched into ``DEST.part`` with streaming reads, connect/read
timeouts and retries with exponential backoff on transient errors
(connection drops, timeouts, 429/5xx). An interrupted download -- a dropped
connection, a crash, ``Ctrl-C`` -- leaves ``DEST.part`` behind; the next call
asks for the remainder with an HTTP ``Range`` request and restarts from
zero when the server ignores it (answers 200 instead of 206). The SHA-256 is
checked by the caller (:func:`sha256_file`), since it must cover the whole
file, resumed parts included.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import requests
import urllib3.exceptions

from piimg.errors import DownloadError, Interrupted, NotFound, Unreachable
from piimg.progress import QUIET, Reporter
from piimg.units import SHA256_PATTERN, human_size, is_sha256

CHUNK: Final = 1 << 20
USER_AGENT: Final = "piimg (+https://github.com/piimg/piimg)"
_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Tests use tiny delays."""

    attempts: int = 6  # failed attempts in a row (without progress) before giving up
    first_delay: float = 1.0
    max_delay: float = 30.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.first_delay * (2 ** max(0, failures - 1))))


DEFAULT_POLICY: Final = RetryPolicy()


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # Content-Encoding would break Range offsets and checksums of the file as served.
    session.headers["Accept-Encoding"] = "identity"
    return session


class _Transient(Exception):
    def __init__(self, reason: str, *, network: bool = False) -> None:
        super().__init__(reason)
        self.network = network  # no answer at all (DNS, refused, dropped, timeout), not an HTTP status


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    session: requests.Session | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    reporter: Reporter = QUIET,
    description: str | None = None,
) -> Path:
    """Fetch ``url`` into ``dest.part`` (resuming it) and return that path.

    The caller verifies it. On any error or interruption the ``.part`` stays
    for the next attempt (it is emptied only when the server says it is larger
    than the file). A second process downloading the same file at the same
    time gets a clear error instead of corrupting it.
    """
    session = session or new_session()
    part = part_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(part):
            return _download(url, part, expected_size, session, policy, reporter, description)
    except KeyboardInterrupt as exc:
        kept = part.stat().st_size if part.exists() else 0
        if not kept:
            raise
        of = f" of {human_size(expected_size)}" if expected_size else ""
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted()
        raise interrupted.with_state(
            f"{human_size(kept)}{of} downloaded and kept; piimg fetch (or the same command again) resumes"
        ) from None


@contextlib.contextmanager
def _locked(part: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``part``: two piimg runs must not append to the same file."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no locking
            pass
        except BlockingIOError:
            raise DownloadError(
                f"{part}: another piimg is downloading this file right now", hint="wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def _download(
    url: str,
    part: Path,
    expected_size: int | None,
    session: requests.Session,
    policy: RetryPolicy,
    reporter: Reporter,
    description: str | None,
) -> Path:
    failures = 0
    total = expected_size
    with reporter.bar(description or f"downloading {url.rsplit('/', 1)[-1]}", total) as bar:
        have = part.stat().st_size
        if expected_size is not None and have > expected_size:
            os.truncate(part, 0)  # truncate, not unlink: the lock is on this inode
            have = 0
        bar.update(have)
        while True:
            if expected_size is not None and have == expected_size:
                return part
            try:
                done, have_after = _attempt(url, part, have, session, policy, bar)
            except _Transient as exc:
                have_after = part.stat().st_size if part.exists() else 0
                if have_after > have:
                    failures = 0  # progress was made: the problem is intermittent
                failures += 1
                if failures >= policy.attempts:
                    error = Unreachable if exc.network else DownloadError
                    raise error(
                        f"{url}: {exc} (gave up after {failures} attempts)",
                        hint=f"run again to resume from {have_after} bytes" if have_after else None,
                    ) from None
                time.sleep(policy.delay(failures))
                have = have_after
                continue
            if done:
                return part
            have = have_after


def _attempt(
    url: str, part: Path, have: int, session: requests.Session, policy: RetryPolicy, bar: object
) -> tuple[bool, int]:
    """One request; returns (complete, bytes in .part)."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=(policy.connect_timeout, policy.read_timeout))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transient(_reason(exc), network=True) from exc
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: {_reason(exc)}") from exc
    with resp:
        if resp.status_code == 416 and have:
            # Range not satisfiable: the .part may already be complete.
            m = re.match(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == have:
                return True, have
            os.truncate(part, 0)
            bar.update(-have)  # type: ignore[attr-defined]
            return False, 0
        if resp.status_code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {resp.status_code} {resp.reason}")
        if resp.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        if resp.status_code == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if not m or int(m.group(1)) != have:
                raise DownloadError(f"{url}: server sent the wrong range ({resp.headers.get('Content-Range')!r})")
            mode = "ab"
        else:
            # 200: the server ignored Range (or there was none): start over.
            if have:
                bar.update(-have)  # type: ignore[attr-defined]
            have = 0
            mode = "wb"
        length = resp.headers.get("Content-Length")
        expected_end = have + int(length) if length and length.isdigit() else None
        # read1 hands over what has arrived, so a dropped connection loses nothing
        # already received (iter_content would discard a partly filled chunk).
        read1 = getattr(resp.raw, "read1", None)
        chunks = iter(lambda: read1(CHUNK), b"") if read1 is not None else resp.iter_content(64 << 10)
        with open(part, mode) as fh:
            try:
                for chunk in chunks:
                    try:
                        fh.write(chunk)
                    except OSError as exc:  # disk full, ...: not worth retrying
                        raise DownloadError(f"{part}: cannot write: {exc.strerror or exc}") from exc
                    have += len(chunk)
                    bar.update(len(chunk))  # type: ignore[attr-defined]
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError,
                OSError,
            ) as exc:
                fh.flush()
                raise _Transient(_reason(exc), network=True) from exc
        if expected_end is not None and have < expected_end:
            raise _Transient(f"connection closed after {have} of {expected_end} bytes", network=True)
        return True, have


def _reason(exc: BaseException) -> str:
    text = str(exc)
    cut = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected", text)
    if cut:  # the server closed the connection before the end of the body
        return f"connection closed mid-file ({cut.group(1)} bytes read, {cut.group(2)} more expected)"
    # requests nests urllib3 reasons deeply; the last parenthesised part is the useful one.
    m = re.search(r"(Failed to establish a new connection: [^')]*|Read timed out|Connection refused|"
                  r"Connection broken: [^')]*|Name or service not known|Temporary failure in name resolution|"
                  r"nodename nor servname provided, or not known)", text)
    return m.group(1) if m else (text or type(exc).__name__)


def fetch_text(
    url: str, *, session: requests.Session | None = None, policy: RetryPolicy = DEFAULT_POLICY, limit: int = 64 << 20
) -> str:
    """GET a small text document (catalog, ``.sha256`` file) with a few quick retries."""
    session = session or new_session()
    failures = 0
    attempts = min(policy.attempts, 3)
    while True:
        try:
            resp = session.get(url, timeout=(policy.connect_timeout, policy.read_timeout))
            if resp.status_code in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {resp.status_code} {resp.reason}")
        except (requests.ConnectionError, requests.Timeout) as exc:
            failures += 1
            if failures >= attempts:
                raise Unreachable(f"{url}: {_reason(exc)}") from exc
            time.sleep(policy.delay(failures))
            continue
        except _Transient as exc:
            failures += 1
            if failures >= attempts:
                raise DownloadError(f"{url}: {exc}") from None
            time.sleep(policy.delay(failures))
            continue
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: {_reason(exc)}") from exc
        if resp.status_code == 404:
            raise NotFound(url)
        if resp.status_code != 200:
            raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        if len(resp.content) > limit:
            raise DownloadError(f"{url}: larger than {limit} bytes, not a catalog or checksum file")
        return resp.content.decode("utf-8", "replace")


def sha256_file(path: Path, reporter: Reporter = QUIET, *, description: str | None = None) -> str:
    """SHA-256 of a file, read in large blocks."""
    h = hashlib.sha256()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh, reporter.bar(
        description or f"verifying {path.name.removesuffix('.part')} (SHA-256)", os.fstat(fh.fileno()).st_size
    ) as bar:
        while n := fh.readinto(view):
            h.update(view[:n])
            bar.update(n)
    return h.hexdigest()


_SHA_LINE: Final = re.compile(rf"\s*({SHA256_PATTERN})\s+\*?(.*?)\s*", re.IGNORECASE)


def parse_sha256_file(text: str, filename: str) -> str | None:
    """The digest for ``filename`` from ``sha256sum`` output (or the only digest)."""
    digests: list[tuple[str, str]] = []
    for line in text.splitlines():
        m = _SHA_LINE.fullmatch(line)
        if m:
            digests.append((m.group(1).lower(), os.path.basename(m.group(2))))
        elif is_sha256(line.strip().lower()):
            digests.append((line.strip().lower(), ""))
    for digest, name in digests:
        if name == filename:
            return digest
    if len(digests) == 1:
        return digests[0][0]
    return None
