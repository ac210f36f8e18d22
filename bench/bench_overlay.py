"""Benchmark per-node overlays: build 5 nodes vs 1, disk per node, flash composed vs full image.

    python -m bench.bench_overlay [--fill-mib 2048] [--k3s-mib 64] [--runs 3] [--build-runs 7] [--flash-runs 5] [--dir DIR]

Everything in one run, as ratios of medians, each pair of measurements taken
in alternating order (the machine is shared and noisy; the load average is
printed before and after):

* build: ``piimg build`` (the CLI, overlays, the default) for one node and for
  five nodes from a cached base whose root file system holds ``--fill-mib``
  of incompressible data (a Raspberry Pi OS Lite root holds ~2 GB); also with
  ``--full-images`` for comparison. Target: 5 nodes / 1 node < 1.3x on ext4.
  Also the builds' CPU time (user + system), which the other sessions on a
  shared machine disturb far less than the wall time.
* disk: what each node's overlay takes on disk (``st_blocks``), alone and
  with its share of the build's shared layer (k3s: once per build), against
  the data its boot partition holds (allocated clusters of the node's FAT).
  Target: <= boot data.
* flash: ``piimg flash`` of a node's overlay (base + shared layer + node
  layer composed while writing) against the same node's full image, to a
  loop device the bench creates when run as root (a file otherwise), with
  read-back verification, ``--flash-runs`` of each (default 5), after one
  untimed flash; also the write and verify phases (flash --json). Target:
  ratio <= 1. Also the read path alone, in
  this process: every mapped byte read in 8 MiB chunks through the composed
  image and through the full image file (what the writer's reader thread does),
  after both files were put into the same page-cache state (see even_page_cache).

The k3s release (binary, install.sh) and the charts are generated and served
on 127.0.0.1 (tests/releaseserver.py); ``--k3s-mib`` makes the generated
k3s binary as large as the real one (k3s-arm64 of v1.3x is ~60-70 MB), since
that binary goes onto every node's boot partition and so into every overlay.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from piimg import versions  # noqa: E402
from piimg.build.compose import open_composed  # noqa: E402
from piimg.flash.write import FileSource, plan_chunks  # noqa: E402
from piimg.image import blockmap  # noqa: E402
from piimg.image.blockmap import Range  # noqa: E402
from piimg.image.fat import FatFS  # noqa: E402
from piimg.image.overlay import read_header  # noqa: E402
from tests.conftest import TEST_KEY  # noqa: E402
from tests.httpserver import FileServer  # noqa: E402
from tests.imagegen import MiB, make_image  # noqa: E402
from tests.releaseserver import INSTALL_SH, Release, child_prelude, publish_charts, sha  # noqa: E402


def publish_release(rel: Release, k3s_mib: int) -> str:
    """Like tests.releaseserver.publish, with a k3s binary of realistic size."""
    for arch, names in versions.K3S_ARCHES.items():
        binary = os.urandom(k3s_mib * MiB) if k3s_mib else f"fake k3s {arch}\n".encode() + bytes(range(256)) * 64
        images = f"fake airgap images {arch}\n".encode() * 512
        rel.put(rel.url(names.binary), binary)
        rel.put(rel.url(names.airgap), images)
        rel.put(rel.url(names.sums), f"{sha(binary)}  {names.binary}\n{sha(images)}  {names.airgap}\n".encode())
    rel.put(f"{versions.K3S_SOURCE_URL}/{versions.K3S_VERSION}/install.sh", INSTALL_SH)
    return sha(INSTALL_SH)


def spec_text(mirror: str) -> str:
    nodes = "".join(f"  - {{hostname: node{i}, role: {'server' if i == 0 else 'agent'}, address: 10.0.2.{10 + i}}}\n"
                    for i in range(5))
    return (f"access:\n  ssh_authorized_keys: [\"{TEST_KEY}\"]\nimage:\n  arch: arm64\n"
            f"cluster:\n  artifact_mirror: {mirror}\nnodes:\n{nodes}")


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child: steadier than wall time on a shared machine
    stdout: str


def run(argv: list[str], env: dict[str, str], cwd: Path) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv[3:])}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(took, cpu, proc.stdout)


def alternating(pair: dict[str, list[str]], runs: int, env: dict[str, str], cwd: Path) -> dict[str, list[Run]]:
    """``runs`` runs of each command, the two taken in turn (the order flipped every run)."""
    out: dict[str, list[Run]] = {k: [] for k in pair}
    for i in range(runs):
        for key in list(pair)[:: 1 if i % 2 == 0 else -1]:
            out[key].append(run(pair[key], env, cwd))
    return out


def median_of(results: list[Run], field: str = "wall") -> float:
    """Median seconds: wall or CPU time of the runs, or a field of their ``--json`` card."""
    if field in ("wall", "cpu"):
        return statistics.median(float(getattr(r, field)) for r in results)
    return statistics.median(float(json.loads(r.stdout)["cards"][0][field]) for r in results)


def read_all(image: Any, ranges: tuple[Range, ...]) -> float:
    """Seconds to read every mapped byte through ``image.pread_into`` in the writer's chunks."""
    chunks = plan_chunks(ranges)
    buf = memoryview(bytearray(max(c.length for c in chunks)))
    t = time.perf_counter()
    for c in chunks:
        image.pread_into(buf[: c.length], c.start)
    return time.perf_counter() - t


