"""``make demo``: the whole host-side chain, offline, on things the project generates itself.

1. A small Raspberry-Pi-OS-layout image (MBR, FAT32 bootfs, ext4 rootfs:
   tests/imagegen.py) and a k3s release + Helm charts behind a mirror on
   127.0.0.1 (tests/releaseserver.py; piimg's pins are pointed at them).
2. ``piimg build`` for a two-node spec (per-node overlays on the base),
   ``piimg flash`` of the server's node to a file standing in for an SD card,
   and what landed on the card's boot partition.
3. ``piimg router-setup --dry-run`` and ``--export`` against a RouterOS API
   peer on 127.0.0.1 (tests/routeros_peer.py, RouterOS 7.20.1).
4. The MetalLB/router cross-check: the BGPPeer that first boot will deploy
   (``piimg manifests``) against the BGP sessions router-setup plans.

No network beyond 127.0.0.1, no root, no real disk. The lab subnet is
127.0.2.0/23 so that nothing the demo runs could reach a real host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import tests
from piimg import versions
from tests.httpserver import FileServer
from tests.imagegen import make_image
from tests.releaseserver import Release, child_prelude, publish, publish_charts
from tests.routeros_peer import RouterOSPeer

OUT = Path("demo-out")
REPO = Path(tests.__file__).resolve().parent.parent
# A real public key: `ssh-keygen -t ed25519 -C demo@piimg` (OpenSSH 9.2p1); the private half was discarded.
DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJMNHUs6XA2ZlG5/PuAntvKeXCIGYR0Ibuvlplx3rv+g demo@piimg"
ROUTER_PASSWORD = "demo-router-pw"  # the peer's admin password; given to piimg through the environment only


def spec_text(mirror: str, router: tuple[str, int]) -> str:
    return f"""\
image:
  arch: arm64
access:
  user: pi
  ssh_authorized_keys: ["{DEMO_KEY}"]
network:
  subnet: 127.0.2.0/23
  gateway: 127.0.2.1
  dhcp_pool: 127.0.3.1-127.0.3.254
router:
  host: {router[0]}
  port: {router[1]}
  tls: false
cluster:
  artifact_mirror: {mirror}
  pools:
    - name: default
      addresses: [127.0.4.0/23]
nodes:
  - hostname: k8s-master
    role: server
    address: 127.0.2.10
  - hostname: k8s-agent-1
    role: agent
    address: 127.0.2.11
    mac: dc:a6:32:00:00:01
"""


class Runner:
    def __init__(self, prelude: str) -> None:
        self.code = prelude + "import sys\nfrom piimg.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PIIMG_CACHE_DIR": str((OUT / "cache").resolve()),
                    "PIIMG_ROUTER_PASSWORD": ROUTER_PASSWORD}

    def __call__(self, *args: str, capture: bool = False) -> str:
        print(f"\n$ piimg {' '.join(args)}", flush=True)
        proc = subprocess.run([sys.executable, "-c", self.code, *args], cwd=OUT, env=self.env, text=True,
                              stdout=subprocess.PIPE if capture else None)
        if proc.returncode != 0:
            sys.exit(f"demo: piimg {' '.join(args)} failed with exit code {proc.returncode}")
        return proc.stdout or ""


def cross_check(plan: dict[str, Any], manifests: Path) -> list[str]:
    """MetalLB's BGPPeer (what the nodes will announce to) against the router's planned BGP side."""
    peers = [doc for f in sorted(manifests.rglob("*.yaml")) for doc in yaml.safe_load_all(f.read_text())
             if isinstance(doc, dict) and doc.get("kind") == "BGPPeer"]
    if len(peers) != 1:
        return [f"expected one MetalLB BGPPeer in {manifests}, found {len(peers)}"]
    spec = peers[0]["spec"]
    ops = plan["operations"]
    gateway = [op["props"]["address"].split("/")[0] for op in ops if op["menu"] == "/ip/address"]
    router_as = {op["props"]["as"] for op in ops if op["menu"].startswith("/routing/bgp/") and "as" in op["props"]}
    sessions = {op["props"].get("remote.address", op["props"].get("remote-address")):
                op["props"].get("remote.as", op["props"].get("remote-as"))
                for op in ops if op["menu"] in ("/routing/bgp/connection", "/routing/bgp/peer")}
    problems = []
    if gateway != [spec["peerAddress"]]:
        problems.append(f"MetalLB peers with {spec['peerAddress']}, the router's lab address is {gateway}")
    if router_as != {str(spec["peerASN"])}:
        problems.append(f"MetalLB expects router AS {spec['peerASN']}, the router is given AS {sorted(router_as)}")
    for address, remote_as in sorted(sessions.items()):
        if remote_as != str(spec["myASN"]):
            problems.append(f"the router expects AS {remote_as} from {address}, MetalLB speaks AS {spec['myASN']}")
    print("MetalLB/router cross-check:")
    print(f"  MetalLB BGPPeer: AS {spec['myASN']} -> {spec['peerAddress']} AS {spec['peerASN']}")
    for address, remote_as in sorted(sessions.items(), key=lambda kv: ipaddress.ip_address(kv[0])):
        print(f"  router session:  {address} AS {remote_as} <- router AS {', '.join(sorted(router_as))}")
    return problems


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    base = OUT / "raspios-demo-arm64.img"
    gen = make_image(base, flavour="bookworm", boot_mib=64, root_mib=96)
    print(f"generated {base} ({base.stat().st_size // 2**20} MiB, Raspberry Pi OS layout, bootfs at "
          f"{gen.boot_offset // 2**20} MiB)")
    with FileServer() as srv, RouterOSPeer(version="7.20.1", users={"admin": ROUTER_PASSWORD}) as peer:
        rel = Release(srv)
        pins = publish(rel)
        charts = publish_charts(rel)
        print(f"k3s {versions.K3S_VERSION} release and Helm charts: generated, behind a mirror on {rel.mirror}")
        print(f"RouterOS 7.20.1 API peer on {peer.address[0]}:{peer.address[1]}")
        (OUT / "piimg.yaml").write_text(spec_text(rel.mirror, peer.address))
        piimg = Runner(child_prelude(pins["install.sh"], charts))

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

        piimg("router-setup", "--dry-run")
        piimg("router-setup", "--export", "demo.rsc")
        plan = json.loads(piimg("router-setup", "--dry-run", "--json", capture=True))
        piimg("manifests", "-o", "manifests")
        print()
        problems = cross_check(plan, OUT / "manifests")
        if problems:
            sys.exit("demo: " + "; ".join(problems))
        print("  consistent: every node's session and MetalLB's peer name the same addresses and AS numbers")
        assert not peer.writes, "the demo never changes the router"
    print(f"\ndemo done: node overlays in {OUT}/build/, card image {card}, RouterOS script {OUT}/demo.rsc")


if __name__ == "__main__":
    main()
