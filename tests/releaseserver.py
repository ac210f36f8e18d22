"""Generated k3s release and Helm chart artefacts, served on 127.0.0.1 the way a mirror lays them out.

Layout (upstream facts, not piimg's code):

- k3s release assets ``github.com/k3s-io/k3s/releases/download/<tag>/<file>``
  (the URL install.sh builds: ``${GITHUB_URL}/download/${VERSION_K3S}/sha256sum-${ARCH}.txt``,
  k3s-io/k3s@0136cf258954a458da1404858396342724b93d24:install.sh ``download_hash``);
  file names k3s-arm64, k3s-armhf, sha256sum-arm64.txt, sha256sum-arm.txt,
  k3s-airgap-images-{arm64,arm}.tar.zst (k3s-io/k3s@17f9c08f64e8e94831a6ab41bef692f25d9f07f8:scripts/validate-artifacts).
  A sha256sum file holds ``<hex>  <name>`` lines (install.sh greps ``" k3s${SUFFIX}$"``).
- install.sh at a tag: ``raw.githubusercontent.com/k3s-io/k3s/<tag>/install.sh``.
- chart archives at the ``urls:`` of their repository index (piimg/versions.py cites them).

A mirror holds each upstream URL's host and path below its base URL (what
``wget -x URL`` produces), so one tree is "the GitHub release" and "the
mirror" at once. The bytes are generated; the pins in :mod:`piimg.versions`
are pointed at them for the test (real pins are for real files).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from piimg import versions
from tests.httpserver import FileServer

VERSION = versions.K3S_VERSION
INSTALL_SH = b"#!/bin/sh\n# generated stand-in for k3s install.sh (test fixture)\necho installed\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: ``kubeVersion`` of the real Chart.yaml of each pinned chart (the generated
#: archives carry it, so the build's Kubernetes check sees what it will see):
#: metallb/metallb@791dfcc63ced7a6b3e869131eae75e645150fff0 (tag v0.16.1):charts/metallb/Chart.yaml;
#: nginx-ingress-2.6.4.tgz at nginxinc/helm-charts@37e48ed997f4086c3090ec128003f8576321a38e:stable/
#: (its nginx-ingress/Chart.yaml); kubernetes/ingress-nginx@0a5901f3c64f11e92e487799b8da3f00cca37515
#: (tag helm-chart-4.15.1):charts/ingress-nginx/Chart.yaml.
KUBE_VERSIONS = {"metallb": ">= 1.19.0-0", "nginx-ingress": ">= 1.25.0-0", "ingress-nginx": ">=1.21.0-0"}


def chart_tgz(name: str, version: str, kube_version: str | None = None) -> bytes:
    """A minimal Helm chart archive: ``<name>/Chart.yaml`` (the layout ``helm package`` writes)."""
    buf = io.BytesIO()
    meta = f"apiVersion: v2\nname: {name}\nversion: {version}\n"
    if kube_version is not None:
        meta += f"kubeVersion: '{kube_version}'\n"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in ((f"{name}/Chart.yaml", meta), (f"{name}/values.yaml", "{}\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def path_of(url: str) -> str:
    """The path of an upstream URL below a mirror: ``/<host>/<path>``."""
    parts = urlsplit(url)
    return f"/{parts.netloc}{parts.path}"


@dataclass
class Release:
    srv: FileServer
    files: dict[str, bytes] = field(default_factory=dict)  # upstream URL -> bytes

    @property
    def mirror(self) -> str:
        return self.srv.url("").rstrip("/")

    def url(self, name: str, version: str = VERSION) -> str:
        return f"{versions.K3S_RELEASES_URL}/{version}/{name}"

    def put(self, url: str, data: bytes) -> None:
        self.files[url] = data
        self.srv.add(path_of(url), data)

    def drop(self, url: str) -> None:
        self.files.pop(url, None)
        self.srv.files.pop(path_of(url), None)

    def requested(self) -> list[str]:
        return [r.path for r in self.srv.requests]

    def cluster_yaml(self) -> str:
        return f"cluster:\n  artifact_mirror: {self.mirror}\n"


def publish(rel: Release, version: str = VERSION) -> dict[str, str]:
    """Generate one release (arm64 + armhf, airgap images) and the charts; returns pins to install."""
    for arch, names in versions.K3S_ARCHES.items():
        binary = f"fake k3s {version} {arch}\n".encode() + bytes(range(256)) * 64
        images = f"fake airgap images {arch}\n".encode() * 512
        rel.put(rel.url(names.binary, version), binary)
        rel.put(rel.url(names.airgap, version), images)
        sums = f"{sha(binary)}  {names.binary}\n{sha(images)}  {names.airgap}\n"
        rel.put(rel.url(names.sums, version), sums.encode())
    rel.put(f"{versions.K3S_SOURCE_URL}/{version}/install.sh", INSTALL_SH)
    return {"install.sh": sha(INSTALL_SH)}


def publish_charts(rel: Release) -> dict[str, versions.ChartPin]:
    pins = {}
    for pin in (versions.METALLB_CHARTS[versions.METALLB_VERSION], versions.NGINX_INGRESS_CHART_PIN,
                versions.INGRESS_NGINX_CHART_PIN):
        data = chart_tgz(pin.name, pin.version, KUBE_VERSIONS[pin.name])
        rel.put(pin.url, data)
        pins[pin.name] = versions.ChartPin(pin.name, pin.version, pin.url, sha(data), "generated by tests/releaseserver.py")
    return pins


def pin(monkeypatch: pytest.MonkeyPatch, install_sha: str, charts: dict[str, versions.ChartPin]) -> None:
    """Point piimg's pins at the generated files (for this test only)."""
    monkeypatch.setitem(versions.K3S_INSTALL_SH_SHA256, VERSION, install_sha)
    monkeypatch.setitem(versions.METALLB_CHARTS, versions.METALLB_VERSION, charts["metallb"])
    monkeypatch.setattr(versions, "NGINX_INGRESS_CHART_PIN", charts["nginx-ingress"])
    monkeypatch.setattr(versions, "INGRESS_NGINX_CHART_PIN", charts["ingress-nginx"])


