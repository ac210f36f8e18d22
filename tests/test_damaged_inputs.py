"""Damaged or wrong input images (issue 16, items 6, 7 and 8): refused with one line that
names the input image, before anything is written and before long work is done.

The FATs are made by mkfs.vfat and mcopy (tests/imagegen.py) and damaged here on
purpose; where a file's clusters are comes from mtools' ``mshowfat``, the FAT's place
from the boot sector fields of fatgen103 (BPB_RsvdSecCnt at 0x0E, BPB_NumFATs at
0x10, BPB_FATSz32 at 0x24, 4-byte FAT32 entries), and fsck.vfat confirms each damage
is what the test says it is. Nothing reads the fixtures through piimg's FAT code.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from piimg.fetch import source
from tests.conftest import TEST_KEY, have
from tests.fat_helpers import tool_env
from tests.imagegen import GeneratedImage, extract_partition, make_image, tools_available
from tests.releaseserver import Published

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (tools_available() and have("mshowfat") and have("fsck.vfat")),
                       reason="needs dosfstools, mtools, e2fsprogs"),
]

SPEC = f"""\
access:
  ssh_authorized_keys: ["{TEST_KEY}"]
nodes:
  - {{hostname: k8s-master, role: server, address: 10.0.2.10}}
"""
FIRMWARE = bytes(range(256)) * 6  # 1536 bytes: three 512-byte clusters


@pytest.fixture(autouse=True)
def _release(k3s_release: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build also fetches k3s and the charts: from a generated release on a loopback mirror."""
    monkeypatch.setattr(sys.modules[__name__], "SPEC", SPEC + k3s_release.cluster_yaml() + "image:\n  arch: arm64\n")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    # one sector per cluster, so small files span several clusters
    return make_image(tmp_path_factory.mktemp("img") / "pi.img", boot_mib=48, root_mib=24, sectors_per_cluster=1,
                      boot_extra={"start4.elf": FIRMWARE, "firstrun.sh": b"#!/bin/sh\n" + b"#" * 1400 + b"\n"})


def clusters(img: Path, offset: int, name: str) -> list[int]:
    """The clusters of ``name`` in order, as mtools sees them (``::/x <3-5, 9>``)."""
    out = subprocess.run(["mshowfat", "-i", f"{img}@@{offset}", f"::{name}"], capture_output=True, text=True,
                         env=tool_env(), check=True).stdout
    spans = re.search(r"<([^>]*)>", out)
    assert spans, out
    result: list[int] = []
    for part in spans.group(1).split(","):
        a, _, b = part.strip().partition("-")
        result += range(int(a), int(b or a) + 1)
    return result


def set_fat_entry(img: Path, offset: int, cluster: int, value: int) -> None:
    """Write one FAT32 entry in every FAT copy (fatgen103 boot sector fields)."""
    with open(img, "r+b") as fh:
        fh.seek(offset)
        boot = fh.read(512)
        bps, = struct.unpack_from("<H", boot, 0x0B)
        reserved, = struct.unpack_from("<H", boot, 0x0E)
        nfats = boot[0x10]
        fatsz, = struct.unpack_from("<I", boot, 0x24)
        for i in range(nfats):
            fh.seek(offset + (reserved + i * fatsz) * bps + 4 * cluster)
            fh.write(struct.pack("<I", value))


def fsck_says(img: GeneratedImage, tmp: Path) -> str:
    part = extract_partition(img.path, img.boot_offset, img.boot_size, tmp / "boot.part")
    proc = subprocess.run(["fsck.vfat", "-n", str(part)], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def damaged(pristine: GeneratedImage, tmp_path: Path) -> GeneratedImage:
    path = tmp_path / "damaged.img"
    shutil.copyfile(pristine.path, path)
    return GeneratedImage(path, pristine.disk_id, pristine.boot_offset, pristine.boot_size, pristine.root_offset,
                          pristine.root_size, pristine.flavour)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(piimg: Any, project: Path, img: GeneratedImage, *words: str) -> str:
    (project / "piimg.yaml").write_text(SPEC)
    before = sha(img.path)
    r = piimg("build", "--image", str(img.path))
    assert r.exit_code == 1, r
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith(("error:", "hint:", "Traceback"))]
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), r.stderr
    assert r.stderr.strip().endswith(lines[1])
    for word in words:
        assert word in r.stderr, r.stderr
    assert sha(img.path) == before  # the input is never written
    out = project / "build"
    assert not (out / "k8s-master.img").exists()
    assert not out.exists() or [p.name for p in out.iterdir() if p.name != "last.json"] == []
    return lines[0]