def even_page_cache(files: list[Path], ranges: tuple[Range, ...]) -> None:
    """Drop ``files`` from the page cache, then read their mapped ranges once, the same way.

    A file's cached pages are faster or slower to copy depending on how they
    got there (ext4 on Linux 6.x caches in large folios what is written or
    read ahead sequentially, in small pages what was read piecemeal): the full
    image, just written by copy_file_range, read ~1.4x faster than the base,
    read block by block by the build, before this was done (it is the base
    file that is slower, not the composing: reading it plainly was slower
    still). Both sides then start from the same state.
    """
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            read_all(FileSource(fd, str(path)), ranges)
        finally:
            os.close(fd)


def read_path(overlay_path: Path, full: Path, runs: int) -> dict[str, float]:
    """Medians of reading node0's mapped ranges composed, from its full image and from the base
    file alone, in turn."""
    ranges = blockmap.compute_for(full).ranges
    times: dict[str, list[float]] = {"composed": [], "full": [], "base": []}
    fds = []
    try:
        with open_composed(overlay_path) as composed:
            for path in (full, Path(composed.base_path)):
                fds.append(os.open(path, os.O_RDONLY))
            sources = [("composed", composed), ("full", FileSource(fds[0], str(full))),
                       ("base", FileSource(fds[1], composed.base_path))]
            for i in range(max(runs, 3)):
                for key, image in sources[:: 1 if i % 2 == 0 else -1]:
                    times[key].append(read_all(image, ranges))
    finally:
        for fd in fds:
            os.close(fd)
    return {k: statistics.median(v) for k, v in times.items()}


