"""Generated fixtures for the fetch tests: small raw "disk images", their compressed forms, a catalog."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import lzma
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

MIB = 1 << 20


def raw_image(size: int = 3 * MIB, *, seed: int = 1, trailing_zeros: bool = True) -> bytes:
    """Pseudo-random data blocks separated by zero runs (free space), like a small disk image."""
    rng = random.Random(seed)
    out = bytearray(size)
    pos = 4096
    while pos < size - (MIB // 2 if trailing_zeros else 0):
        n = rng.randint(1, 64) * 1024
        words = b" ".join(rng.choice((b"boot", b"kernel", b"ext4", b"pi", b"k3s", b"x" * 7)) for _ in range(n // 4))
        chunk = (words + rng.randbytes(n // 8))[:n]
        out[pos : pos + len(chunk)] = chunk
        pos += len(chunk) + rng.randint(0, 4) * 64 * 1024
    out[0:4] = b"\xeb\x3c\x90M"  # not a compression magic
    if not trailing_zeros:
        out[-1] = 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_decoder_programs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty PATH, as on a machine without xz, zstd or pigz: piimg decodes with Python's modules."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not any(shutil.which(tool) for tool in ("xz", "zstd", "pigz"))


@functools.lru_cache(maxsize=64)
def compress(data: bytes, fmt: str, *, multiblock: bool = False) -> bytes:
    """``fmt``: raw, xz, gz, zst, zip."""
    if fmt == "raw":
        return data
    if fmt == "xz":
        if multiblock and shutil.which("xz"):
            return subprocess.run(["xz", "-T2", "--block-size=256KiB", "-1", "-c"], input=data,
                                  capture_output=True, check=True).stdout
        return lzma.compress(data, preset=1)
    if fmt == "gz":
        return gzip.compress(data, compresslevel=1)
    if fmt == "zst":
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress(data)
    if fmt == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("README.txt", "not the image\n")
            zf.writestr("2025-01-01-test.img", data)
        return buf.getvalue()
    raise ValueError(fmt)


EXT = {"raw": ".img", "xz": ".img.xz", "gz": ".img.gz", "zst": ".img.zst", "zip": ".zip"}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- a catalog on a FileServer

LITE_OLD = "/raspios_lite_arm64/images/raspios_lite_arm64-2024-11-19/2024-11-19-raspios-bookworm-arm64-lite.img.xz"
LITE_NEW = "/raspios_lite_arm64/images/raspios_lite_arm64-2025-05-13/2025-05-13-raspios-bookworm-arm64-lite.img.xz"
DESKTOP = "/raspios_arm64/images/raspios_arm64-2025-05-13/2025-05-13-raspios-bookworm-arm64.img.xz"
ARMHF = "/raspios_lite_armhf/images/raspios_lite_armhf-2025-05-13/2025-05-13-raspios-bookworm-armhf-lite.img.gz"
ZST = "/third/zst-os/zst-os-2025-01-01/zst-os.img.zst"
ZIP = "/third/ubuntu-server-24-04.zip"
NOSHA = "/nosha/images/nosha-2025-02-02/nosha.img.xz"


def entry(srv: object, path: str, data: bytes, fmt: str, *, date: str, name: str, init: str | None = "systemd",
          with_sha: bool = True, extract_sha: str | None = None, sha_file: bool = False) -> dict[str, object]:
    """Put the compressed image on ``srv`` and return its os_list item."""
    blob = compress(data, fmt)
    srv.add(path, blob)  # type: ignore[attr-defined]
    if sha_file:
        srv.add(path + ".sha256", f"{sha(blob)}  {path.rsplit('/', 1)[-1]}\n")  # type: ignore[attr-defined]
    item: dict[str, object] = {
        "name": name,
        "description": f"{name} for tests",
        "icon": "https://example.invalid/icon.png",
        "url": srv.url(path),  # type: ignore[attr-defined]
        "extract_size": len(data),
        "extract_sha256": extract_sha or sha(data),
        "image_download_size": len(blob),
        "release_date": date,
        "devices": ["pi5-64bit", "pi4-64bit"],
    }
    if with_sha:
        item["image_download_sha256"] = sha(blob)
    if init:
        item["init_format"] = init
    return item


def serve_catalog(srv: object, images: dict[str, bytes]) -> str:
    """A catalog with nested categories and a subitems_url; returns the catalog URL.

    ``images`` maps the path constants above to raw image bytes.
    """
    sub = {
        "os_list": [
            entry(srv, LITE_NEW, images[LITE_NEW], "xz", date="2025-05-13", name="Raspberry Pi OS Lite (64-bit)",
                  init="cloudinit-rpi"),
            {
                "name": "Other",
                "subitems": [
                    entry(srv, ARMHF, images[ARMHF], "gz", date="2025-05-13", name="Raspberry Pi OS Lite (32-bit)"),
                    entry(srv, ZST, images[ZST], "zst", date="2025-01-01", name="Zst OS", init=None),
                    entry(srv, ZIP, images[ZIP], "zip", date="2024-04-25", name="Ubuntu Server 24.04"),
                    entry(srv, NOSHA, images[NOSHA], "xz", date="2025-02-02", name="No-sha OS", with_sha=False,
                          sha_file=True),
                ],
            },
        ]
    }
    import json

    srv.add("/os_list_other.json", json.dumps(sub))  # type: ignore[attr-defined]
    top = {
        "imager": {"latest_version": "2.0.0", "url": "https://example.invalid/", "devices": []},
        "os_list": [
            entry(srv, DESKTOP, images[DESKTOP], "xz", date="2025-05-13", name="Raspberry Pi OS (64-bit)"),
            {
                "name": "Raspberry Pi OS (other)",
                "description": "Other Raspberry Pi OS based images",
                "subitems": [
                    entry(srv, LITE_OLD, images[LITE_OLD], "xz", date="2024-11-19",
                          name="Raspberry Pi OS Lite (64-bit, old)"),
                    {"name": "More", "subitems_url": "os_list_other.json"},
                ],
            },
            {"name": "Erase", "description": "Format card as FAT32", "url": "internal://format"},
            {"name": "Use custom", "description": "Select a custom .img from your computer"},
        ],
    }
    return srv.add("/os_list_imagingutility_v4.json", json.dumps(top))  # type: ignore[attr-defined]


def catalog_images() -> dict[str, bytes]:
    paths = [LITE_OLD, LITE_NEW, DESKTOP, ARMHF, ZST, ZIP, NOSHA]
    return {p: raw_image(MIB + i * 65536, seed=i + 10) for i, p in enumerate(paths)}
