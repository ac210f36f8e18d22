"""piimg fetch / obtain_base_image against a real catalog and image server on loopback."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import yaml

from piimg.errors import ConfigError, DownloadError, ImageError, Interrupted
from piimg.fetch import source
from piimg.fetch.cache import Cache
from piimg.fetch.download import RetryPolicy
from piimg.fetch.source import obtain_base_image
from piimg.paths import ProjectPaths, user_cache_dir
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from tests import fetchfixtures as ig
from tests.httpserver import FileServer

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02, connect_timeout=10, read_timeout=30)


def _spec(project: Path, text: str) -> spec_model.Spec:
    (project / "piimg.yaml").write_text(text)
    return spec_load.load(project / "piimg.yaml")


def _cache_files() -> list[str]:
    root = user_cache_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _image_files() -> list[str]:
    return [f for f in _cache_files() if f.startswith(("images/", "downloads/"))]


def test_fetch_os_from_catalog_then_cache_hit(srv, images, project: Path, piimg) -> None:
    s, url = srv
    _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    r = piimg("fetch", "--image-only")  # the image's lines only; k3s and the charts: test_fetch_cluster_files
    assert r.exit_code == 0, r
    path = Path(r.stdout.strip())
    assert path.is_file() and path.is_relative_to(user_cache_dir())
    assert path.read_bytes() == images[ig.LITE_NEW]  # the newest of the two lite-arm64 releases
    assert s.bytes_sent(ig.LITE_OLD) == 0
    assert not [f for f in _cache_files() if f.startswith("downloads/")]  # the download is not kept
    # progress is quiet off a TTY: plain lines, no carriage returns or bars
    assert "\r" not in r.stderr and len(r.stderr.splitlines()) < 10, r.stderr

    s.reset_log()
    r2 = piimg("fetch", "--json")
    assert r2.exit_code == 0, r2
    got = json.loads(r2.stdout)
    assert got["path"] == str(path) and got["init_format"] == "cloudinit-rpi"
    assert got["sha256"] == ig.sha(images[ig.LITE_NEW])
    assert s.requests_for(ig.LITE_NEW) == []  # cache hit: the image is not requested again


def test_base_image_contract(srv, images, project: Path) -> None:
    _, url = srv
    spec = _spec(project, f"image:\n  os: zst-os\n  catalog: {url}\n")
    base = obtain_base_image(spec, policy=FAST)
    data = images[ig.ZST]
    assert base.sha256 == ig.sha(data) and base.size == len(data)
    assert base.download_sha256 == ig.sha(ig.compress(data, "zst"))
    assert base.init_format is None and base.name == "Zst OS"


@pytest.mark.parametrize("slug,key", [("raspios-lite-armhf", ig.ARMHF), ("ubuntu-server-24-04", ig.ZIP)])
def test_other_compressions(srv, images, project: Path, slug: str, key: str) -> None:
    _, url = srv
    # a 32-bit image needs an ingress that publishes armhf images (spec rule _component_architectures)
    cluster = "cluster:\n  ingress: traefik\n  disable: [servicelb]\n" if "armhf" in slug else ""
    spec = _spec(project, f"image:\n  os: {slug}\n  catalog: {url}\n{cluster}")
    base = obtain_base_image(spec, policy=FAST)
    assert base.path.read_bytes() == images[key]


def test_published_sha256_file_is_used(srv, images, project: Path) -> None:
    s, url = srv
    spec = _spec(project, f"image:\n  os: nosha\n  catalog: {url}\n")
    base = obtain_base_image(spec, policy=FAST)
    assert base.path.read_bytes() == images[ig.NOSHA]
    assert s.requests_for(ig.NOSHA + ".sha256")


def test_wrong_published_sha256_is_rejected(srv, project: Path) -> None:
    s, url = srv
    s.add(ig.NOSHA + ".sha256", "0" * 64 + "  nosha.img.xz\n")
    spec = _spec(project, f"image:\n  os: nosha\n  catalog: {url}\n")
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch.*nosha\.img\.xz\.sha256 published beside it"):
        obtain_base_image(spec, policy=FAST)
    assert _image_files() == []


def test_http_without_any_checksum_is_refused(srv, project: Path) -> None:
    s, url = srv
    del s.files[ig.NOSHA + ".sha256"]
    spec = _spec(project, f"image:\n  os: nosha\n  catalog: {url}\n")
    with pytest.raises(DownloadError, match="refusing an http:// download without a checksum"):
        obtain_base_image(spec, policy=FAST)
    assert s.requests_for(ig.NOSHA) == []


def test_corrupted_download_is_rejected_and_not_cached(srv, images, project: Path, piimg) -> None:
    s, url = srv
    blob = bytearray(s.files[ig.LITE_NEW])
    blob[len(blob) // 2] ^= 0xFF
    s.files[ig.LITE_NEW] = bytes(blob)
    _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    r = piimg("fetch")
    assert r.exit_code == 1
    error = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "SHA-256 mismatch" in error[0] and "catalog image_download_sha256" in error[0]
    assert "Traceback" not in r.stderr
    assert _image_files() == []


def test_wrong_extract_sha256_is_rejected(images, project: Path) -> None:
    with FileServer() as s:
        item = ig.entry(s, ig.LITE_NEW, images[ig.LITE_NEW], "xz", date="2025-05-13", name="bad",
                        extract_sha="ab" * 32)
        url = s.add("/cat.json", json.dumps({"os_list": [item]}))
        spec = _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
        with pytest.raises(ImageError, match="extract_sha256"):
            obtain_base_image(spec, policy=FAST)
    assert _image_files() == []


def test_resume_in_fetch_after_drop(srv, images, project: Path) -> None:
    from tests.httpserver import Fault

    s, url = srv
    size = len(s.files[ig.LITE_NEW])
    s.faults[ig.LITE_NEW] = Fault(drop_after=size // 3, times=1)
    spec = _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    base = obtain_base_image(spec, policy=FAST)
    assert base.path.read_bytes() == images[ig.LITE_NEW]
    assert s.bytes_sent(ig.LITE_NEW) == size
    assert [r.range for r in s.requests_for(ig.LITE_NEW)] == [None, f"bytes={size // 3}-"]


def test_offline_miss_names_what_is_missing(srv, project: Path, piimg) -> None:
    s, url = srv
    _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    r = piimg("fetch", "--offline")
    assert r.exit_code == 1
    assert "offline: the catalog" in r.stderr and "never been downloaded" in r.stderr
    assert s.requests == []
    # with the catalog cached but not the image
    assert piimg("os", "list").exit_code == 0
    r = piimg("fetch", "--offline")
    assert r.exit_code == 1
    assert "offline: image.os raspios-lite-arm64" in r.stderr and "not in the cache" in r.stderr
    assert ig.sha(s.files[ig.LITE_NEW]) in r.stderr
    assert not s.requests_for(ig.LITE_NEW)


def test_offline_hit(srv, images, project: Path, piimg) -> None:
    s, url = srv
    _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    assert piimg("fetch").exit_code == 0
    s.reset_log()
    r = piimg("fetch", "--offline")
    assert r.exit_code == 0, r
    assert Path(r.stdout.strip()).read_bytes() == images[ig.LITE_NEW]
    assert s.requests == []


def test_image_url_with_sha_hit_makes_no_request(srv, images, project: Path) -> None:
    s, _ = srv
    blob = s.files[ig.ZST]
    spec = _spec(project, f"image:\n  url: {s.url(ig.ZST)}\n  sha256: {ig.sha(blob)}\n")
    first = obtain_base_image(spec, policy=FAST)
    s.reset_log()
    again = obtain_base_image(spec, policy=FAST)
    assert again == first and s.requests == []


def test_verify_detects_a_corrupt_cache_entry(srv, images, project: Path, piimg) -> None:
    s, url = srv
    _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    path = Path(piimg("fetch").stdout.strip())
    with open(path, "r+b") as fh:
        fh.seek(5000)
        fh.write(b"rot")
    s.reset_log()
    assert piimg("fetch").exit_code == 0  # cheap check: size and stored digest only
    assert s.requests_for(ig.LITE_NEW) == []
    r = piimg("fetch", "--verify")
    assert r.exit_code == 0, r
    assert "corrupt" in r.stderr
    assert path.read_bytes() == images[ig.LITE_NEW]  # downloaded again
    assert s.requests_for(ig.LITE_NEW)


def test_http_image_override_needs_sha256(srv, project: Path, piimg) -> None:
    s, _ = srv
    _spec(project, "image:\n  os: raspios-lite-arm64\n")
    r = piimg("fetch", "--image", s.url(ig.ZST))
    assert r.exit_code == 1 and "--image: an http:// image needs --sha256" in r.stderr
    assert s.requests == []
    r = piimg("fetch", "--image", s.url(ig.ZST), "--sha256", "xyz")
    assert r.exit_code == 1 and "--sha256" in r.stderr


@pytest.mark.parametrize("fmt", ["gz", "raw"])
def test_image_override_url_with_sha(srv, images, project: Path, piimg, fmt: str) -> None:
    s, _ = srv
    data = images[ig.ARMHF]
    url = s.add(f"/custom/plain{ig.EXT[fmt]}", ig.compress(data, fmt))
    _spec(project, "image:\n  os: raspios-lite-arm64\n")
    r = piimg("fetch", "--image", url, "--sha256", ig.sha(s.files[f"/custom/plain{ig.EXT[fmt]}"]).upper())
    assert r.exit_code == 0, r
    path = Path(r.stdout.strip())
    assert path.read_bytes() == data
    assert path.stat().st_blocks * 512 < len(data)  # stored sparse, even when downloaded raw


def test_local_raw_image_is_used_in_place(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ig.raw_image(ig.MIB)
    img = ig.write(project / "my.img", data)
    spec = _spec(project, "image:\n  url: ./my.img\n")
    base = obtain_base_image(spec)
    assert base.path == img.resolve() and base.sha256 == ig.sha(data) and base.download_sha256 is None
    assert not (user_cache_dir() / "images").exists()  # never copied

    calls: list[Path] = []
    real = source.sha256_file
    monkeypatch.setattr(source, "sha256_file", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    assert obtain_base_image(spec) == base
    assert calls == []  # the digest is remembered by (realpath, size, mtime)
    img.write_bytes(data[:-1] + b"\x01")
    assert obtain_base_image(spec).sha256 == ig.sha(data[:-1] + b"\x01")
    assert calls == [img.resolve()]


def test_local_raw_image_sha_mismatch(project: Path) -> None:
    ig.write(project / "my.img", ig.raw_image(ig.MIB))
    with pytest.raises(DownloadError, match=r"my\.img: SHA-256 mismatch"):
        obtain_base_image(spec_model.Spec(paths=ProjectPaths.in_folder(project)), image="my.img", sha256="0" * 64)


def test_local_compressed_image_goes_to_cache(project: Path) -> None:
    data = ig.raw_image(ig.MIB)
    blob = ig.compress(data, "xz")
    src = ig.write(project / "dl" / "thing.img.xz", blob)
    base = obtain_base_image(spec_model.Spec(paths=ProjectPaths.in_folder(project)), image=str(src), sha256=ig.sha(blob))
    assert base.path.read_bytes() == data and base.download_sha256 == ig.sha(blob)
    assert src.exists()  # the user's file is left alone
    assert Cache().lookup(ig.sha(blob)) is not None


def test_local_image_missing(project: Path) -> None:
    with pytest.raises(ImageError, match=r"--image: .*nope\.img\.xz: no such file"):
        obtain_base_image(spec_model.Spec(paths=ProjectPaths.in_folder(project)), image="nope.img.xz")


def test_sha256_without_image(project: Path) -> None:
    with pytest.raises(ConfigError, match="--sha256: given without --image"):
        obtain_base_image(spec_model.Spec(paths=ProjectPaths.in_folder(project)), sha256="a" * 64)


class _CtrlC:
    """A reporter whose bars raise KeyboardInterrupt (as Ctrl-C does) once ``after`` units went by."""

    def __init__(self, after: int, *, only: str = "") -> None:
        self.after = after
        self.only = only

    def info(self, message: str) -> None:
        pass

    note = info

    def warn(self, message: str) -> None:
        pass

    def bar(self, description: str, total: int | None, *, unit: str = "B"):  # type: ignore[no-untyped-def]
        import contextlib

        outer = self

        class Bar:
            done = 0

            def update(self, n: int) -> None:
                self.done += n
                if description.startswith(outer.only) and self.done >= outer.after:
                    raise KeyboardInterrupt

        return contextlib.nullcontext(Bar())


def test_ctrl_c_during_download_leaves_only_a_resumable_part(srv, images, project: Path) -> None:
    s, url = srv
    spec = _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    size = len(s.files[ig.LITE_NEW])
    with pytest.raises(KeyboardInterrupt):
        obtain_base_image(spec, policy=FAST, reporter=_CtrlC(size // 2, only="downloading"))  # type: ignore[arg-type]
    files = _image_files()
    assert len(files) == 1 and files[0].startswith("downloads/") and files[0].endswith(".part"), files
    have = (user_cache_dir() / files[0]).stat().st_size
    s.reset_log()
    base = obtain_base_image(spec, policy=FAST)
    assert base.path.read_bytes() == images[ig.LITE_NEW]
    assert s.bytes_sent(ig.LITE_NEW) == size - have


def test_ctrl_c_during_decompression_leaves_only_the_part(srv, images, project: Path) -> None:
    s, url = srv
    spec = _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    with pytest.raises(KeyboardInterrupt) as err:
        obtain_base_image(spec, policy=FAST, reporter=_CtrlC(1, only="decompressing"))  # type: ignore[arg-type]
    assert isinstance(err.value, Interrupted) and err.value.state.endswith(  # what the CLI prints (S13)
        "is complete and kept; piimg fetch (or the same command again) goes on from decompressing it")
    files = _image_files()
    assert len(files) == 1 and files[0].endswith(".part"), files
    s.reset_log()
    base = obtain_base_image(spec, policy=FAST)
    assert base.path.read_bytes() == images[ig.LITE_NEW]
    assert s.bytes_sent(ig.LITE_NEW) == 0  # the complete download was reused


def test_network_down_falls_back_to_cached_catalog(images, project: Path) -> None:
    from piimg.progress import QuietReporter

    with FileServer() as s:
        url = ig.serve_catalog(s, images)
        spec = _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
        first = obtain_base_image(spec, policy=FAST)
    # the server is gone now: the catalog cannot be fetched, the cached copy and image are used
    reporter = QuietReporter()
    assert obtain_base_image(spec, policy=FAST, reporter=reporter) == first
    assert any("using the copy of the catalog cached earlier" in w for w in reporter.warnings)


def test_fetch_cluster_files_then_offline(srv, images, project: Path, piimg, _release_everywhere) -> None:
    """`piimg fetch` also caches k3s for the image's architecture and the charts; --offline then needs no server."""
    s, url = srv
    _spec(project, f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    rel = _release_everywhere.rel
    rel.srv.reset_log()
    r = piimg("fetch", "--json")
    assert r.exit_code == 0, r
    got = json.loads(r.stdout)
    k3s = got["k3s"]
    assert k3s["arch"] == "arm64" and k3s["version"] == "v1.36.3+k3s1"  # arm64: from the catalog URL
    assert Path(k3s["binary"]["path"]).read_bytes() == rel.files[rel.url("k3s-arm64")]
    assert Path(k3s["install_sh"]["path"]).is_file() and "airgap_images" not in k3s
    assert sorted(got["charts"]) == ["metallb", "nginx-ingress"]
    assert "cached: k3s-arm64" in r.stderr
    # piimg manifests shows what the card gets: the cached archives inline
    r = piimg("manifests")
    charts = {d["metadata"]["name"]: d for d in yaml.safe_load_all(r.stdout) if d and d.get("kind") == "HelmChart"}
    assert sorted(charts) == ["metallb", "nginx-ingress"]
    for name, chart in charts.items():
        assert base64.b64decode(chart["spec"]["chartContent"]) == Path(got["charts"][name]["path"]).read_bytes()
    rel.srv.reset_log()
    s.reset_log()
    r = piimg("fetch", "--offline", "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout) == got
    assert rel.requested() == [] and s.requests == []
    # --image-only does not need them; offline without them names the first missing file
    shutil.rmtree(user_cache_dir() / "artifacts")
    assert piimg("fetch", "--offline", "--image-only").exit_code == 0
    r = piimg("fetch", "--offline")
    assert r.exit_code == 1 and "offline: install.sh (sha256" in r.stderr and "piimg fetch" in r.stderr
