"""Obtain the base image a build starts from: resolve, download, verify, cache, decompress.

The entry point is :func:`obtain_base_image`. Sources, in order of precedence:
``--image``/``--sha256`` (``piimg build``), ``image.url``/``image.sha256``,
``image.os`` resolved through ``image.catalog``. A source is an http(s) URL or
a local path (any supported compression). What is verified:

- the download against the user's SHA-256, else the catalog's
  ``image_download_sha256``, else the ``.sha256`` file published beside it
  (``sha256sum`` format); ``http://`` with none of these is refused;
- the decompressed image against the catalog's ``extract_sha256`` when known.

A mismatch deletes the bad file; nothing unverified ever enters the cache.
A local uncompressed ``.img`` is used in place (never copied); its digest is
remembered by (realpath, size, mtime) so repeated builds do not re-read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import requests

from piimg.errors import ConfigError, DownloadError, ImageError, Interrupted, PiimgError, Unreachable
from piimg.fetch import catalog as cat
from piimg.fetch.cache import URL_DIGESTS, Cache, CacheEntry
from piimg.fetch.download import DEFAULT_POLICY, RetryPolicy, download, fetch_text, new_session, sha256_file
from piimg.fetch.download import parse_sha256_file as _parse_sha_file
from piimg.image.decompress import Format, decompress_to, detect_format, open_decompressed
from piimg.image.partitions import SECTOR, open_layout
from piimg.progress import QUIET, Reporter
from piimg.spec import model as spec_model
from piimg.units import human_size, is_sha256

#: What to do without network access (S12): every source but the catalog can be a file.
OFFLINE_HINT = "offline? piimg build --image PATH (or image.url in the spec) takes a local image file"


def _offline_hint(exc: Unreachable) -> Unreachable:
    """``exc`` with the offline hint added to whatever hint it had."""
    exc.hint = f"{exc.hint}; {OFFLINE_HINT}" if exc.hint else OFFLINE_HINT
    return exc


@dataclass(frozen=True)
class BaseImage:
    path: Path  # decompressed raw image (sparse file in the cache, or the user's own .img, never copied)
    sha256: str  # SHA-256 of the decompressed raw image
    download_sha256: str | None
    init_format: str | None  # catalog's init_format when known ("systemd", "cloudinit", "cloudinit-rpi", ...)
    name: str  # human name (catalog name or file name)
    size: int
    location: str = ""  # the URL or path it came from (names the architecture: ..._arm64/...)


@dataclass(frozen=True)
class _Wanted:
    """A resolved source: what to fetch and what to expect."""

    location: str  # URL or local path
    name: str
    sha256: str | None = None  # of the file as downloaded
    extract_sha256: str | None = None
    download_size: int | None = None
    extract_size: int | None = None
    init_format: str | None = None
    origin: str = ""  # for messages: "image.os raspios-lite-arm64", "--image", "image.url"
    sha_origin: str = ""  # for messages: where the expected SHA-256 comes from


class Fetcher:
    """One acquisition run: cache, HTTP session, policy and reporter together."""

    def __init__(
        self,
        *,
        cache: Cache | None = None,
        offline: bool = False,
        verify: bool = False,
        reporter: Reporter = QUIET,
        session: requests.Session | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        check_local: Callable[[Path], None] | None = None,
        online_command: str = "piimg fetch",
    ) -> None:
        self.cache = cache or Cache()
        self.online_command = online_command  # what, run online once, caches the catalog
        self.check_local = check_local
        self.offline = offline
        self.verify = verify
        self.reporter = reporter
        self._session = session
        self.policy = policy

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session()
        return self._session

    def fetch_text(self, url: str) -> str:
        if self.offline:
            raise DownloadError(f"offline: would need to fetch {url}")
        return fetch_text(url, session=self.session, policy=self.policy)

    # ------------------------------------------------------------------ catalog

    def catalog(self, source: str, *, base_dir: Path | None = None) -> list[cat.CatalogEntry]:
        """The catalog's images; from the cache when offline or when the network is down."""
        if self.offline and cat.is_url(source):
            cached = self.cache.load_catalog(source)
            if cached is None:
                raise DownloadError(
                    f"offline: the catalog {source} has never been downloaded, so image.os cannot be resolved",
                    hint=f"run `{self.online_command}` once with network access, or set image.url to a local file",
                )
            return [cat.CatalogEntry.from_json(e) for e in cached]
        try:
            entries = cat.load(source, fetch_text=self.fetch_text, base_dir=base_dir)
        except DownloadError as exc:
            cached = self.cache.load_catalog(source) if cat.is_url(source) else None
            if cached is None:
                if isinstance(exc, Unreachable):
                    raise _offline_hint(exc) from None
                raise
            self.reporter.warn(f"{exc.message}; using the copy of the catalog cached earlier")
            return [cat.CatalogEntry.from_json(e) for e in cached]
        if cat.is_url(source):
            self.cache.save_catalog(source, [e.to_json() for e in entries])
        return entries

    # ------------------------------------------------------------------ resolution

    def wanted(self, spec: spec_model.Spec, image: str | None, sha256: str | None) -> _Wanted:
        if sha256 is not None:
            sha256 = sha256.strip().lower()
            if not is_sha256(sha256):
                raise ConfigError("--sha256", f"{sha256!r} is not a SHA-256 hex digest (64 hex digits)")
        if image:
            if not cat.is_url(image):
                # a command-line path is relative to the current folder, not to the spec's
                image = str(cat.local_path(image, Path.cwd()))
            if image.startswith("http://") and sha256 is None:
                raise ConfigError(
                    "--image", "an http:// image needs --sha256 (nothing else proves the download is genuine)"
                )
            return _Wanted(image, _file_name(image), sha256=sha256, origin="--image", sha_origin="--sha256")
        if spec.image.url:
            return _Wanted(spec.image.url, _file_name(spec.image.url), sha256=sha256 or spec.image.sha256,
                           origin="image.url", sha_origin="--sha256" if sha256 else "image.sha256")
        if sha256 is not None:
            raise ConfigError("--sha256", "given without --image or image.url",
                              hint="the catalog provides the checksum for image.os")
        entries = self.catalog(spec.image.catalog, base_dir=spec.paths.root)
        e = cat.resolve(entries, spec.image.os, source=spec.image.catalog)
        self.reporter.info(f"image.os {e.slug}: {e.name} ({e.release_date or 'no date'})")
        return _Wanted(
            e.url,
            e.name or _file_name(e.url),
            sha256=e.image_download_sha256,
            extract_sha256=e.extract_sha256,
            download_size=e.image_download_size,
            extract_size=e.extract_size,
            init_format=e.init_format,
            origin=f"image.os {e.slug}",
            sha_origin="catalog image_download_sha256",
        )

    # ------------------------------------------------------------------ acquisition

    def obtain(self, want: _Wanted, *, base_dir: Path) -> BaseImage:
        if cat.is_url(want.location):
            return self._remote(want)
        path = cat.local_path(want.location, base_dir)
        if path.is_dir():
            raise ImageError(f"{want.origin}: {path}: is a directory, not an image file")
        if not path.is_file():
            raise ImageError(f"{want.origin}: {path}: no such file")
        return self._local(want, path)

    def _hit(self, want: _Wanted, sha: str) -> BaseImage | None:
        entry = self.cache.lookup(sha)
        if entry is None:
            return None
        path = self.cache.image_path(sha)
        if self.verify:
            actual = sha256_file(path, self.reporter, description=f"verifying cached {entry.name} (SHA-256)")
            if actual != entry.sha256:
                self.reporter.warn(f"cached image {path} is corrupt (SHA-256 {actual}); removed it")
                self.cache.remove(sha)
                return None
        self.reporter.info(f"cached: {_file_name(want.location)} ({human_size(entry.size)} decompressed)")
        return _base(entry, path, want)

    def _remote(self, want: _Wanted) -> BaseImage:
        url = want.location
        sha = want.sha256 or (self.cache.recall(URL_DIGESTS, url) if self.offline else None)
        if sha and (hit := self._hit(want, sha)):
            return hit
        if self.offline:
            what = f"{want.origin} ({want.name}, {url}" + (f", sha256 {sha}" if sha else "") + ")"
            raise DownloadError(
                f"offline: {what} is not in the cache at {self.cache.root}",
                hint="run `piimg fetch` with network access first",
            )
        if sha is None:
            sha = self._published_digest(url)
            want = replace(want, sha256=sha, sha_origin=f"{_file_name(url)}.sha256 published beside it")
            if sha and (hit := self._hit(want, sha)):
                return hit
        key = sha or hashlib.sha256(url.encode()).hexdigest()
        dest = self.cache.download_dest(key, _file_name(url))
        part = self._download_verified(want, url, dest, sha)
        actual = sha or sha256_file(part, self.reporter, description=f"hashing {_file_name(url)} (SHA-256)")
        try:
            result = self._hit(want, actual) or self._install(want, part, actual, source=url)
        except PiimgError:
            part.unlink(missing_ok=True)  # verified but unusable (bad extract_sha256, corrupt archive)
            raise
        except KeyboardInterrupt as exc:
            # the complete .part stays: the next run verifies it and skips the download (S13: say so)
            interrupted = exc if isinstance(exc, Interrupted) else Interrupted()
            raise interrupted.with_state(
                f"the download ({human_size(part.stat().st_size)}) is complete and kept; piimg fetch "
                "(or the same command again) goes on from decompressing it"
            ) from None
        part.unlink(missing_ok=True)
        self.cache.remember(URL_DIGESTS, url, actual)  # for --offline, which cannot fetch URL.sha256
        return result

    def _download_verified(self, want: _Wanted, url: str, dest: Path, sha: str | None) -> Path:
        for attempt in (1, 2):
            part = dest.with_name(dest.name + ".part")
            resumed = part.exists() and part.stat().st_size > 0
            self.reporter.note(f"downloading {url}" + (" (resuming)" if resumed else ""))
            try:
                part = download(url, dest, expected_size=want.download_size, session=self.session,
                                policy=self.policy, reporter=self.reporter, description=f"downloading {_file_name(url)}")
            except Unreachable as exc:
                raise _offline_hint(exc) from None
            if sha is None:
                return part
            # the bar names the file, not its cache name (<key>-<name>.part)
            actual = sha256_file(part, self.reporter, description=f"verifying {_file_name(url)} (SHA-256)")
            if actual == sha:
                return part
            part.unlink(missing_ok=True)
            if resumed and attempt == 1:
                # the partial file may come from an older version of the file: start over once
                self.reporter.warn(f"{url}: checksum mismatch after resuming; downloading again from the start")
                continue
            raise DownloadError(
                f"{url}: SHA-256 mismatch: expected {sha} ({want.sha_origin}), got {actual}; the download was deleted",
                hint="the file is corrupt or was replaced; check the checksum and try again",
            )
        raise AssertionError("unreachable")

    def _published_digest(self, url: str) -> str | None:
        """The digest from ``URL.sha256`` (sha256sum format); refuses http:// without one."""
        try:
            text = self.fetch_text(url + ".sha256")
        except DownloadError:  # NotFound (no .sha256 published) included
            text = None
        digest = _parse_sha_file(text, _file_name(url)) if text is not None else None
        if digest is None:
            if url.startswith("http://"):
                raise DownloadError(
                    f"{url}: refusing an http:// download without a checksum "
                    f"(no image.sha256, no catalog checksum, no {_file_name(url)}.sha256 beside it)",
                    hint="give image.sha256 / --sha256, or use https://",
                )
            self.reporter.warn(f"{url}: no checksum published; trusting the TLS connection only")
        return digest

    def _install(self, want: _Wanted, file: Path, download_sha: str, *, source: str) -> BaseImage:
        """Decompress ``file`` into a new cache entry, verified; nothing cached on failure."""
        with self.cache.new_entry(download_sha) as tmp:
            out = tmp / "image.img"
            fmt = detect_format(file)
            if fmt is Format.RAW:
                self.reporter.info(f"copying {want.name} into the cache")
            result = decompress_to(file, out, self.reporter, expected_size=want.extract_size,
                                   description=f"decompressing {_file_name(want.location)}")
            if want.extract_sha256 and result.sha256 != want.extract_sha256:
                raise ImageError(
                    f"{want.location}: the decompressed image has SHA-256 {result.sha256}, "
                    f"the catalog says {want.extract_sha256} (extract_sha256); nothing was cached",
                )
            if want.extract_size is not None and result.size != want.extract_size:
                raise ImageError(
                    f"{want.location}: the decompressed image has {result.size} bytes, "
                    f"the catalog says {want.extract_size} (extract_size); nothing was cached",
                )
            entry = CacheEntry(
                download_sha256=download_sha,
                sha256=result.sha256,
                size=result.size,
                name=want.name,
                source=source,
                init_format=want.init_format,
                extract_sha256=want.extract_sha256,
            )
            path = self.cache.commit(tmp, entry)
        # the path itself is the command's result (piimg fetch prints it once, on stdout)
        self.reporter.info(f"cached: {_file_name(want.location)} ({human_size(entry.size)} decompressed)")
        return _base(entry, path, want)

    def _local(self, want: _Wanted, path: Path) -> BaseImage:
        path = path.resolve()
        if self.check_local is not None:
            self.check_local(path)  # a few sectors before hashing what may be gigabytes of something else
        digest = None if self.verify else self.cache.local_digest(path)
        if digest is None:
            digest = sha256_file(path, self.reporter, description=f"hashing {path.name} (SHA-256)")
            self.cache.remember_local_digest(path, digest)
        if want.sha256 and digest != want.sha256:
            raise DownloadError(f"{path}: SHA-256 mismatch: expected {want.sha256} ({want.sha_origin}), got {digest}")
        if detect_format(path) is Format.RAW:
            size = path.stat().st_size
            return BaseImage(path=path, sha256=digest, download_sha256=None, init_format=want.init_format,
                             name=want.name, size=size, location=want.location)
        if (hit := self._hit(want, digest)) is not None:
            return hit
        return self._install(want, path, digest, source=str(path))


