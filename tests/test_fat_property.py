"""Property test: random file trees written with FatFS must pass fsck.vfat -n
and read back byte-identical through mtools."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piimg.image.fat import FatFS
from piimg.image.fat.names import fold
from tests.fat_helpers import SECTOR, fsck_clean, mcopy_in, mkfs, mtools_tree, needs_fat_tools

pytestmark = [pytest.mark.integration, needs_fat_tools]

SIZE_KIB = {1: 34_000, 2: 67_000, 8: 265_000}

_long_chars = st.characters(
    min_codepoint=0x20, max_codepoint=0xFFFF, exclude_categories=("Cs", "Cc", "Co", "Cn"),
    exclude_characters='"*/:<>?\\|',
)
names = st.one_of(
    st.from_regex(r"\A[a-z0-9_]{1,8}(\.[a-z0-9]{1,3})?\Z"),
    st.from_regex(r"\A[A-Z0-9_]{1,8}(\.[A-Z0-9]{1,3})?\Z"),
    st.from_regex(r"\A[A-Za-z0-9_ .()~-]{1,30}[A-Za-z0-9]\Z"),
    st.text(_long_chars, min_size=1, max_size=40),
).filter(lambda n: n not in (".", "..") and n[-1] not in ". ")


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _flip_case(path: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if c.isascii() and f else c for c, f in zip(path, flips + [False] * len(path), strict=False))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spc=st.sampled_from(sorted(SIZE_KIB)), data=st.data())
def test_random_trees(spc: int, data: st.DataObject) -> None:
    cs = spc * SECTOR
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        img = tmpdir / "boot.img"
        mkfs(img, SIZE_KIB[spc], spc=spc)
        (tmpdir / "c").write_bytes(b"console=tty1 rootwait\n")
        mcopy_in(img, 0, tmpdir / "c", "cmdline.txt")  # mtools: lower-case 8.3 with NT flags
        dirs: dict[str, str] = {"": ""}  # fold(path) -> path as first written
        files: dict[str, tuple[str, bytes]] = {fold("cmdline.txt"): ("cmdline.txt", b"console=tty1 rootwait\n")}
        with FatFS.open(img) as fs:
            for _ in range(data.draw(st.integers(1, 25), label="ops")):
                op = data.draw(st.sampled_from(["write", "write", "mkdir", "replace", "remove", "rmtree"]), label="op")
                if op in ("write", "mkdir"):
                    parent = dirs[data.draw(st.sampled_from(sorted(dirs)), label="parent")]
                    path = _join(parent, data.draw(names, label="name"))
                    key = fold(path)
                    if key in dirs or (op == "mkdir" and key in files):
                        continue
                    if op == "mkdir":
                        fs.makedirs(path)
                        dirs[key] = path
                    else:
                        content = data.draw(st.binary(max_size=3 * cs + 100), label="content")
                        fs.write_file(path, content)
                        files[key] = (files[key][0] if key in files else path, content)
                elif op == "replace" and files:
                    key = data.draw(st.sampled_from(sorted(files)), label="file")
                    path = _flip_case(files[key][0], data.draw(st.lists(st.booleans()), label="case"))
                    size = data.draw(st.sampled_from([0, 1, cs - 1, cs, cs + 1, 4 * cs + 7]), label="size")
                    content = bytes([size & 0xFF]) * size
                    fs.write_file(path, content)
                    files[key] = (files[key][0], content)
                elif op == "remove" and files:
                    key = data.draw(st.sampled_from(sorted(files)), label="file")
                    fs.remove(files.pop(key)[0])
                elif op == "rmtree" and len(dirs) > 1:
                    key = data.draw(st.sampled_from(sorted(k for k in dirs if k)), label="dir")
                    fs.rmtree(dirs[key])
                    for k in [k for k in dirs if k == key or k.startswith(key + "/")]:
                        del dirs[k]
                    for k in [k for k in files if k.startswith(key + "/")]:
                        del files[k]
            for key, (path, content) in files.items():
                assert fs.read_file(fold(path)) == content, key
            free = fs.free_clusters()
        used, total = fsck_clean(img)
        assert total - used == free
        got_files, got_dirs = mtools_tree(img, 0, tmpdir)
        assert got_files == {path: content for path, content in files.values()}
        assert got_dirs == {path for path in dirs.values() if path}