def test_cross_linked_chains_are_refused_not_made_worse(pristine: GeneratedImage, tmp_path: Path, piimg: Any,
                                                        project: Path) -> None:
    img = damaged(pristine, tmp_path)
    fw = clusters(img.path, img.boot_offset, "start4.elf")
    script = clusters(img.path, img.boot_offset, "firstrun.sh")
    assert len(fw) == 3 and len(script) == 3
    # firstrun.sh's chain now runs on into start4.elf's (still three clusters long, so its
    # size matches): replacing firstrun.sh, as every systemd-format build does, would free
    # the firmware's last two clusters and then write the new script over them
    set_fat_entry(img.path, img.boot_offset, script[0], fw[1])
    assert "share clusters" in fsck_says(img, tmp_path), fsck_says(img, tmp_path)
    line = refused(piimg, project, img, "fsck.vfat", "cross-linked", "'firstrun.sh'", "'start4.elf'")
    assert str(img.path) in line and ".part" not in line and "build/" not in line  # names the input (item 6)


def test_looping_chain_is_refused(pristine: GeneratedImage, tmp_path: Path, piimg: Any, project: Path) -> None:
    img = damaged(pristine, tmp_path)
    fw = clusters(img.path, img.boot_offset, "start4.elf")
    set_fat_entry(img.path, img.boot_offset, fw[2], fw[0])  # the last cluster leads back to the first
    refused(piimg, project, img, "fsck.vfat", "'start4.elf'", "loops")


def test_error_in_the_node_copy_names_the_input_image(pristine: GeneratedImage, tmp_path: Path, piimg: Any,
                                                      project: Path) -> None:
    # firstrun.sh (replaced by every systemd-format build, never read before the copy is
    # made) has a chain that runs into a free cluster: the error is found in the node's
    # temporary copy, and must name the image the user gave, not that deleted copy
    img = damaged(pristine, tmp_path)
    first = clusters(img.path, img.boot_offset, "firstrun.sh")
    set_fat_entry(img.path, img.boot_offset, first[0], 0)
    assert "FIRSTRUN.SH\n  Contains a free cluster" in fsck_says(img, tmp_path)
    line = refused(piimg, project, img, "'firstrun.sh'", "free cluster")
    assert line.startswith(f"error: {img.path} ") and ".part" not in line


def test_a_big_non_image_is_refused_before_it_is_hashed(tmp_path: Path, piimg: Any, project: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "backup.bin"
    with open(big, "wb") as fh:  # 32 GiB, sparse: no partition table, no file systems
        fh.truncate(32 * 2**30)
        fh.write(b"not a disk image")

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("hashed before the partition table was looked at")

    monkeypatch.setattr(source, "sha256_file", no_hashing)
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(big))
    assert r.exit_code == 1, r
    assert r.stderr.strip() == f"error: {big}: no partition table (no MBR boot signature 55 AA in the first sector)"
    assert not (project / "build" / "k8s-master.img").exists()


def test_a_compressed_non_image_is_refused_before_it_is_decompressed(tmp_path: Path, piimg: Any, project: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    packed = tmp_path / "notes.img.gz"
    packed.write_bytes(gzip.compress(b"just some text\n" * 100))

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("hashed before the partition table was looked at")

    monkeypatch.setattr(source, "sha256_file", no_hashing)
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(packed))
    assert r.exit_code == 1, r
    assert r.stderr.strip().startswith(f"error: {packed}: decompressed, it has no partition table"), r.stderr


def test_a_boot_sector_claiming_a_huge_fat_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A FAT32 boot sector (made by mkfs.vfat, then its BPB_TotSec32 at 0x20 and BPB_FATSz32
    at 0x24 raised, fatgen103) that claims 20 Mi clusters: its FAT alone would be 80 MiB."""
    import tracemalloc

    from piimg.errors import ImageError
    from piimg.image.fat import FatFS

    img = tmp_path / "huge.img"
    subprocess.run(["mkfs.vfat", "-F", "32", "-s", "1", "-C", str(img), str(40 * 1024)], capture_output=True, check=True)
    clusters = 20 * 2**20
    with open(img, "r+b") as fh:
        boot = bytearray(fh.read(512))
        reserved = struct.unpack_from("<H", boot, 0x0E)[0]
        fatsz = -(-(clusters + 2) * 4 // 512)
        total = reserved + 2 * fatsz + clusters
        struct.pack_into("<I", boot, 0x20, total)
        struct.pack_into("<I", boot, 0x24, fatsz)
        fh.seek(0)
        fh.write(boot)
        fh.truncate(total * 512)  # sparse: the image is as large as the file system claims
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match=r"a FAT file system of 20971520 clusters"):
            FatFS.open(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # refused from the boot sector, the FAT never read
