"""Pinned cluster artefacts: k3s's install script, binary and airgap images, and the Helm charts.

First boot runs nothing it downloads: ``piimg build`` (and ``piimg fetch``)
fetches every file here, verifies it, caches it and ships it on the card.

What is verified, and against what:

- ``install.sh`` of the k3s tag ``cluster.k3s_version``: the SHA-256 pinned in
  :data:`piimg.versions.K3S_INSTALL_SH_SHA256` (or ``cluster.k3s_install_sha256``).
- ``sha256sum-<arch>.txt`` of that release: not pinned (k3s signs nothing);
  it comes over TLS from the release (or from a mirror, https:// or loopback
  only) and is cached once, so later builds compare against the same file.
- the k3s binary and the airgap images tarball: their line in that file,
  exactly as k3s's install.sh checks its download (``download_hash``).
- Helm chart archives: the SHA-256 pinned in :mod:`piimg.versions`.

A mismatch deletes the download; nothing unverified enters the cache.

Where files come from: the upstream URL, or with ``cluster.artifact_mirror``
(or ``$PIIMG_ARTIFACT_MIRROR``, read into that key when the spec is loaded)
the same host and path below the mirror: ``https://github.com/k3s-io/k3s/
releases/download/v1.36.3+k3s1/k3s-arm64`` becomes ``<mirror>/github.com/
k3s-io/k3s/releases/download/v1.36.3+k3s1/k3s-arm64`` (the tree ``wget -x``
builds from the upstream URLs).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from piimg import versions
from piimg.errors import ConfigError, DownloadError, NotFound, Unreachable
from piimg.fetch.cache import ARTIFACT_URLS, Cache
from piimg.fetch.download import download, sha256_file
from piimg.fetch.source import Fetcher
from piimg.spec.model import Arch, Ingress, Spec
from piimg.units import is_sha256

_RELEASE_RE: Final = re.compile(r"^v\d+\.\d+\.\d+")
_SMALL: Final = 1 << 20  # a sha256sum file is a few hundred bytes


@dataclass(frozen=True)
class CachedFile:
    """One verified file in the cache."""

    name: str  # file name as published (k3s-arm64, metallb-0.16.1.tgz, ...)
    path: Path
    sha256: str
    url: str  # upstream URL (before any mirror)


@dataclass(frozen=True)
class K3sArtifacts:
    version: str
    arch: str
    install_sh: CachedFile
    binary: CachedFile
    airgap_images: CachedFile | None


@dataclass(frozen=True)
class ChartArchive:
    pin: versions.ChartPin
    file: CachedFile

    def content_base64(self) -> str:
        """The archive as the HelmChart ``spec.chartContent`` field takes it."""
        return base64.b64encode(self.file.path.read_bytes()).decode("ascii")


@dataclass(frozen=True)
class ClusterArtifacts:
    k3s: K3sArtifacts
    charts: dict[str, ChartArchive]  # by chart name (metallb, nginx-ingress, ingress-nginx)


# ---------------------------------------------------------------------------- what a spec needs


def install_sh_url(version: str) -> str:
    return f"{versions.K3S_SOURCE_URL}/{version}/install.sh"


def release_url(version: str, name: str) -> str:
    return f"{versions.K3S_RELEASES_URL}/{version}/{name}"


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` below ``mirror`` as ``<mirror>/<host>/<path>``; ``url`` itself without a mirror."""
    if not mirror:
        return url
    parts = urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


_ARM64_WORDS: Final = frozenset({"arm64", "aarch64"})
_ARMHF_WORDS: Final = frozenset({"armhf", "armv7", "armv7l"})
_ARMV6_WORDS: Final = frozenset({"armel", "armv6", "armv6l"})


def image_arch(chosen: Arch, *names: str) -> tuple[str, str]:
    """(architecture, how it was found) of the base image: ``image.arch``, else its name, else arm64.

    Raspberry Pi OS names every image by it (catalog folder
    ``raspios_lite_arm64``, file ``...-raspios-bookworm-armhf-lite.img.xz``).
    A name that says neither gets arm64, the architecture of the default
    image and of every Pi since the Pi 3 running a 64-bit kernel; first boot
    refuses an arm64 payload on a 32-bit kernel (armv7l) with a clear error.
    A 32-bit image is armhf for k3s: that binary needs ARMv7 (Pi 2 and
    newer); first boot refuses an ARMv6 board (Pi 1, Zero, Zero W).
    """
    if chosen is not Arch.AUTO:
        return chosen.value, "image.arch"
    for name in names:
        words = set(re.split(r"[^a-z0-9]+", name.lower()))
        if words & _ARMV6_WORDS:
            raise ConfigError(
                "image.arch",
                f"{name} is an ARMv6 image: k3s publishes no ARMv6 build (Pi 1, Zero, Zero W cannot run k3s)",
            )
        if words & _ARM64_WORDS:
            return "arm64", f"the name {name}"
        if words & _ARMHF_WORDS:
            return "armhf", f"the name {name}"
    return "arm64", "assumed: the image's name says neither arm64 nor armhf; set image.arch if it is 32-bit"


