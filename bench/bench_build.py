"""Benchmark ``piimg build``: 1 node vs 5 nodes from a cached ~2 GiB base image.

    python -m bench.bench_build [--root-mib 1900] [--fill-mib 1024] [--dir DIR] [--runs 3]

Generates a Raspberry-Pi-OS-layout image (tests/imagegen.py) once, builds once
to warm the cache (base checksum), then times ``build_images`` for one node
and for five nodes (best of ``--runs``), and the whole ``piimg build --node``
command line for one node. Targets (issue 4): five nodes < 1.5x one node; one
node < 2 s once the base is cached.

``--fill-mib`` is how much incompressible data the root file system holds
(a Raspberry Pi OS Lite root holds ~2 GB); the rest of the image is holes.
Without reflinks (ext4) each node copies that data once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from piimg.build.images import build_images
from piimg.spec import load as spec_load
from piimg.spec.secrets import Secrets
from tests.imagegen import make_image

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh0ZXN0a2V5Zm9ycGlpbWd0ZXN0c29ubHkxMjM0NTY3OA bench@piimg"
SPEC = f"""\
access:
  ssh_authorized_keys: ["{KEY}"]
nodes:
""" + "".join(
    f"  - {{hostname: node{i}, role: {'server' if i == 0 else 'agent'}, address: 10.0.2.{10 + i}}}\n" for i in range(5)
)


def _best(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root-mib", type=int, default=1900, help="root partition size (image ~ this + 520 MiB boot)")
    ap.add_argument("--fill-mib", type=int, default=1024, help="incompressible data in the root file system")
    ap.add_argument("--boot-mib", type=int, default=512)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="piimg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["PIIMG_CACHE_DIR"] = str(work / "cache")
    base = work / f"base-{args.root_mib}-{args.fill_mib}.img"
    if not base.exists():
        t = time.perf_counter()
        make_image(base, flavour="bookworm", align_mib=8, boot_mib=args.boot_mib, root_mib=args.root_mib,
                   root_fill_mib=args.fill_mib, sectors_per_cluster=8)
        print(f"generated {base} in {time.perf_counter() - t:.1f} s")
    size = base.stat().st_size
    used = base.stat().st_blocks * 512
    (work / "piimg.yaml").write_text(SPEC)
    spec = spec_load.load(work / "piimg.yaml")
    secrets = Secrets(k3s_token="bench" * 8)
    out = work / "build"

    def one() -> None:
        build_images(spec, secrets, nodes=["node0"], image=str(base), output_dir=out)

    def five() -> None:
        build_images(spec, secrets, image=str(base), output_dir=out)

    t = time.perf_counter()
    one()  # warm: base checksum remembered in the cache
    print(f"first build (checksums the base): {time.perf_counter() - t:.2f} s")
    t1 = _best(one, args.runs)
    t5 = _best(five, args.runs)
    cli = [sys.executable, "-m", "piimg", "-c", str(work / "piimg.yaml"), "build", "--image", str(base),
           "--node", "node0", "-o", str(out)]
    tc = _best(lambda: subprocess.run(cli, check=True, capture_output=True), args.runs)
    cli5 = [*cli[: cli.index("--node")], "-o", str(out)]
    tc5 = _best(lambda: subprocess.run(cli5, check=True, capture_output=True), args.runs)
    print(f"image {size / 2**30:.2f} GiB, {used / 2**20:.0f} MiB allocated (fill {args.fill_mib} MiB), boot {args.boot_mib} MiB")
    print(f"1 node  (build_images):   {t1:.2f} s")
    print(f"5 nodes (build_images):   {t5:.2f} s   ratio {t5 / t1:.2f}x   (target < 1.5x)")
    print(f"1 node  (piimg build CLI): {tc:.2f} s   (target < 2 s)")
    print(f"5 nodes (piimg build CLI): {tc5:.2f} s   ratio {tc5 / tc:.2f}x   (target < 1.5x)")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
