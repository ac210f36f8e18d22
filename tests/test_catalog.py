from __future__ import annotations

import json
from pathlib import Path

import pytest

from piimg.errors import ConfigError, DownloadError
from piimg.fetch import catalog as cat
from piimg.fetch.source import list_catalog
from tests import fetchfixtures as ig
from tests.httpserver import FileServer

pytestmark = pytest.mark.integration  # a real HTTP server on 127.0.0.1


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2025-05-13/"
         "2025-05-13-raspios-bookworm-arm64-lite.img.xz", "raspios-lite-arm64"),
        ("https://downloads.raspberrypi.com/raspios_oldstable_lite_armhf/images/raspios_oldstable_lite_armhf-2025-05-07/"
         "2025-05-06-raspios-bullseye-armhf-lite.img.xz", "raspios-oldstable-lite-armhf"),
        ("https://downloads.raspberrypi.com/raspios_arm64/images/raspios_arm64-2025-05-13/x.img.xz", "raspios-arm64"),
        ("https://example.org/releases/myos-2025-01-01/myos.img.zst", "myos"),
        ("https://cdimage.ubuntu.com/releases/24.04/ubuntu-24.04-preinstalled-server-arm64+raspi.img.xz",
         "ubuntu-24-04-preinstalled-server-arm64-raspi"),
        ("https://example.org/2025-01-01-thing.zip", "thing"),
    ],
)
def test_slug_for_url(url: str, slug: str) -> None:
    assert cat.slug_for_url(url) == slug


def _fetch(url: str) -> str:
    from piimg.fetch.download import fetch_text

    return fetch_text(url)


def test_nested_categories_and_subitems_url(srv: tuple[FileServer, str]) -> None:
    s, url = srv
    entries = cat.load(url, fetch_text=_fetch)
    slugs = sorted(e.slug for e in entries)
    assert slugs == sorted(
        ["raspios-arm64", "raspios-lite-arm64", "raspios-lite-arm64", "raspios-lite-armhf", "zst-os",
         "ubuntu-server-24-04", "nosha"]
    )
    assert s.requests_for("/os_list_other.json")  # subitems_url was followed
    new = next(e for e in entries if e.url.endswith(ig.LITE_NEW))
    assert new.category == ("Raspberry Pi OS (other)", "More")
    assert new.init_format == "cloudinit-rpi"
    assert new.devices == ("pi5-64bit", "pi4-64bit")
    assert all(not e.url.startswith("internal://") for e in entries)


def test_resolve_slug_to_newest(srv: tuple[FileServer, str]) -> None:
    _, url = srv
    entries = cat.load(url, fetch_text=_fetch)
    e = cat.resolve(entries, "raspios-lite-arm64", source=url)
    assert e.release_date == "2025-05-13" and e.url.endswith(ig.LITE_NEW)


def test_unknown_slug_suggests(srv: tuple[FileServer, str]) -> None:
    _, url = srv
    entries = cat.load(url, fetch_text=_fetch)
    with pytest.raises(ConfigError, match=r"image\.os: 'raspios-lite-arm46' is not in the catalog") as exc:
        cat.resolve(entries, "raspios-lite-arm46", source=url)
    assert exc.value.hint is not None and "raspios-lite-arm64" in exc.value.hint


def test_local_catalog_file_with_relative_subitems(tmp_path: Path) -> None:
    (tmp_path / "sub.json").write_text(json.dumps([
        {"name": "A", "url": "https://x.invalid/a/images/a-2025-01-01/a.img.xz", "release_date": "2025-01-01"},
    ]))
    (tmp_path / "top.json").write_text(json.dumps({"os_list": [{"name": "cat", "subitems_url": "sub.json"}]}))
    entries = cat.load(str(tmp_path / "top.json"), fetch_text=_fetch)
    assert [e.slug for e in entries] == ["a"]


def test_not_a_catalog(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(DownloadError, match="not a Raspberry Pi Imager catalog"):
        cat.load(str(tmp_path / "bad.json"), fetch_text=_fetch)
    (tmp_path / "bad2.json").write_text("{nope")
    with pytest.raises(DownloadError, match="not valid JSON"):
        cat.load(str(tmp_path / "bad2.json"), fetch_text=_fetch)


def test_catalog_is_cached_for_offline_use(srv: tuple[FileServer, str], home: Path) -> None:
    s, url = srv
    online = list_catalog(url)
    s.reset_log()
    offline = list_catalog(url, offline=True)
    assert offline == online
    assert s.requests == []


def test_offline_without_cached_catalog(home: Path) -> None:
    with pytest.raises(DownloadError, match=r"offline: the catalog .* has never been downloaded"):
        list_catalog("https://example.invalid/os_list.json", offline=True)


# ------------------------------------------------------------------ piimg os list


def test_os_list_cli(srv: tuple[FileServer, str], project: Path, piimg) -> None:
    _, url = srv
    r = piimg("os", "list", "--catalog", url)
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SLUG", "NAME", "RELEASED", "DOWNLOAD", "INIT", "DEVICES"]
    lite = [line for line in lines if line.startswith("  raspios-lite-arm64 ")]
    assert len(lite) == 2 and "2025-05-13" in lite[0] and "cloudinit-rpi" in lite[0]  # newest first
    assert "pi5-64bit,pi4-64bit" in lite[0]


def test_os_list_json(srv: tuple[FileServer, str], project: Path, piimg) -> None:
    _, url = srv
    r = piimg("os", "list", "--catalog", url, "--json")
    assert r.exit_code == 0, r
    data = json.loads(r.stdout)
    zst = next(d for d in data if d["slug"] == "zst-os")
    assert zst["init_format"] is None and zst["release_date"] == "2025-01-01"
    assert zst["image_download_sha256"] and zst["extract_size"] == len(ig.catalog_images()[ig.ZST])


def test_os_list_uses_spec_catalog(srv: tuple[FileServer, str], project: Path, piimg) -> None:
    _, url = srv
    (project / "piimg.yaml").write_text(f"image:\n  catalog: {url}\n")
    r = piimg("os", "list", "--json")
    assert r.exit_code == 0, r
    assert {d["slug"] for d in json.loads(r.stdout)} >= {"raspios-lite-arm64", "zst-os"}


def test_os_list_unreachable_catalog(project: Path, piimg) -> None:
    with FileServer() as s:
        url = s.url("/os_list.json")
    r = piimg("os", "list", "--catalog", url)
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and url in r.stderr