def release_version(spec: Spec) -> str:
    version = spec.cluster.k3s_version
    if not _RELEASE_RE.match(version) or "+" not in version:
        raise ConfigError(
            "cluster.k3s_version",
            f"{version!r} is a channel, not a release: piimg ships pinned, verified k3s files only",
            hint=f"name a release such as {versions.K3S_VERSION}",
        )
    return version


def install_sh_pin(spec: Spec, version: str) -> tuple[str, str]:
    """(SHA-256, where it comes from) for install.sh at ``version``."""
    if spec.cluster.k3s_install_sha256:
        return spec.cluster.k3s_install_sha256, "cluster.k3s_install_sha256"
    pinned = versions.K3S_INSTALL_SH_SHA256.get(version)
    if pinned is None:
        known = ", ".join(sorted(versions.K3S_INSTALL_SH_SHA256))
        raise ConfigError(
            "cluster.k3s_install_sha256",
            f"piimg pins install.sh for k3s {known} only; {version} needs its SHA-256 here",
            hint=f"read {install_sh_url(version)} and set cluster.k3s_install_sha256 to its sha256sum",
        )
    return pinned, "piimg/versions.py K3S_INSTALL_SH_SHA256"


def chart_pins(spec: Spec) -> list[versions.ChartPin]:
    """The chart archives the initial server deploys for ``spec``."""
    pin = versions.METALLB_CHARTS.get(spec.cluster.metallb_version)
    if pin is None:
        known = ", ".join(sorted(versions.METALLB_CHARTS))
        raise ConfigError(
            "cluster.metallb_version",
            f"piimg pins the MetalLB chart by content for {known} only, not {spec.cluster.metallb_version}",
        )
    pins = [pin]
    if spec.cluster.ingress is Ingress.NGINX:
        pins.append(versions.NGINX_INGRESS_CHART_PIN)
    elif spec.cluster.ingress is Ingress.INGRESS_NGINX:
        pins.append(versions.INGRESS_NGINX_CHART_PIN)
    return pins


def check_pins(spec: Spec) -> None:
    """Refuse, before anything is downloaded, a spec whose files piimg cannot verify."""
    install_sh_pin(spec, release_version(spec))
    chart_pins(spec)


# ---------------------------------------------------------------------------- fetching


