"""Benchmark: piimg's decompression of a multi-block .img.xz against plain xz.

    python -m bench.bench_decompress [--size-mib 1536] [--runs 5] [--workdir DIR]

Generates (once, kept in WORKDIR) a disk-image-like file: runs of real file
data from /usr (compressible like a root filesystem) separated by runs of
zeros (free space), compressed with ``xz -T0`` (multi-block, like Raspberry
Pi OS images). Then times, interleaved, over several runs:

- ``xz -dc IMG.xz > file``
- ``xz -T0 -dc IMG.xz > file``
- ``piimg.image.decompress.decompress_to`` (sparse output + SHA-256)
- the same with ``checksum=False`` (the decompression pipeline alone)

and prints medians and the ratio piimg / fastest xz (target: <= 1.05).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from piimg.image.decompress import decompress_to

MIB = 1 << 20


def _file_data(limit: int) -> bytes:
    """Up to ``limit`` bytes of real file content from /usr (deterministic order)."""
    out = bytearray()
    for root, dirs, files in os.walk("/usr"):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            try:
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                with open(p, "rb") as fh:
                    out += fh.read(limit - len(out))
            except OSError:
                continue
            if len(out) >= limit:
                return bytes(out)
    return bytes(out)


def generate(workdir: Path, size_mib: int) -> Path:
    xz_path = workdir / f"bench-{size_mib}M.img.xz"
    if xz_path.exists():
        return xz_path
    workdir.mkdir(parents=True, exist_ok=True)
    raw = workdir / f"bench-{size_mib}M.img"
    data = _file_data(256 * MIB)
    print(f"generating {raw} ({size_mib} MiB, ~60% data, ~40% zeros)", file=sys.stderr)
    with open(raw, "wb") as fh:
        written = 0
        i = 0
        total = size_mib * MIB
        while written < total:
            # 6 MiB of data then 4 MiB of zeros, data taken at a moving offset
            n = min(6 * MIB, total - written)
            off = (i * 7 * MIB) % (len(data) - 6 * MIB)
            fh.write(data[off : off + n])
            written += n
            z = min(4 * MIB, total - written)
            fh.write(bytes(z))
            written += z
            i += 1
    print(f"compressing with xz -T0 (takes a while, done once) -> {xz_path}", file=sys.stderr)
    t = time.monotonic()
    subprocess.run(["xz", "-T0", "-6", "-k", "-f", str(raw)], check=True)
    print(f"compressed in {time.monotonic() - t:.0f} s", file=sys.stderr)
    raw.unlink()
    return xz_path


def _cpu() -> float:
    """CPU seconds (user + system) used so far by this process and its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _time_shell(argv: list[str], out: Path) -> tuple[float, float]:
    out.unlink(missing_ok=True)
    c, t = _cpu(), time.monotonic()
    with open(out, "wb") as fh:
        subprocess.run(argv, stdout=fh, check=True)
    return time.monotonic() - t, _cpu() - c


def _time_piimg(src: Path, out: Path, *, python: bool = False, checksum: bool = True) -> tuple[float, float]:
    """``python``: as on a machine without xz (an empty PATH), so piimg decodes with Python's lzma."""
    out.unlink(missing_ok=True)
    path = os.environ["PATH"]
    with tempfile.TemporaryDirectory() as empty:
        if python:
            os.environ["PATH"] = empty
        try:
            c, t = _cpu(), time.monotonic()
            decompress_to(src, out, checksum=checksum)
            return time.monotonic() - t, _cpu() - c
        finally:
            os.environ["PATH"] = path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1536)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("PIIMG_BENCH_DIR", "/var/tmp/piimg-bench-decompress")))
    ap.add_argument("--with-python", action="store_true", help="also time the pure-Python lzma fallback")
    ap.add_argument("--out", type=Path, help="output file (default: WORKDIR/out.img; /dev/shm/x takes the disk out)")
    args = ap.parse_args()
    src = generate(args.workdir, args.size_mib)
    load = os.getloadavg()[0]
    out = args.out or args.workdir / "out.img"
    cases = {
        "xz -dc > file": lambda: _time_shell(["xz", "-dc", str(src)], out),
        "xz -T0 -dc > file": lambda: _time_shell(["xz", "-T0", "-dc", str(src)], out),
        "piimg decompress_to": lambda: _time_piimg(src, out),
        "piimg, no SHA-256": lambda: _time_piimg(src, out, checksum=False),
    }
    if args.with_python:
        cases["piimg, Python lzma"] = lambda: _time_piimg(src, out, python=True)
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for run in range(args.runs):
        for name, fn in cases.items():
            wall, used = fn()
            times[name].append(wall)
            cpu[name].append(used)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
    out.unlink(missing_ok=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    fastest = min(med["xz -dc > file"], med["xz -T0 -dc > file"])
    print(f"input: {src} ({src.stat().st_size / MIB:.0f} MiB compressed, {args.size_mib} MiB raw), "
          f"{os.cpu_count()} CPUs, load average at start {load:.1f}")
    for k, v in med.items():
        print(f"  {k:22s} median {v:6.2f} s  ratio to fastest xz {v / fastest:5.3f}"
              f"  (CPU {statistics.median(cpu[k]):5.2f} s)")
    ratio = med["piimg decompress_to"] / fastest
    print(f"piimg / fastest xz = {ratio:.3f} (target <= 1.05): {'OK' if ratio <= 1.05 else 'SLOWER'}")
    nohash = med["piimg, no SHA-256"] / fastest
    print(f"piimg without the SHA-256 / fastest xz = {nohash:.3f}")
    print("piimg hashes (SHA-256) every byte, which xz does not; both piimg rows write zero blocks as holes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