def looks_like_a_pi_image(path: Path) -> None:
    """Refuse a local file that is not a Raspberry Pi OS image from its first
    sectors, before hashing or decompressing all of it. A raw file must have the
    layout (partition table, FAT boot and ext4 root file systems); a compressed
    one must start, once decompressed, with a partition table."""
    if detect_format(path) is Format.RAW:
        open_layout(path)
        return
    try:
        with open_decompressed(path) as stream:
            first = stream.read(SECTOR)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(first) < SECTOR or first[510:512] != b"\x55\xaa":
        raise ImageError(f"{path}: decompressed, it has no partition table (no MBR boot signature 55 AA): "
                         "not a disk image")


def _base(entry: CacheEntry, path: Path, want: _Wanted) -> BaseImage:
    return BaseImage(
        path=path,
        sha256=entry.sha256,
        download_sha256=entry.download_sha256,
        init_format=want.init_format or entry.init_format,
        name=want.name or entry.name,
        size=entry.size,
        location=want.location,
    )


def _file_name(location: str) -> str:
    path = urlparse(location).path if "://" in location else location
    return Path(path).name or location


def obtain_base_image(
    spec: spec_model.Spec,
    *,
    image: str | None = None,
    sha256: str | None = None,
    offline: bool = False,
    verify: bool = False,
    reporter: Reporter = QUIET,
    cache: Cache | None = None,
    session: requests.Session | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    check_local: Callable[[Path], None] | None = None,
) -> BaseImage:
    """Find, download, verify, cache and decompress the base image of ``spec``.

    ``image``/``sha256`` are the ``piimg build --image/--sha256`` overrides.
    ``offline`` uses only the cache (a clear error names what is missing);
    ``verify`` re-hashes a cached image fully instead of the cheap check.
    ``check_local`` looks at a local file before it is hashed (the build
    passes :func:`looks_like_a_pi_image`).
    """
    f = Fetcher(cache=cache, offline=offline, verify=verify, reporter=reporter, session=session, policy=policy,
                check_local=check_local)
    want = f.wanted(spec, image, sha256)
    return f.obtain(want, base_dir=spec.paths.root)


def list_catalog(
    source: str, *, base_dir: Path | None = None, offline: bool = False, reporter: Reporter = QUIET,
    cache: Cache | None = None, session: requests.Session | None = None, policy: RetryPolicy = DEFAULT_POLICY,
) -> list[cat.CatalogEntry]:
    """The images of a catalog (``piimg os list``) in the catalog's order (by each slug's first
    entry, as Raspberry Pi Imager shows them), newest first within each slug."""
    f = Fetcher(cache=cache, offline=offline, reporter=reporter, session=session, policy=policy,
                online_command="piimg os list")
    entries = f.catalog(source, base_dir=base_dir)
    first: dict[str, int] = {}
    for index, e in enumerate(entries):
        first.setdefault(e.slug, index)
    return sorted(entries, key=lambda e: (first[e.slug], _neg_date(e.release_date)))


def _neg_date(date: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in date)