class ArtifactStore:
    """Verified files under ``<cache>/artifacts/<sha256>/<name>``, fetched through a :class:`Fetcher`."""

    def __init__(self, fetcher: Fetcher, mirror: str | None) -> None:
        self.f = fetcher
        self.mirror = mirror

    @property
    def cache(self) -> Cache:
        return self.f.cache

    def _dir(self) -> Path:
        return self.cache.root / "artifacts"

    def path(self, sha256: str, name: str) -> Path:
        return self._dir() / sha256 / name

    def get(self, url: str, name: str, sha256: str, origin: str) -> CachedFile:
        """The file ``name`` with digest ``sha256``: from the cache, else downloaded and verified."""
        path = self.path(sha256, name)
        if path.is_file():
            if not self.f.verify:
                return CachedFile(name, path, sha256, url)
            actual = sha256_file(path, self.f.reporter, description=f"verifying cached {name} (SHA-256)")
            if actual == sha256:
                return CachedFile(name, path, sha256, url)
            self.f.reporter.warn(f"cached {path} is corrupt (SHA-256 {actual}); removed it")
            shutil.rmtree(path.parent, ignore_errors=True)
        if self.f.offline:
            raise DownloadError(
                f"offline: {name} (sha256 {sha256}) is not in the cache at {self.cache.root}",
                hint="run `piimg fetch` with network access first",
            )
        source = mirrored(url, self.mirror)
        dest = self.cache.download_dest(sha256, name)
        for attempt in (1, 2):
            part = dest.with_name(dest.name + ".part")
            resumed = part.exists() and part.stat().st_size > 0
            self.f.reporter.note(f"downloading {source}" + (" (resuming)" if resumed else ""))
            try:
                part = download(source, dest, session=self.f.session, policy=self.f.policy,
                                reporter=self.f.reporter, description=f"downloading {name}")
            except Unreachable as exc:  # S12: what to do without network access
                offline = ("offline? run piimg fetch once with network access (build then needs none), "
                           "or set cluster.artifact_mirror to a mirror you can reach")
                exc.hint = f"{exc.hint}; {offline}" if exc.hint else offline
                raise
            actual = sha256_file(part, self.f.reporter, description=f"verifying {name} (SHA-256)")
            if actual == sha256:
                return CachedFile(name, self._commit(part, sha256, name), sha256, url)
            part.unlink(missing_ok=True)
            if resumed and attempt == 1:
                self.f.reporter.warn(f"{source}: checksum mismatch after resuming; downloading again from the start")
                continue
            raise DownloadError(
                f"{source}: SHA-256 mismatch: expected {sha256} ({origin}), got {actual}; "
                "the download was deleted, nothing was cached",
                hint="the file is corrupt or was replaced upstream or on the mirror",
            )
        raise AssertionError("unreachable")

    def _commit(self, part: Path, sha256: str, name: str) -> Path:
        """Move a verified download into its entry (complete or absent, never half there)."""
        root = self._dir()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:16]}.", dir=root))
        try:
            os.replace(part, tmp / name)
            final = root / sha256
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final / name

    # -------------------------------------------------------------- unpinned small files (sha256sum-*.txt)

    def text(self, url: str, name: str) -> tuple[str, CachedFile]:
        """A small unpinned file: the copy cached the first time, else downloaded (and then cached)."""
        sha = self.cache.recall(ARTIFACT_URLS, url)
        if sha is not None and (path := self.path(sha, name)).is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha:
                return data.decode("utf-8", "replace"), CachedFile(name, path, sha, url)
        if self.f.offline:
            raise DownloadError(
                f"offline: {name} of {url.rsplit('/', 2)[-2]} is not in the cache at {self.cache.root}",
                hint="run `piimg fetch` with network access first",
            )
        source = mirrored(url, self.mirror)
        text = self.f.fetch_text(source)
        data = text.encode()
        if len(data) > _SMALL:
            raise DownloadError(f"{source}: larger than {_SMALL} bytes, not a sha256sum file")
        sha = hashlib.sha256(data).hexdigest()
        d = self._dir()
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=d)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        path = self._commit(Path(tmp_name), sha, name)
        self.cache.remember(ARTIFACT_URLS, url, sha)
        return text, CachedFile(name, path, sha, url)


def fetch_k3s(store: ArtifactStore, spec: Spec, arch: str) -> K3sArtifacts:
    """install.sh at the tag, the binary and (``cluster.airgap``) the images of ``arch``, verified."""
    version = release_version(spec)
    names = versions.K3S_ARCHES.get(arch)
    if names is None:
        raise ConfigError("image.arch", f"k3s publishes no build piimg can use for {arch!r} (arm64, armhf)")
    want_sha, origin = install_sh_pin(spec, version)
    install = store.get(install_sh_url(version), "install.sh", want_sha, origin)
    sums_url = release_url(version, names.sums)
    try:
        sums, _ = store.text(sums_url, names.sums)
    except NotFound:
        raise DownloadError(
            f"{mirrored(sums_url, store.mirror)}: not found: k3s {version} has no {names.sums} (no {arch} build?)"
        ) from None

    def listed(name: str) -> str:
        digest = _sum_for(sums, name)
        if digest is None:
            raise DownloadError(
                f"{names.sums} of k3s {version} lists no {name}: the release has no {arch} build of it",
            )
        return digest

    binary = store.get(release_url(version, names.binary), names.binary, listed(names.binary),
                       f"{names.sums} of k3s {version}")
    images = None
    if spec.cluster.airgap:
        images = store.get(release_url(version, names.airgap), names.airgap, listed(names.airgap),
                           f"{names.sums} of k3s {version}")
    return K3sArtifacts(version=version, arch=arch, install_sh=install, binary=binary, airgap_images=images)


