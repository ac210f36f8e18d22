"""piimg.image.fat against real file systems made by mkfs.vfat and mtools,
checked with fsck.vfat -n and mtools after every edit."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from piimg.errors import ImageError
from piimg.image.fat import FatFS, names
from tests.fat_helpers import (
    SECTOR,
    fsck_clean,
    mcopy_in,
    mkfs,
    mmd,
    mtools_tree,
    needs_fat_tools,
    run,
    sha256_range,
)

# Smallest sizes at which mtools accepts FAT32 (>= 65525 clusters), per sectors/cluster.
SIZE_KIB = {1: 34_000, 2: 67_000, 8: 265_000, 64: 2_110_000}
CMDLINE = b"console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait\n"


def blob(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed * 13 + i // 251) & 0xFF for i in range(n))


def fsinfo(img: Path, offset: int = 0) -> tuple[int, int]:
    with open(img, "rb") as f:
        f.seek(offset)
        boot = f.read(512)
        (sector,) = struct.unpack_from("<H", boot, 48)
        f.seek(offset + sector * SECTOR + 488)
        free, nxt = struct.unpack("<II", f.read(8))
    return free, nxt


pytestmark = [pytest.mark.integration, needs_fat_tools]


@pytest.mark.parametrize("spc", [1, 2, 8, 64], ids=lambda s: f"cluster{s * SECTOR}")
def test_edit_files_made_by_mtools(tmp_path: Path, spc: int) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[spc], spc=spc)
    cs = spc * SECTOR
    src = tmp_path / "src"
    src.mkdir()
    (src / "cmdline.txt").write_bytes(CMDLINE)
    (src / "config.txt").write_bytes(b"[all]\narm_64bit=1\n")
    (src / "kernel8.img").write_bytes(blob(5 * cs + 17, 1))
    (src / "bcm2712-rpi-5-b.dtb").write_bytes(blob(2 * cs, 6))
    for n in ("cmdline.txt", "config.txt", "kernel8.img", "bcm2712-rpi-5-b.dtb"):
        mcopy_in(img, 0, src / n, n)
    mmd(img, 0, "overlays")
    (src / "README").write_bytes(b"overlays\n")
    mcopy_in(img, 0, src / "README", "overlays/README")

    expected = {"config.txt": b"[all]\narm_64bit=1\n", "kernel8.img": blob(5 * cs + 17, 1), "overlays/README": b"overlays\n"}
    with FatFS.open(img) as fs:
        assert fs.cluster_size == cs
        assert sorted(fs.listdir()) == ["bcm2712-rpi-5-b.dtb", "cmdline.txt", "config.txt", "kernel8.img", "overlays"]
        assert fs.read_file("BCM2712-RPI-5-B.DTB") == blob(2 * cs, 6)
        fs.write_file("BCM2712-rpi-5-b.dtb", blob(3 * cs, 7))  # replace through a case variant
        expected["bcm2712-rpi-5-b.dtb"] = blob(3 * cs, 7)
        assert fs.read_file("CMDLINE.TXT") == CMDLINE
        assert fs.exists("Cmdline.Txt") and not fs.is_dir("cmdline.txt") and fs.is_dir("OVERLAYS")
        assert fs.read_file("kernel8.img") == expected["kernel8.img"]
        new_cmdline = CMDLINE.rstrip(b"\n") + b" cgroup_memory=1 cgroup_enable=memory\n"
        fs.write_file("cmdline.txt", new_cmdline)
        expected["cmdline.txt"] = new_cmdline
        fs.makedirs("piimg/firstboot/__pycache__")
        fs.makedirs("piimg/firstboot")  # exists: fine
        payload = {
            "piimg/firstboot/__init__.py": b"",
            "piimg/firstboot/nodeconf.py": blob(3 * cs + 1, 2),
            "piimg/node.json": b'{"hostname": "pi-1"}\n',
            "piimg/piimg-firstboot.service": blob(cs, 3),
            "piimg/Manifests With Spaces And A Long Name.yaml": blob(2 * cs - 1, 4),
            "user-data": b"#cloud-config\n",
            "network-config": b"version: 2\n",
            "firstrun.sh": b"#!/bin/sh\n",
            "ssh": b"",
        }
        for path, data in payload.items():
            fs.write_file(path, data)
        expected.update(payload)
        fs.write_file("kernel8.img", blob(9 * cs, 5))
        expected["kernel8.img"] = blob(9 * cs, 5)
        assert fs.read_file("piimg/firstboot/nodeconf.py") == payload["piimg/firstboot/nodeconf.py"]
        walked = {(p, tuple(sorted(d)), tuple(sorted(f))) for p, d, f in fs.walk()}
        assert ("piimg", ("firstboot",), ("Manifests With Spaces And A Long Name.yaml", "node.json",
                                          "piimg-firstboot.service")) in walked
        free = fs.free_clusters()

    used, total = fsck_clean(img)
    assert total - used == free
    assert fsinfo(img)[0] == free
    files, dirs = mtools_tree(img, 0, tmp_path)
    assert files == expected
    assert dirs == {"overlays", "piimg", "piimg/firstboot", "piimg/firstboot/__pycache__"}
    listing = run(["mdir", "-i", str(img), "::piimg"]).stdout.decode()
    assert "Manifests With Spaces And A Long Name.yaml" in listing


def test_outside_partition_untouched(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    start = 8 * 1024 * 1024
    size = SIZE_KIB[1] * 1024
    total = start + size + 4 * 1024 * 1024
    with open(img, "wb") as f:
        f.write(os.urandom(start))
        f.seek(start + size)
        f.write(os.urandom(total - start - size))
    mkfs(img, SIZE_KIB[1], offset_sectors=start // SECTOR)
    (tmp_path / "cmdline.txt").write_bytes(CMDLINE)
    mcopy_in(img, start, tmp_path / "cmdline.txt", "cmdline.txt")
    before = (sha256_range(img, 0, start), sha256_range(img, start + size, total - start - size))

    with FatFS.open(img, offset=start, size=size) as fs:
        fs.write_file("cmdline.txt", CMDLINE.rstrip() + b" cgroup_enable=memory\n")
        fs.makedirs("piimg/firstboot")
        for i in range(30):
            fs.write_file(f"piimg/firstboot/module_{i}.py", blob(i * 300, i))
        fs.rmtree("piimg/firstboot")
        fs.write_file("piimg/node.json", blob(70_000))
    assert (sha256_range(img, 0, start), sha256_range(img, start + size, total - start - size)) == before
    assert os.path.getsize(img) == total
    fsck_clean(img, start, size)
    files, dirs = mtools_tree(img, start, tmp_path)
    assert files == {"cmdline.txt": CMDLINE.rstrip() + b" cgroup_enable=memory\n", "piimg/node.json": blob(70_000)}
    assert dirs == {"piimg"}


def _root_entries(img: Path) -> dict[str, bytes]:
    """Raw 32-byte short entries of the root directory (first cluster), by their 11-byte name."""
    with FatFS.open(img, readonly=True) as fs:
        g = fs.geometry
    with open(img, "rb") as f:
        f.seek(g.cluster_offset(g.root_cluster))
        data = f.read(g.cluster_size)
    out = {}
    for i in range(0, len(data), 32):
        e = data[i : i + 32]
        if e[0] in (0, 0xE5) or e[11] == 0x0F:
            continue
        out[e[:11].decode("latin-1")] = e
    return out


def test_lowercase_flags_mtools_and_linux_style(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    (tmp_path / "cmdline.txt").write_bytes(CMDLINE)
    mcopy_in(img, 0, tmp_path / "cmdline.txt", "cmdline.txt")
    raw = _root_entries(img)["CMDLINE TXT"]
    assert raw[12] == 0x18, "mtools stores lower-case 8.3 names with the NT flags"

    with FatFS.open(img) as fs:
        assert fs.listdir() == ["cmdline.txt"]
        assert fs.read_file("CMDLINE.TXT") == CMDLINE
        fs.write_file("CmdLine.TXT", b"replaced\n")  # replaces, keeps the stored name
        fs.write_file("config.txt", b"a\n")  # 8.3, lower case: short entry + flags, no LFN
        fs.write_file("README.md", b"b\n")  # mixed: base upper, ext lower
        fs.write_file("Makefile", b"c\n")  # mixed case inside the base: needs an LFN
        assert fs.listdir() == ["cmdline.txt", "config.txt", "README.md", "Makefile"]
    entries = _root_entries(img)
    assert entries["CMDLINE TXT"][12] == 0x18
    assert entries["CONFIG  TXT"][12] == 0x18
    assert entries["README  MD "][12] == 0x10
    assert entries["MAKEFILE   "][12] == 0x00
    fsck_clean(img)
    files, _ = mtools_tree(img, 0, tmp_path)
    assert files == {"cmdline.txt": b"replaced\n", "config.txt": b"a\n", "README.md": b"b\n", "Makefile": b"c\n"}


def _checksum(short: bytes) -> int:
    s = 0
    for b in short:
        s = ((s >> 1) | ((s & 1) << 7)) + b & 0xFF
    return s


def test_finds_linux_style_long_name_entry(tmp_path: Path) -> None:
    """Linux (shortname=mixed, its default) writes cmdline.txt as LFN + upper-case short name."""
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    (tmp_path / "x").write_bytes(CMDLINE)
    mcopy_in(img, 0, tmp_path / "x", "X")  # allocates a cluster we then point our entry at
    with FatFS.open(img, readonly=True) as fs:
        g = fs.geometry
    root = g.cluster_offset(g.root_cluster)
    with open(img, "r+b") as f:  # rename X in place into LFN "cmdline.txt" + short "CMDLINE TXT"
        f.seek(root)
        slots = f.read(g.cluster_size)
        k = next(i for i in range(0, len(slots), 32) if slots[i : i + 11] == b"X          ")
        assert slots[k + 32 : k + 64] == bytes(32)
        short = b"CMDLINE TXT"
        units = [*("cmdline.txt".encode("utf-16-le")), 0, 0] + [0xFF] * 2 * 13
        lfn = bytearray(32)
        lfn[0], lfn[11], lfn[13] = 0x41, 0x0F, _checksum(short)
        lfn[1:11], lfn[14:26], lfn[28:32] = bytes(units[0:10]), bytes(units[10:22]), bytes(units[22:26])
        f.seek(root + k)
        f.write(bytes(lfn) + short + slots[k + 11 : k + 32])
    assert "cmdline.txt" in run(["mdir", "-i", str(img), "::"]).stdout.decode()
    with FatFS.open(img) as fs:
        assert fs.listdir() == ["cmdline.txt"]
        assert fs.read_file("CMDLINE.TXT") == CMDLINE
    with FatFS.open(img) as fs:
        fs.write_file("cmdline.txt", CMDLINE + b"more\n")
        assert fs.listdir() == ["cmdline.txt"]
    fsck_clean(img)
    files, _ = mtools_tree(img, 0, tmp_path)
    assert files == {"cmdline.txt": CMDLINE + b"more\n"}


def test_replace_multicluster_larger_then_smaller(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[2], spc=2)
    (tmp_path / "big").write_bytes(blob(5 * 1024 + 3))
    mcopy_in(img, 0, tmp_path / "big", "big.bin")
    with FatFS.open(img) as fs:
        free0 = fs.free_clusters()
        fs.write_file("after.txt", b"neighbour\n")  # right behind big.bin: the larger file must move
        for size in (9 * 1024, 2 * 1024 + 1, 0, 3 * 1024, 7 * 1024 - 1):
            fs.write_file("big.bin", blob(size, size))
            assert fs.read_file("big.bin") == blob(size, size)
            assert fs.free_clusters() == free0 + 6 - 1 - -(-size // 1024)
            fs.flush()
            fsck_clean(img)
    files, _ = mtools_tree(img, 0, tmp_path)
    assert files == {"big.bin": blob(7 * 1024 - 1, 7 * 1024 - 1), "after.txt": b"neighbour\n"}


def test_fill_raises_clean_error_and_stays_consistent(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    with FatFS.open(img) as fs:
        fs.makedirs("d")
        with pytest.raises(ImageError, match="file system full"):
            fs.write_file("huge.bin", bytes(40 * 1024 * 1024))
        written = 0
        chunk = blob(1024 * 1024)
        with pytest.raises(ImageError, match="file system full"):
            for i in range(100):
                fs.write_file(f"d/fill{i:03}.bin", chunk)
                written += 1
        assert 25 < written < 40
        left = fs.free_clusters() * fs.cluster_size
        assert left < len(chunk)
        fs.write_file("d/last.bin", blob(left))  # exactly fills the disk
        assert fs.free_clusters() == 0
        with pytest.raises(ImageError, match="file system full"):
            fs.write_file("d/one-more.bin", b"x")
        with pytest.raises(ImageError, match="file system full"):
            fs.makedirs("e")
        fs.write_file("d/last.bin", blob(left, 9))  # replacing in place still works when full
    assert fsck_clean(img)[0] == fsck_clean(img)[1]
    files, _ = mtools_tree(img, 0, tmp_path)
    assert len(files) == written + 1 and files["d/last.bin"] == blob(left, 9)
    with FatFS.open(img) as fs:
        fs.rmtree("d")
        assert fs.listdir() == []
    used, _ = fsck_clean(img)
    assert used == 1  # only the root directory's cluster is left


def test_directory_grows_across_clusters(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])  # 512-byte clusters: 16 slots each, a long name takes up to 21
    long = "a very long file name that needs many VFAT entries " * 4
    with FatFS.open(img) as fs:
        fs.makedirs("many")
        for i in range(60):
            fs.write_file(f"many/{long[: 20 + i * 3]}{i}.txt", str(i).encode())
        fs.write_file(f"{long[:200]}.txt", b"root")
        for i in range(0, 60, 3):
            fs.remove(f"MANY/{long[: 20 + i * 3]}{i}.TXT")
        for i in range(0, 60, 3):  # reuse the deleted slots
            fs.write_file(f"many/short{i}.txt", b"s")
        assert len(fs.listdir("many")) == 60
    fsck_clean(img)
    files, _ = mtools_tree(img, 0, tmp_path)
    assert len(files) == 61
    assert files[f"{long[:200]}.txt"] == b"root"
    assert files["many/short3.txt"] == b"s"


def test_fats_identical_fsinfo_exact_and_contiguous(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    with FatFS.open(img) as fs:
        g = fs.geometry
        fs.write_file("a.bin", blob(10 * 512))
        fs.write_file("b.bin", blob(3 * 512))
        fs.remove("a.bin")
        fs.write_file("c.bin", blob(20 * 512))  # does not fit the 10-cluster hole: goes after b.bin
        free = fs.free_clusters()
        ranges = fs.allocated_ranges()
    with open(img, "rb") as f:
        f.seek(g.fat_offset(0))
        fat0 = f.read(g.fat_size)
        fat1 = f.read(g.fat_size)
    assert fat0 == fat1
    entries = struct.unpack_from(f"<{g.max_cluster + 1}I", fat0)
    chain = [c for c in range(2, g.max_cluster + 1) if entries[c]]
    assert fsinfo(img) == (free, chain[-1])
    # root, 10 freed, b.bin (3), c.bin (20) contiguous right after
    assert chain == [2, *range(13, 16), *range(16, 36)]
    assert [entries[c] & 0x0FFFFFFF for c in range(16, 36)] == [*range(17, 36), 0x0FFFFFFF]
    assert ranges[0] == (0, g.data_offset + g.cluster_size)
    assert ranges[1:] == [(g.cluster_offset(13), 23 * g.cluster_size)]
    used, total = fsck_clean(img)
    assert total - used == free


def test_fat16(tmp_path: Path) -> None:
    img = tmp_path / "boot16.img"
    mkfs(img, 32_000, spc=4, fat=16)
    (tmp_path / "cmdline.txt").write_bytes(CMDLINE)
    mcopy_in(img, 0, tmp_path / "cmdline.txt", "cmdline.txt")
    with FatFS.open(img) as fs:
        assert fs.geometry.fat_bits == 16
        fs.write_file("cmdline.txt", b"x" * 5000)
        fs.makedirs("piimg/firstboot")
        fs.write_file("piimg/firstboot/Long File Name.py", blob(9000))
        fs.write_file("root file with a long name.txt", b"r")
    fsck_clean(img)
    files, dirs = mtools_tree(img, 0, tmp_path)
    assert files == {"cmdline.txt": b"x" * 5000, "piimg/firstboot/Long File Name.py": blob(9000),
                     "root file with a long name.txt": b"r"}
    assert dirs == {"piimg", "piimg/firstboot"}


def test_fat16_fixed_root_full(tmp_path: Path) -> None:
    img = tmp_path / "boot16.img"
    mkfs(img, 32_000, spc=4, fat=16, extra=("-r", "16"))
    with FatFS.open(img) as fs:
        slots = fs.geometry.root_entries
        assert slots < 200
        with pytest.raises(ImageError, match="root directory is full"):
            for i in range(slots):
                fs.write_file(f"file{i}.txt", b"x" * i)
        free = fs.free_clusters()
        fs.remove("file3.txt")
        fs.write_file("again.txt", b"fits in the freed slot")
        assert fs.free_clusters() == free
    fsck_clean(img)
    files, _ = mtools_tree(img, 0, tmp_path)
    assert files["again.txt"] == b"fits in the freed slot" and "file3.txt" not in files


def test_timestamp(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    ts = 1_700_000_000.0
    with FatFS.open(img, timestamp=ts) as fs:
        fs.write_file("stamp.txt", b"t")
    listing = run(["mdir", "-i", str(img), "::"]).stdout.decode()
    import time

    assert time.strftime("%Y-%m-%d", time.localtime(ts)) in listing


def test_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20))
    with pytest.raises(ImageError, match="not a FAT file system"):
        FatFS.open(junk)
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="not a FAT file system"):
        FatFS.open(empty)
    with pytest.raises(ImageError, match="cannot open"):
        FatFS.open(tmp_path / "missing.img")

    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    with pytest.raises(ImageError, match="larger than its partition"):
        FatFS.open(img, size=1024 * 1024)
    with pytest.raises(ImageError, match="not a FAT file system"):
        FatFS.open(img, offset=512)
    with FatFS.open(img, readonly=True) as ro, pytest.raises(ImageError, match="read-only"):
        ro.write_file("x", b"data")
    with FatFS.open(img) as fs:
        fs.write_file("file.txt", b"f")
        fs.makedirs("dir")
        with pytest.raises(ImageError, match="does not exist"):
            fs.read_file("nope.txt")
        with pytest.raises(ImageError, match="does not exist"):
            fs.write_file("nodir/x.txt", b"")
        with pytest.raises(ImageError, match="not a directory"):
            fs.write_file("file.txt/x", b"")
        with pytest.raises(ImageError, match="is a directory"):
            fs.write_file("dir", b"")
        with pytest.raises(ImageError, match="is a directory"):
            fs.remove("dir")
        with pytest.raises(ImageError, match="not a directory"):
            fs.rmtree("file.txt")
        with pytest.raises(ImageError, match="not a directory"):
            fs.makedirs("file.txt/sub")
        with pytest.raises(ImageError, match="does not exist"):
            fs.remove("nope")
        with pytest.raises(ImageError, match="invalid FAT file name"):
            fs.write_file("a:b", b"")
        with pytest.raises(ImageError, match="trailing"):
            fs.write_file("name.", b"")
        assert not fs.exists("nodir/x.txt") and not fs.exists("file.txt/x") and fs.exists("")
    fsck_clean(img)
    # a truncated image
    with open(img, "r+b") as f:
        f.truncate(1024 * 1024)
    with pytest.raises(ImageError, match="truncated"):
        FatFS.open(img)


def test_file_object(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    buf = io.BytesIO(img.read_bytes())
    with FatFS.open(buf) as fs:
        fs.write_file("a.txt", b"in memory")
    assert not buf.closed
    img.write_bytes(buf.getvalue())
    fsck_clean(img)
    assert mtools_tree(img, 0, tmp_path)[0] == {"a.txt": b"in memory"}


def test_corrupt_chain_is_reported(tmp_path: Path) -> None:
    img = tmp_path / "boot.img"
    mkfs(img, SIZE_KIB[1])
    with FatFS.open(img) as fs:
        fs.write_file("a.bin", blob(3 * 512))
        g = fs.geometry
    with open(img, "r+b") as f:  # make cluster 4 point back to 3: a loop
        f.seek(g.fat_offset(0) + 4 * 4)
        f.write(struct.pack("<I", 3))
    with FatFS.open(img) as fs, pytest.raises(ImageError, match="corrupt FAT"):
        fs.read_file("a.bin")


def test_names() -> None:
    assert names.plain_short_name("cmdline.txt") == (b"CMDLINE TXT", 0x18)
    assert names.plain_short_name("START4.ELF") == (b"START4  ELF", 0)
    assert names.plain_short_name("bcm2712-rpi-5-b.dtb") is None
    assert names.plain_short_name(".hidden") is None
    assert names.make_short_alias("bcm2712-rpi-5-b.dtb", set()) == b"BCM271~1DTB"
    assert names.make_short_alias("bcm2712-rpi-5-b.dtb", {b"BCM271~1DTB"}) == b"BCM271~2DTB"
    taken = {f"BCM271~{i}DTB".encode() for i in range(1, 10)}
    assert names.make_short_alias("bcm2712-rpi-5-b.dtb", taken) == b"BCM27~10DTB"
    assert names.make_short_alias("Makefile", set()) == b"MAKEFILE   "
    assert names.make_short_alias("my file.tar.gz", set()) == b"MYFILE~1GZ "
    assert names.make_short_alias(".bashrc", set()) == b"BASHRC~1   "
    assert names.lfn_checksum(b"CMDLINE TXT") == _checksum(b"CMDLINE TXT")
    assert len(names.lfn_entries("x" * 26, b"X~1        ")) == 2
    assert len(names.lfn_entries("x" * 27, b"X~1        ")) == 3


@pytest.mark.parametrize(("flavour", "align"), [("bookworm", 8), ("trixie", 4)])
def test_generated_pi_image(tmp_path: Path, flavour: str, align: int) -> None:
    """A Raspberry Pi OS-style image: only partition 1 changes, and it stays clean."""
    from piimg.image import partitions
    from tests.imagegen import make_image, tools_available

    if not tools_available():
        pytest.skip("needs dosfstools, mtools and e2fsprogs")
    gen = make_image(tmp_path / "pi.img", flavour=flavour, align_mib=align)
    layout = partitions.open_layout(gen.path)
    boot = layout.boot
    total = os.path.getsize(gen.path)
    outside = (sha256_range(gen.path, 0, boot.start), sha256_range(gen.path, boot.end, total - boot.end))
    with FatFS.open(gen.path, offset=boot.start, size=boot.size) as fs:
        cmdline = fs.read_file("cmdline.txt")
        assert cmdline.count(b"\n") == 1
        new = cmdline.rstrip(b"\n") + b" cgroup_memory=1 cgroup_enable=memory\n"
        fs.write_file("cmdline.txt", new)
        fs.write_file("ssh", b"")
        fs.makedirs("piimg/firstboot")
        fs.write_file("piimg/node.json", b'{"hostname": "pi-1"}')
        before = {p: fs.read_file(p) for p in ("config.txt",)}
    assert (sha256_range(gen.path, 0, boot.start), sha256_range(gen.path, boot.end, total - boot.end)) == outside
    fsck_clean(gen.path, boot.start, boot.size)
    files, dirs = mtools_tree(gen.path, boot.start, tmp_path)
    assert files["cmdline.txt"] == new and files["ssh"] == b"" and files["config.txt"] == before["config.txt"]
    assert files["piimg/node.json"] == b'{"hostname": "pi-1"}' and "piimg/firstboot" in dirs
