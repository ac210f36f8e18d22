"""Generate realistic Raspberry-Pi-OS-layout images for tests, the demo and benchmarks.

MBR (or GPT), partition 1 FAT32 ``bootfs`` with the real ``config.txt``,
``cmdline.txt`` and cloud-init seed files of a Raspberry Pi OS release
(:mod:`tests.piosfacts`: Bookworm, Trixie 2025-10-01, current Trixie, each
from pi-gen at a cited commit), partition 2 ext4 ``rootfs``
with ``/etc/os-release``; partitions aligned at 4 or 8 MiB like the real
images. Made with dosfstools, mtools and e2fsprogs, no loop devices, no root.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests import piosfacts

MiB = 1024 * 1024

OS_RELEASE = {
    "bookworm": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
    "trixie": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\n'
    'VERSION="13 (trixie)"\nVERSION_CODENAME=trixie\nID=debian\n',
}
@dataclass(frozen=True)
class GeneratedImage:
    path: Path
    disk_id: str
    boot_offset: int
    boot_size: int
    root_offset: int
    root_size: int
    flavour: str


def _env() -> dict[str, str]:
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr.strip()}")


def _write_mbr(fh: object, disk_id: int, parts: list[tuple[int, int, int]]) -> None:
    mbr = bytearray(512)
    struct.pack_into("<I", mbr, 0x1B8, disk_id)
    for i, (ptype, start, size) in enumerate(parts):
        entry = struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", start // 512, size // 512)
        mbr[0x1BE + 16 * i : 0x1BE + 16 * (i + 1)] = entry
    mbr[510:512] = b"\x55\xaa"
    fh.seek(0)  # type: ignore[attr-defined]
    fh.write(bytes(mbr))  # type: ignore[attr-defined]


def make_image(
    path: str | os.PathLike[str],
    *,
    flavour: str = "bookworm",
    align_mib: int = 8,
    boot_mib: int = 64,
    root_mib: int = 64,
    sectors_per_cluster: int = 1,
    root_fill_mib: int = 0,
    boot_extra: dict[str, bytes] | None = None,
    gpt: bool = False,
    disk_id: int = 0x5E3DA0C1,
    seed: int = 1,
) -> GeneratedImage:
    """Write a Pi-OS-layout image to ``path`` and describe it.

    ``flavour``: one of :data:`tests.piosfacts.FLAVOURS`: ``bookworm``
    (systemd first-run), ``trixie-2025-10-01`` (cloud-init, no seed files,
    no ``init=``) or ``trixie`` (cloud-init seed files on the boot partition). ``root_fill_mib`` adds that much
    incompressible data to the root filesystem, for flash benchmarks.
    """
    path = Path(path)
    boot_off = align_mib * MiB
    boot_size = boot_mib * MiB
    root_off = boot_off + boot_size
    root_off = -(-root_off // (align_mib * MiB)) * (align_mib * MiB)
    root_size = root_mib * MiB
    total = root_off + root_size + (MiB if gpt else 0)  # GPT keeps a backup table at the end
    with open(path, "wb") as fh:
        fh.truncate(total)
        if not gpt:
            _write_mbr(fh, disk_id, [(0x0C, boot_off, boot_size), (0x83, root_off, root_size)])
    if gpt:
        script = (
            "label: gpt\n"
            f"start={boot_off // 512}, size={boot_size // 512}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=bootfs\n"
            f"start={root_off // 512}, size={root_size // 512}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs\n"
        )
        proc = subprocess.run(["sfdisk", "-q", str(path)], input=script, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sfdisk failed: {proc.stderr}")
    _run(
        [
            "mkfs.vfat", "-F", "32", "-n", "bootfs", "-s", str(sectors_per_cluster),
            f"--offset={boot_off // 512}", str(path), str(boot_size // 1024),
        ]
    )
    partuuid = f"{disk_id:08x}"
    files: dict[str, bytes] = {
        **{name: text.encode() for name, text in piosfacts.boot_files(flavour, partuuid).items()},
        "issue.txt": f"Raspberry Pi reference 2025-10-01 ({flavour})\n".encode(),
        "kernel8.img": random.Random(seed).randbytes(300 * 1024),
        "bcm2712-rpi-5-b.dtb": random.Random(seed + 1).randbytes(70 * 1024),
    }
    files.update(boot_extra or {})
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            src = Path(tmp) / name
            src.write_bytes(data)
            _run(["mcopy", "-o", "-i", f"{path}@@{boot_off}", str(src), f"::{name}"])
        rootdir = Path(tmp) / "root"
        (rootdir / "etc").mkdir(parents=True)
        (rootdir / "etc" / "os-release").write_text(OS_RELEASE.get(flavour.partition("-")[0], OS_RELEASE["bookworm"]))
        (rootdir / "etc" / "hostname").write_text("raspberrypi\n")
        (rootdir / "boot" / "firmware").mkdir(parents=True)
        if root_fill_mib:
            rng = random.Random(seed + 2)
            data_dir = rootdir / "usr" / "lib" / "fill"
            data_dir.mkdir(parents=True)
            for i in range(root_fill_mib):
                (data_dir / f"blob{i:05d}").write_bytes(rng.randbytes(MiB))
        _run(
            [
                "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(rootdir), "-E", f"offset={root_off}",
                str(path), f"{root_size // 1024}k",
            ]
        )
    return GeneratedImage(path, partuuid, boot_off, boot_size, root_off, root_size, flavour)


def extract_partition(image: Path, offset: int, size: int, dest: Path) -> Path:
    """Copy one partition out of an image (for tools that cannot take an offset)."""
    with open(image, "rb") as src, open(dest, "wb") as dst:
        src.seek(offset)
        remaining = size
        while remaining:
            chunk = src.read(min(remaining, 4 * MiB))
            if not chunk:
                break
            dst.write(chunk)
            remaining -= len(chunk)
    return dest


def tools_available() -> bool:
    return all(shutil.which(t) for t in ("mkfs.vfat", "mcopy", "mkfs.ext4"))
