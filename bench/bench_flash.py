"""Benchmark: piimg flash against ``xz -dc | dd`` and ``bmaptool copy``, on a loop device.

    sudo /work/venv/bin/python bench/bench_flash.py [--runs 3] [--workdir /var/tmp/piimg-bench-flash]

The image is generated (never downloaded) to look like Raspberry Pi OS Lite:
512 MiB boot partition that is nearly empty, a 1.5 GiB root file system about
60% used with data that compresses about 3x like a real root file system, ~2 GiB in all. It is compressed
once with ``xz -T0 -1`` and given a ``.bmap`` with ``bmaptool create``; all of
that is cached in the work directory between runs.

The target is a loop device on a file in the work directory, created here
and detached at the end (SAFETY: nothing else is ever written). The methods
run round-robin after one warm-up round; the report gives medians and the
ratios the issue asks for:

* piimg with verification vs ``xz -dc IMG.xz | dd of=TARGET bs=4M conv=fsync``
* piimg without verification vs ``bmaptool copy --bmap IMG.bmap IMG TARGET``

piimg reads the uncompressed image (what ``piimg build`` leaves in build/);
dd gets the .xz, as a user would feed it a downloaded image.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from piimg.image.blockmap import compute_for, parse_bmap  # noqa: E402
from tests.imagegen import MiB, make_image  # noqa: E402

BOOT_MIB = 512
ROOT_MIB = 1536
FILL_MIB = 900  # ~60% of the root file system, counting its metadata


def sh(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def prepare(workdir: Path) -> tuple[Path, Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    img, xz, bmap = workdir / "pios-lite-like.img", workdir / "pios-lite-like.img.xz", workdir / "pios-lite-like.bmap"
    if not img.exists():
        t = time.monotonic()
        gen = make_image(img.with_suffix(".tmp"), boot_mib=BOOT_MIB, root_mib=ROOT_MIB)
        fill_root(gen.path, gen.root_offset, workdir / "rootdir")
        img.with_suffix(".tmp").rename(img)
        print(f"generated {img} ({img.stat().st_size / 1e9:.2f} GB) in {time.monotonic() - t:.0f} s", flush=True)
    if not xz.exists():
        t = time.monotonic()
        with open(xz.with_suffix(".tmp"), "wb") as out:
            subprocess.run(["xz", "-T0", "-1", "-c", str(img)], stdout=out, check=True)
        xz.with_suffix(".tmp").rename(xz)
        print(f"compressed to {xz.stat().st_size / 1e9:.2f} GB in {time.monotonic() - t:.0f} s", flush=True)
    if not bmap.exists():
        sh(["bmaptool", "create", "-o", str(bmap), str(img)])
    return img, xz, bmap


def fill_root(image: Path, offset: int, rootdir: Path) -> None:
    """Re-make the root file system with FILL_MIB of data that compresses like binaries (~3x).

    imagegen's own fill is random bytes, which xz can neither compress nor
    compress quickly; real root file systems compress 3-4x.
    """
    rng = random.Random(7)
    fill = rootdir / "usr" / "lib" / "fill"
    fill.mkdir(parents=True, exist_ok=True)
    (rootdir / "etc").mkdir(exist_ok=True)
    (rootdir / "etc" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    words = [rng.randbytes(rng.randint(32, 512)) for _ in range(2048)]
    for i in range(FILL_MIB):
        out = bytearray()
        while len(out) < MiB:
            out += rng.randbytes(64) if rng.random() < 0.15 else rng.choice(words)
        (fill / f"blob{i:05d}").write_bytes(bytes(out[:MiB]))
    sh(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(rootdir), "-E", f"offset={offset}", str(image), f"{ROOT_MIB}M"])
    shutil.rmtree(rootdir)


def attach(backing: Path, size: int) -> str:
    with open(backing, "wb") as fh:
        fh.truncate(size)
    dev = sh(["losetup", "-f", "--show", str(backing)]).stdout.strip()
    assert_own_loop(dev, backing)
    return dev


def assert_own_loop(dev: str, backing: Path) -> None:
    """SAFETY: only ever write to the loop device we attached to our own file."""
    assert re.fullmatch(r"/dev/loop\d+", dev), dev
    name = dev.removeprefix("/dev/")
    assert Path(f"/sys/block/{name}/loop/backing_file").read_text().strip() == str(backing.resolve()), dev


def timed(argv: list[str], *, shell: bool = False) -> float:
    t = time.monotonic()
    proc = subprocess.run(argv if not shell else argv[0], shell=shell, capture_output=True, text=True)
    elapsed = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {argv}\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/piimg-bench-flash"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("skipped: loop devices need root", file=sys.stderr)
        return 0
    for tool in ("losetup", "xz", "dd", "bmaptool"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            print(f"skipped: {tool} is not installed", file=sys.stderr)
            return 0
    img, xz, bmap = prepare(args.workdir)
    backing = args.workdir / "target.bin"
    dev = attach(backing, img.stat().st_size + 64 * MiB)
    python = sys.executable
    methods = {
        "piimg flash (verify)": [python, "-m", "piimg", "flash", str(img), dev, "--yes", "--force"],
        "piimg flash --no-verify": [python, "-m", "piimg", "flash", str(img), dev, "--yes", "--force", "--no-verify"],
        "xz -dc | dd bs=4M conv=fsync": [f"xz -dc {xz} | dd of={dev} bs=4M conv=fsync status=none"],
        "bmaptool copy": ["bmaptool", "-q", "copy", "--bmap", str(bmap), str(img), dev],
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    try:
        for round_ in range(args.runs + 1):  # round 0 warms the caches and is not counted
            for name, argv in methods.items():
                assert_own_loop(dev, backing)
                elapsed = timed(argv, shell=name.startswith("xz"))
                if round_:
                    times[name].append(elapsed)
                print(f"round {round_}: {name}: {elapsed:.2f} s", flush=True)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        backing.unlink(missing_ok=True)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    mapped = parse_bmap(bmap, img.stat().st_size).mapped_bytes
    ours = compute_for(img).mapped_bytes
    print()
    print(f"image {img.stat().st_size / 1e9:.2f} GB, xz {xz.stat().st_size / 1e9:.2f} GB, bmaptool maps {mapped / 1e9:.2f} GB, piimg maps {ours / 1e9:.2f} GB")
    for name, value in med.items():
        print(f"  {name:32s} median {value:6.2f} s  ({img.stat().st_size / 1e6 / value:7.1f} MB/s of image)")
    r1 = med["xz -dc | dd bs=4M conv=fsync"] / med["piimg flash (verify)"]
    r2 = med["bmaptool copy"] / med["piimg flash --no-verify"]
    print(f"dd / piimg-with-verify      = {r1:.2f}x  (target > 1: piimg with verification faster than dd without)")
    print(f"bmaptool / piimg-no-verify  = {r2:.2f}x  (target > 1: piimg faster than bmaptool)")
    if args.json:
        args.json.write_text(json.dumps({"runs": times, "median": med, "dd_over_piimg_verify": r1, "bmaptool_over_piimg": r2}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
