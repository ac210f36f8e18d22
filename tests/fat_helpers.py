"""Make FAT file systems with dosfstools and check them with fsck.vfat and mtools."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import have

SECTOR = 512

needs_fat_tools = pytest.mark.skipif(
    not (have("mkfs.vfat") and have("fsck.vfat") and have("mcopy")),
    reason="needs dosfstools and mtools",
)


def tool_env() -> dict[str, str]:
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(argv, capture_output=True, env=tool_env(), **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout!r}\n{proc.stderr!r}"
    return proc  # type: ignore[no-any-return]


def mkfs(img: Path, size_kib: int, *, spc: int = 1, fat: int = 32, offset_sectors: int = 0,
         total_bytes: int | None = None, extra: tuple[str, ...] = ()) -> None:
    """mkfs.vfat a file system of ``size_kib`` at ``offset_sectors`` into ``img``
    (created sparse with ``total_bytes``, default just the file system)."""
    total = total_bytes if total_bytes is not None else offset_sectors * SECTOR + size_kib * 1024
    if not img.exists():
        with open(img, "wb") as f:
            f.truncate(total)
    argv = ["mkfs.vfat", "-F", str(fat), "-s", str(spc), "-n", "bootfs", "-i", "12345678"]
    if offset_sectors:
        argv.append(f"--offset={offset_sectors}")
    run([*argv, *extra, str(img), str(size_kib)])


def mtarget(img: Path, offset: int) -> str:
    return f"{img}@@{offset}" if offset else str(img)


def mcopy_in(img: Path, offset: int, src: Path, dest: str) -> None:
    run(["mcopy", "-n", "-i", mtarget(img, offset), str(src), f"::{dest}"])


def mmd(img: Path, offset: int, dest: str) -> None:
    run(["mmd", "-i", mtarget(img, offset), f"::{dest}"])


def extract(img: Path, offset: int, size: int, dest: Path) -> Path:
    """Copy the partition out (sparse) so fsck.vfat, which takes no offset, can read it."""
    with open(img, "rb") as src, open(dest, "wb") as out:
        src.seek(offset)
        left = size
        while left:
            chunk = src.read(min(left, 1 << 20))
            assert chunk, "image shorter than the partition"
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
            left -= len(chunk)
        out.truncate(size)
    return dest


_FSCK_OK = re.compile(r"^(fsck\.fat \S+ \(.*\)|.*: \d+ files, \d+/\d+ clusters)$")


def fsck_clean(img: Path, offset: int = 0, size: int | None = None) -> tuple[int, int]:
    """Run ``fsck.vfat -n``; fail unless it reports nothing at all. Returns
    (used, total) clusters as fsck counted them."""
    target = img
    if offset:
        assert size is not None
        target = extract(img, offset, size, img.with_name(img.name + ".part"))
    proc = subprocess.run(["fsck.vfat", "-n", str(target)], capture_output=True, text=True, env=tool_env())
    out = (proc.stdout + proc.stderr).strip().splitlines()
    extra = [line for line in out if not _FSCK_OK.match(line)]
    assert proc.returncode == 0 and not extra, f"fsck.vfat -n complained ({proc.returncode}):\n" + "\n".join(out)
    m = re.search(r"(\d+)/(\d+) clusters", out[-1])
    assert m
    if target != img:
        target.unlink()
    return int(m.group(1)), int(m.group(2))


def mtools_tree(img: Path, offset: int, workdir: Path) -> tuple[dict[str, bytes], set[str]]:
    """Everything mtools sees: {path: content} of files (copied out with mcopy -s)
    and the set of directory paths (from ``mdir -/ -b``)."""
    argv = ["mdir", "-/", "-b", "-i", mtarget(img, offset), "::"]
    proc = subprocess.run(argv, capture_output=True, env=tool_env())
    if proc.returncode == 1 and b"not found" in proc.stderr and not proc.stdout:
        listing = ""  # mdir -b says "File not found" for an empty volume
    else:
        listing = run(argv).stdout.decode()
    dirs = set()
    names = set()
    for line in listing.splitlines():
        assert line.startswith("::/"), line
        p = line[3:]
        if p.endswith("/"):
            dirs.add(p[:-1])
        else:
            names.add(p)
    out = workdir / "mcopy-out"
    out.mkdir()
    if names or dirs:
        run(["mcopy", "-s", "-n", "-i", mtarget(img, offset), "::*", str(out) + "/"])
    files = {}
    for root, _d, fnames in os.walk(out):
        for n in fnames:
            full = Path(root) / n
            files[str(full.relative_to(out))] = full.read_bytes()
    assert set(files) == names, f"mcopy and mdir disagree: {set(files) ^ names}"
    for root, _d, fnames in os.walk(out, topdown=False):
        for n in fnames:
            (Path(root) / n).unlink()
        Path(root).rmdir()
    return files, dirs


def sha256_range(img: Path, start: int, length: int) -> str:
    h = hashlib.sha256()
    with open(img, "rb") as f:
        f.seek(start)
        left = length
        while left:
            chunk = f.read(min(left, 1 << 20))
            assert chunk
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()