def boot_data(image: Path, start: int, size: int) -> int:
    with FatFS.open(image, start, size, readonly=True) as fs:
        return sum(n for _, n in fs.allocated_ranges())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fill-mib", type=int, default=2048, help="incompressible data in the base's root file system")
    ap.add_argument("--root-mib", type=int, default=2600)
    ap.add_argument("--boot-mib", type=int, default=512)
    ap.add_argument("--k3s-mib", type=int, default=64, help="size of the generated k3s binary (0: a tiny one)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each full-image build and of each read in process")
    ap.add_argument("--build-runs", type=int, default=7, help="runs of each overlay build (cheap, noisy)")
    ap.add_argument("--flash-runs", type=int, default=5, help="flashes of each kind (the noisiest measure)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one; keep it to reuse the base)")
    args = ap.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="piimg-bench-overlay-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / f"base-arm64-{args.root_mib}-{args.fill_mib}.img"
    if not base.exists():
        t = time.perf_counter()
        make_image(base.with_suffix(".tmp"), flavour="bookworm", align_mib=8, boot_mib=args.boot_mib,
                   root_mib=args.root_mib, root_fill_mib=args.fill_mib, sectors_per_cluster=8)
        base.with_suffix(".tmp").rename(base)
        print(f"generated {base} in {time.perf_counter() - t:.0f} s")
    load_before = os.getloadavg()
    fs_type = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True).stdout.strip()
    with FileServer() as srv:
        rel = Release(srv)
        install_sha = publish_release(rel, args.k3s_mib)
        charts = publish_charts(rel)
        proj = work / "proj"
        shutil.rmtree(proj, ignore_errors=True)
        proj.mkdir()
        (proj / "piimg.yaml").write_text(spec_text(rel.mirror))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PIIMG_CACHE_DIR": str(work / "cache")}
        code = child_prelude(install_sha, charts) + "import sys\nfrom piimg.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        piimg = [sys.executable, "-c", code]
        build = [*piimg, "build", "--image", str(base)]
        subprocess.run([*build, "--node", "node0"], cwd=proj, env=env, check=True, capture_output=True)  # warm: hash, k3s
        overlay_runs = alternating({"one": [*build, "--node", "node0"], "five": build}, args.build_runs, env, proj)
        overlays = {k: median_of(v) for k, v in overlay_runs.items()}
        overlays_cpu = {k: median_of(v, "cpu") for k, v in overlay_runs.items()}
        full_out = [*build, "--full-images", "-o", "full"]
        fulls = {k: median_of(v) for k, v in alternating({"one": [*full_out, "--node", "node0"], "five": full_out},
                                                          args.runs, env, proj).items()}
        run(build, env, proj)  # last.json names the overlays of all five again

        layout_start, layout_size = 8 * MiB, args.boot_mib * MiB
        build_dir = proj / "build"
        disk = {o.stem: o.stat().st_blocks * 512 for o in sorted(build_dir.glob("*.overlay"))}
        (shared,) = build_dir.glob("shared-*.layer")
        shared_disk = shared.stat().st_blocks * 512
        node0_full = proj / "full" / "node0.img"
        data = boot_data(node0_full, layout_start, layout_size)
        header, _ = read_header(build_dir / "node0.overlay")
        even_page_cache([base, node0_full], blockmap.compute_for(node0_full).ranges)
        reads = read_path(build_dir / "node0.overlay", node0_full, args.runs)

        # flash: composed overlay vs full image, alternating, medians
        loopdev = None
        target = work / "card.bin"
        with open(target, "wb") as fh:
            fh.truncate(base.stat().st_size + 64 * MiB)
        if os.geteuid() == 0 and shutil.which("losetup"):
            loopdev = subprocess.run(["losetup", "-f", "--show", str(target)], capture_output=True, text=True,
                                     check=True).stdout.strip()
        dest = loopdev or str(target)
        flash = [*piimg, "flash"]
        try:
            # untimed: the first write into the fresh (sparse) card file allocates its blocks,
            # a cost only the first flash would pay
            run([*flash, str(node0_full), dest, "--yes", "--force"], env, proj)
            flashed = alternating({"overlay": [*flash, str(build_dir / "node0.overlay"), dest, "--yes", "--force", "--json"],
                                   "full": [*flash, str(node0_full), dest, "--yes", "--force", "--json"]},
                                  args.flash_runs, env, proj)
        finally:
            if loopdev:
                subprocess.run(["losetup", "-d", loopdev], check=False)
            target.unlink(missing_ok=True)
    load_after = os.getloadavg()
    one, five = overlays["one"], overlays["five"]
    ov, fu = median_of(flashed["overlay"]), median_of(flashed["full"])
    phases = {k: (median_of(v, "write_seconds"), median_of(v, "verify_seconds")) for k, v in flashed.items()}
    per_node = disk["node0"] + shared_disk / len(disk)
    print(f"file system of {work}: {fs_type}; base {base.stat().st_size / 2**30:.2f} GiB, "
          f"{base.stat().st_blocks * 512 / 2**20:.0f} MiB allocated (root data {args.fill_mib} MiB), "
          f"k3s binary {args.k3s_mib} MiB; medians, each pair alternating")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"build, overlays (median of {args.build_runs} each): 1 node {one:.2f} s, 5 nodes {five:.2f} s: "
          f"ratio {five / one:.2f}x (target < 1.3x); CPU time {overlays_cpu['one']:.2f} s vs {overlays_cpu['five']:.2f} s: "
          f"{overlays_cpu['five'] / overlays_cpu['one']:.2f}x")
    print(f"build, full images: 1 node {fulls['one']:.2f} s, 5 nodes {fulls['five']:.2f} s: "
          f"ratio {fulls['five'] / fulls['one']:.2f}x")
    print(f"disk per node (node layer, allocated): {', '.join(f'{k} {v / 2**10:.0f} KiB' for k, v in disk.items())}; "
          f"shared layer {shared.name} {shared_disk / 2**20:.1f} MiB once")
    print(f"node0: boot partition data {data / 2**20:.1f} MiB, node layer extents {header.data_bytes / 2**10:.0f} KiB; "
          f"on disk {disk['node0'] / 2**10:.0f} KiB alone ({disk['node0'] / data:.4f} of the boot data), "
          f"{per_node / 2**20:.1f} MiB with 1/{len(disk)} of the shared layer ({per_node / data:.2f}) (target <= 1)")
    print(f"read path, node0's mapped bytes in 8 MiB chunks (in process, page cache evened): composed "
          f"{reads['composed']:.3f} s, full image file {reads['full']:.3f} s: ratio {reads['composed'] / reads['full']:.2f} "
          f"(the base file read plainly: {reads['base']:.3f} s)")
    print(f"flash node0 to {'a loop device' if loopdev else 'a file'} (CLI, median of {args.flash_runs} each): "
          f"overlay {ov:.2f} s, full image {fu:.2f} s: ratio {ov / fu:.2f} (target <= 1); "
          f"write {phases['overlay'][0]:.2f} s vs {phases['full'][0]:.2f} s "
          f"({phases['overlay'][0] / phases['full'][0]:.2f}), "
          f"verify {phases['overlay'][1]:.2f} s vs {phases['full'][1]:.2f} s ({phases['overlay'][1] / phases['full'][1]:.2f})")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