def _sum_for(text: str, name: str) -> str | None:
    """The digest of exactly ``name`` in sha256sum output (never the 'only line' fallback)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name and is_sha256(parts[0].lower()):
            return parts[0].lower()
    return None


def fetch_charts(store: ArtifactStore, pins: Iterable[versions.ChartPin]) -> dict[str, ChartArchive]:
    out = {}
    for pin in pins:
        name = pin.url.rsplit("/", 1)[-1]
        out[pin.name] = ChartArchive(pin, store.get(pin.url, name, pin.sha256, f"piimg/versions.py, from {pin.source}"))
    return out


def obtain_cluster_artifacts(spec: Spec, arch: str, fetcher: Fetcher) -> ClusterArtifacts:
    """Everything first boot installs from the card, for a base image of ``arch``."""
    store = ArtifactStore(fetcher, spec.cluster.artifact_mirror)  # the key, or $PIIMG_ARTIFACT_MIRROR (load)
    pins = chart_pins(spec)  # a spec error before any download
    k3s = fetch_k3s(store, spec, arch)
    charts = fetch_charts(store, pins)
    for archive in charts.values():
        check_kube_version(archive, k3s.version, fetcher.reporter.warn)
    return ClusterArtifacts(k3s=k3s, charts=charts)


# ---------------------------------------------------------------------------- the charts' kubeVersion

_CHART_YAML_MAX: Final = 1 << 20
_KUBE_VERSION_RE: Final = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")
#: One comparison of a Helm ``kubeVersion`` constraint (Masterminds/semver
#: syntax, which Helm uses): operator and a version with up to three numbers
#: and an optional pre-release/build suffix ("-0" lets pre-releases match).
_COMPARISON_RE: Final = re.compile(
    r"(>=|<=|!=|=>|=<|>|<|=)?\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]*)?(?:\+[0-9A-Za-z.-]*)?(?=[\s,]|$)"
)


def chart_kube_version(archive: ChartArchive) -> str | None:
    """``kubeVersion`` of the archive's ``<name>/Chart.yaml`` (None if the chart sets none)."""
    import tarfile

    import yaml

    path = archive.file.path
    want = f"{archive.pin.name}/Chart.yaml"
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            member = tar.getmember(want)
            if not member.isfile() or member.size > _CHART_YAML_MAX:
                raise DownloadError(f"{path}: {want} is not a regular file of at most {_CHART_YAML_MAX} bytes")
            handle = tar.extractfile(member)
            meta = yaml.safe_load(handle.read()) if handle is not None else None
    except (OSError, EOFError, KeyError, tarfile.TarError, yaml.YAMLError) as exc:
        raise DownloadError(f"{path}: not a Helm chart archive with {want} ({exc})") from None
    value = meta.get("kubeVersion") if isinstance(meta, dict) else None
    return str(value).strip() if value else None


def kube_version_allows(constraint: str, version: tuple[int, int, int]) -> bool | None:
    """Whether Kubernetes ``version`` meets a chart's ``kubeVersion``; None if piimg cannot read the constraint.

    Read as Helm reads it (Masterminds/semver): ``||`` separates alternatives,
    comparisons within one are joined by commas or spaces and must all hold;
    a missing minor/patch is 0; a pre-release bound (``1.25.0-0``) sorts just
    below its release. Ranges piimg does not evaluate (``~``, ``^``,
    ``x`` wildcards, ``a - b``) give None.
    """
    alternatives = []
    for alternative in constraint.split("||"):
        comparisons = list(_COMPARISON_RE.finditer(alternative))
        rest = _COMPARISON_RE.sub("", alternative)
        if not comparisons or rest.strip(" \t,"):
            return None  # empty, or something that is not a plain comparison
        ok = True
        for m in comparisons:
            op = {"=>": ">=", "=<": "<="}.get(m.group(1) or "=", m.group(1) or "=")
            # a pre-release bound (1.25.0-0) sorts just below its release; ours is a release
            bound = (*(int(n or 0) for n in m.group(2, 3, 4)), 0 if m.group(5) else 1)
            have = (*version, 1)
            ok = ok and {
                "=": have == bound, "!=": have != bound, ">": have > bound,
                "<": have < bound, ">=": have >= bound, "<=": have <= bound,
            }[op]
        alternatives.append(ok)
    return any(alternatives)


def check_kube_version(archive: ChartArchive, k3s_version: str, warn: Callable[[str], None]) -> None:
    """Refuse a chart whose ``kubeVersion`` excludes the Kubernetes of ``k3s_version`` (Helm would refuse it at deploy time)."""
    constraint = chart_kube_version(archive)
    m = _KUBE_VERSION_RE.match(k3s_version)
    if constraint is None or m is None:
        return
    kube = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    allowed = kube_version_allows(constraint, kube)
    name = f"chart {archive.pin.name} {archive.pin.version}"
    if allowed is None:
        warn(f"{name}: kubeVersion {constraint!r} not checked against Kubernetes {'.'.join(map(str, kube))}")
    elif not allowed:
        raise ConfigError(
            "cluster.k3s_version",
            f"k3s {k3s_version} is Kubernetes {'.'.join(map(str, kube))}, but {name} needs Kubernetes "
            f"{constraint} (its Chart.yaml kubeVersion): Helm would refuse to install it at first boot",
        )


def cached_charts(spec: Spec, fetcher: Fetcher) -> dict[str, ChartArchive] | None:
    """The spec's chart archives if all are in the cache (never downloads); None otherwise."""
    offline = Fetcher(cache=fetcher.cache, offline=True, reporter=fetcher.reporter)
    try:
        return fetch_charts(ArtifactStore(offline, None), chart_pins(spec))
    except DownloadError:
        return None
