"""``make demo``: the whole host-side job on an image the project generates itself.

Builds a small Raspberry-Pi-OS-layout image (MBR, FAT32 bootfs, ext4 rootfs),
runs ``piimg build`` on it for a two-node spec and ``piimg flash`` of the
server's image to a file standing in for an SD card, then shows what landed
on the card. No network, no root, no real disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.imagegen import make_image

OUT = Path("demo-out")
# A real public key: `ssh-keygen -t ed25519 -C demo@piimg` (OpenSSH 9.2p1); the private half was discarded.
DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJMNHUs6XA2ZlG5/PuAntvKeXCIGYR0Ibuvlplx3rv+g demo@piimg"

SPEC = f"""\
image:
  init_format: auto
access:
  user: pi
  ssh_authorized_keys: ["{DEMO_KEY}"]
nodes:
  - hostname: k8s-master
    role: server
    address: 10.0.2.10
  - hostname: k8s-agent-1
    role: agent
    address: 10.0.2.11
    mac: dc:a6:32:00:00:01
"""


def piimg(*args: str) -> None:
    argv = [sys.executable, "-m", "piimg", *args]
    print(f"\n$ piimg {' '.join(args)}", flush=True)
    proc = subprocess.run(argv, cwd=OUT, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    if proc.returncode != 0:
        sys.exit(f"demo: piimg {' '.join(args)} failed with exit code {proc.returncode}")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    base = OUT / "raspios-demo.img"
    gen = make_image(base, flavour="bookworm", boot_mib=64, root_mib=96)
    print(f"generated {base} ({base.stat().st_size // 2**20} MiB, Raspberry Pi OS layout, bootfs at {gen.boot_offset // 2**20} MiB)")
    (OUT / "piimg.yaml").write_text(SPEC)
    piimg("validate")
    piimg("build", "--image", base.name)
    card = OUT / "sdcard.img"
    with open(card, "wb") as fh:
        fh.truncate(256 * 2**20)
    piimg("flash", "--node", "k8s-master", "sdcard.img", "--force", "--yes")
    print("\nwhat the Pi will find on its boot partition:")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mdir", "-i", f"{card}@@{gen.boot_offset}", "::"], env=env, check=False)
    subprocess.run(["mtype", "-i", f"{card}@@{gen.boot_offset}", "::cmdline.txt"], env=env, check=False)
    print(f"\ndemo done: images in {OUT}/build/, card image {card}")


if __name__ == "__main__":
    main()