def child_prelude(install_sha: str, charts: dict[str, versions.ChartPin]) -> str:
    """Python code that sets the same pins in a child process before it runs piimg."""
    lines = ["from piimg import versions as v", f"v.K3S_INSTALL_SH_SHA256[{VERSION!r}] = {install_sha!r}"]
    for name, p in charts.items():
        ctor = f"v.ChartPin({p.name!r}, {p.version!r}, {p.url!r}, {p.sha256!r}, 'test')"
        if name == "metallb":
            lines.append(f"v.METALLB_CHARTS[{versions.METALLB_VERSION!r}] = {ctor}")
        elif name == "nginx-ingress":
            lines.append(f"v.NGINX_INGRESS_CHART_PIN = {ctor}")
        else:
            lines.append(f"v.INGRESS_NGINX_CHART_PIN = {ctor}")
    return "\n".join(lines) + "\n"


@dataclass
class Published:
    rel: Release
    install_sha: str
    charts: dict[str, versions.ChartPin]

    @property
    def mirror(self) -> str:
        return self.rel.mirror

    def cluster_yaml(self) -> str:
        return self.rel.cluster_yaml()

    def child_prelude(self) -> str:
        return child_prelude(self.install_sha, self.charts)


#: Environment variable the child processes of a test read the pins from (see child_prelude);
#: only test code reads it (``exec(os.environ.get(PRELUDE_ENV, ""))``), never piimg.
PRELUDE_ENV = "PIIMG_TEST_PINS_PRELUDE"


@pytest.fixture(scope="session")
def _session_release() -> Iterator[Published]:
    with FileServer() as srv:
        rel = Release(srv)
        pins = publish(rel)
        yield Published(rel, pins["install.sh"], publish_charts(rel))


@pytest.fixture(autouse=True)
def _release_everywhere(_session_release: Published, monkeypatch: pytest.MonkeyPatch) -> Published:
    """Every test: a build fetches k3s and the charts from the generated release on 127.0.0.1.

    ``$PIIMG_ARTIFACT_MIRROR`` names the mirror (a spec's cluster.artifact_mirror
    still wins), piimg's pins point at the generated files, and child
    processes get the same pins through ``$PIIMG_TEST_PINS_PRELUDE``.
    """
    rel = _session_release
    monkeypatch.setenv("PIIMG_ARTIFACT_MIRROR", rel.mirror)
    monkeypatch.setenv(PRELUDE_ENV, rel.child_prelude())
    pin(monkeypatch, rel.install_sha, rel.charts)
    return rel


@pytest.fixture()
def k3s_release(monkeypatch: pytest.MonkeyPatch) -> Iterator[Published]:
    """A mirror on 127.0.0.1 with a generated k3s release and charts; piimg's pins point at them."""
    with FileServer() as srv:
        rel = Release(srv)
        pins = publish(rel)
        charts = publish_charts(rel)
        pin(monkeypatch, pins["install.sh"], charts)
        yield Published(rel, pins["install.sh"], charts)
