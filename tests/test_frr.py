"""router.kind: frr: the exported bgpd configuration, run for real.

FRR's own zebra and bgpd (Debian ``frr``) run the file ``piimg router-setup
--export frr.conf`` wrote, in a network namespace made by the test (the
router, 10.0.2.1/23). Each node is a namespace of its own, joined to the
router by a veth pair on the lab subnet, running a GoBGP speaker (Debian
``gobgpd``) with the MetalLB side's ASN, address and TCP-MD5 key, as
MetalLB's speaker would (MetalLB BGPPeer: myASN, peerASN, peerAddress,
password). The test asserts what the router shows: the sessions Established,
a LoadBalancer /32 from the pool in FRR's BGP table, installed over both
nodes (maximum-paths), and a prefix outside the pools refused.

The daemons run with the test's own configuration, pid files, vty sockets and
logs in a temporary folder (``-f``, ``-i``, ``--vty_socket``, ``-z``,
``-P 0``): the system's /etc/frr and frr service are never used. Needs root
(``ip netns``); skipped where network namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg.router import frr
from piimg.spec import load as spec_load
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.integration

FRR_LIB = Path("/usr/lib/frr")
BGP_KEY = "md5-Secret-42"
ROUTER = "10.0.2.1"
NODES = [
    {"hostname": "k8s-master", "role": "server", "address": "10.0.2.10", "mac": "dc:a6:32:01:02:03"},
    {"hostname": "k8s-w1", "role": "agent", "address": "10.0.2.11"},
]
LB_IP = "10.0.4.1/32"  # in the default pool 10.0.4.0/23
OUTSIDE = "192.0.2.1/32"  # TEST-NET-1: in no pool


def _spec_doc(**router: Any) -> dict[str, Any]:
    return {
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "router": {"kind": "frr", **router},
        "cluster": {"bgp": {"password_env": "PIIMG_BGP_KEY"}},
        "nodes": NODES,
    }


# --- the rendered file (no daemons) -----------------------------------------------


def test_frr_export_writes_bgpd_config(project: Path, piimg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_BGP_KEY", BGP_KEY)
    doc = _spec_doc()
    doc["cluster"]["pools"] = [{"name": "web", "addresses": ["10.0.4.0/23", "10.0.8.10-10.0.8.20"]}]
    (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
    r = piimg("router-setup", "--export", "frr.conf")
    assert r.exit_code == 0, r.output
    out = project / "frr.conf"
    assert out.stat().st_mode & 0o777 == 0o600  # it holds the key
    text = out.read_text()
    assert BGP_KEY not in r.output
    for line in [
        "router bgp 65530",
        " bgp router-id 10.0.2.1",
        " neighbor piimg-homelab remote-as 64500",
        f" neighbor piimg-homelab password {BGP_KEY}",
        " neighbor 10.0.2.10 peer-group piimg-homelab",
        " neighbor 10.0.2.11 peer-group piimg-homelab",
        "  maximum-paths 2",
        "  neighbor piimg-homelab prefix-list piimg-homelab-lb-pools in",
        "ip prefix-list piimg-homelab-lb-pools seq 5 permit 10.0.4.0/23 le 32",
        # 10.0.8.10-10.0.8.20 as the CIDR blocks that cover exactly that range
        "ip prefix-list piimg-homelab-lb-pools seq 10 permit 10.0.8.10/31 le 32",
        "ip prefix-list piimg-homelab-lb-pools seq 15 permit 10.0.8.12/30 le 32",
        "ip prefix-list piimg-homelab-lb-pools seq 20 permit 10.0.8.16/30 le 32",
        "ip prefix-list piimg-homelab-lb-pools seq 25 permit 10.0.8.20/32 le 32",
        "route-map piimg-homelab-send-nothing deny 10",
        "!   DHCP on that interface: pool 10.0.3.1-10.0.3.254, gateway 10.0.2.1, DNS 8.8.8.8, 8.8.4.4",
        "!   node k8s-master: static lease DC:A6:32:01:02:03 -> 10.0.2.10 (outside the DHCP pool)",
    ]:
        assert line in text.splitlines(), line


def test_frr_ibgp_uses_maximum_paths_ibgp() -> None:
    doc = _spec_doc(asn=64500)
    doc["cluster"]["bgp"] = {"allow_ibgp": True}
    text = frr.render(spec_load.parse(doc, env={}), bgp_password=None)
    assert "  maximum-paths ibgp 2" in text.splitlines()
    assert "password" not in text.replace("! this file", "")


def test_frr_router_setup_without_export_says_what_to_do(project: Path, piimg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_BGP_KEY", BGP_KEY)
    (project / "piimg.yaml").write_text(yaml.safe_dump(_spec_doc()))
    r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert "router.kind is frr" in r.stderr and "--export frr.conf" in r.stderr


# --- FRR and GoBGP in network namespaces ----------------------------------------------


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=30)


def _netns_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    for tool in ("ip",):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: iproute2)"
    for path, pkg in ((FRR_LIB / "bgpd", "frr"), (FRR_LIB / "zebra", "frr")):
        if not path.exists():
            return f"needs {path} (Debian: {pkg})"
    for tool, pkg in (("vtysh", "frr"), ("gobgpd", "gobgpd"), ("gobgp", "gobgpd")):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: {pkg})"
    try:
        pwd.getpwnam("frr")
    except KeyError:
        return "needs the frr user (Debian: frr)"
    probe = f"piimg-probe-{uuid.uuid4().hex[:6]}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


class Lab:
    """A router namespace and node namespaces joined by veth pairs; daemons it starts, it stops."""

    def __init__(self, base: Path) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.base = base
        # FRR drops to the frr user, which cannot enter pytest's 0700 tmp folders:
        # its own folder (config, pid files, sockets, logs), removed in stop()
        self.frr_dir = Path(tempfile.mkdtemp(prefix="piimg-frr-"))
        self.frr_dir.chmod(0o755)
        self.router_ns = f"piimg-r-{self.tag}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pidfiles: list[Path] = []

    def netns(self, name: str) -> str:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def add_node(self, index: int, address: str) -> str:
        ns = self.netns(f"piimg-n{index}-{self.tag}")
        here, there = f"lab{index}", "eth0"
        _run("ip", "-n", self.router_ns, "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns)
        _run("ip", "-n", ns, "addr", "add", f"{address}/23", "dev", there)
        _run("ip", "-n", ns, "link", "set", there, "up")
        # every node port is in the lab bridge, like router.ports on the MikroTik
        _run("ip", "-n", self.router_ns, "link", "set", here, "master", "labbr")
        _run("ip", "-n", self.router_ns, "link", "set", here, "up")
        return ns

    def start(self, ns: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for pidfile in self.pidfiles:  # FRR daemons (they write their own pid files)
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for pidfile in self.pidfiles:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.frr_dir, ignore_errors=True)


def _wait(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    why = _netns_usable()
    if why:
        pytest.skip(why)
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


def _gobgp_config(path: Path, *, asn: int, router_id: str, peer_as: int, key: str) -> None:
    # GoBGP's TOML configuration (osrg/gobgp docs/sources/configuration.md); port -1: do not
    # listen, dial the router like MetalLB's speaker does.
    path.write_text(
        "[global.config]\n"
        f"  as = {asn}\n"
        f'  router-id = "{router_id}"\n'
        "  port = -1\n"
        "[[neighbors]]\n"
        "  [neighbors.config]\n"
        f'    neighbor-address = "{ROUTER}"\n'
        f"    peer-as = {peer_as}\n"
        f'    auth-password = "{key}"\n'
        "  [neighbors.transport.config]\n"
        f'    local-address = "{router_id}"\n'
    )
    path.chmod(0o600)


def test_frr_bgpd_takes_metallb_routes_from_the_pools_only(lab: Lab, project: Path, piimg: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_BGP_KEY", BGP_KEY)
    (project / "piimg.yaml").write_text(yaml.safe_dump(_spec_doc()))
    r = piimg("router-setup", "--export", "frr.conf")
    assert r.exit_code == 0, r.output
    spec = spec_load.load(project / "piimg.yaml", env={"PIIMG_BGP_KEY": BGP_KEY})

    # the router: its lab bridge with the gateway address, FRR on it
    router = lab.netns(lab.router_ns)
    _run("ip", "-n", router, "link", "add", "labbr", "type", "bridge")
    _run("ip", "-n", router, "addr", "add", f"{ROUTER}/23", "dev", "labbr")
    _run("ip", "-n", router, "link", "set", "labbr", "up")
    nodes = [lab.add_node(i, n["address"]) for i, n in enumerate(NODES)]

    run = lab.frr_dir / "run"  # FRR drops to the frr user: its folder, config and sockets are frr's
    run.mkdir()
    frr_user = pwd.getpwnam("frr")
    (run / "zebra.conf").write_text("")
    shutil.copy(project / "frr.conf", run / "bgpd.conf")
    for path in (run, run / "zebra.conf", run / "bgpd.conf"):
        os.chown(path, frr_user.pw_uid, frr_user.pw_gid)
    common = ["--vty_socket", str(run), "-z", str(run / "zserv.api"), "-P", "0"]
    for daemon in ("zebra", "bgpd"):
        pidfile = run / f"{daemon}.pid"
        lab.pidfiles.append(pidfile)
        _run("ip", "netns", "exec", router, str(FRR_LIB / daemon), "-d", "-f", str(run / f"{daemon}.conf"),
             "-i", str(pidfile), *common, "--log", f"file:{run / daemon}.log")
        _wait(f"{daemon} to start", lambda d=daemon: (run / f"{d}.vty").exists(), timeout=20)

    def vtysh(command: str) -> Any:
        out = _run("ip", "netns", "exec", router, "vtysh", "--vty_socket", str(run), "-c", command, check=False)
        try:
            return json.loads(out.stdout)
        except json.JSONDecodeError:
            return {}

    # the nodes: MetalLB's side (cluster.bgp.asn, the node address, the key) in GoBGP
    for i, (ns, node) in enumerate(zip(nodes, NODES, strict=True)):
        conf = lab.base / f"gobgpd-{i}.toml"
        _gobgp_config(conf, asn=spec.cluster.bgp.asn, router_id=node["address"], peer_as=spec.router.asn, key=BGP_KEY)
        lab.start(ns, ["gobgpd", "-f", str(conf), "--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-p"],
                  lab.base / f"gobgpd-{i}.log")

    def established() -> bool:
        peers = vtysh("show bgp neighbors json")
        return all(peers.get(n["address"], {}).get("bgpState") == "Established" for n in NODES)

    _wait("both BGP sessions Established (with TCP-MD5)", established)

    def gobgp(ns: str, *args: str) -> None:
        _wait("gobgp to take the route", lambda: _run("ip", "netns", "exec", ns, "gobgp", "-u", "127.0.0.1",
                                                       "-p", "50051", *args, check=False).returncode == 0, timeout=20)

    for ns, node in zip(nodes, NODES, strict=True):  # every speaker announces the LB IP, like MetalLB
        gobgp(ns, "global", "rib", "add", LB_IP, "nexthop", node["address"])
    gobgp(nodes[0], "global", "rib", "add", OUTSIDE, "nexthop", NODES[0]["address"])

    def lb_paths() -> list[dict[str, Any]]:
        # bgpd marks multipath when it next runs best-path selection, a moment after the second
        # path arrives: wait for both paths to be marked (a timeout fails the test as before)
        paths: list[dict[str, Any]] = vtysh(f"show bgp ipv4 unicast {LB_IP} json").get("paths", [])
        return paths if len(paths) == 2 and all(p.get("multipath") for p in paths) else []

    paths = _wait(f"{LB_IP} from both nodes in FRR's BGP table, both used (multipath)", lb_paths)
    assert {p["peer"]["peerId"] for p in paths} == {n["address"] for n in NODES}
    assert all(p["valid"] for p in paths)
    # maximum-paths 2: both are used (ECMP), not only the best one
    assert all(p.get("multipath") for p in paths), paths
    routes = vtysh("show bgp ipv4 unicast json")["routes"]
    assert OUTSIDE not in routes  # refused by the pool prefix list
    received = vtysh(f"show bgp neighbors {NODES[0]['address']} json")[NODES[0]["address"]]
    assert received["bgpState"] == "Established"
    # the router sends the nodes nothing (route-map ... deny)
    assert _run("ip", "netns", "exec", nodes[0], "gobgp", "-u", "127.0.0.1", "-p", "50051", "neighbor", ROUTER,
                "adj-in").stdout.strip() in ("", "Network not in table")

    # zebra installed it in the router's kernel over both nodes
    kernel = _run("ip", "-n", router, "route", "show", LB_IP.split("/")[0]).stdout
    assert all(f"nexthop via {n['address']} dev labbr" in kernel for n in NODES), kernel


def test_frr_bgpd_refuses_a_speaker_with_the_wrong_key(lab: Lab, project: Path, piimg: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The TCP-MD5 key in the export is enforced: a speaker with another key never gets Established."""
    monkeypatch.setenv("PIIMG_BGP_KEY", BGP_KEY)
    doc = _spec_doc()
    doc["nodes"] = NODES[:1]
    (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
    assert piimg("router-setup", "--export", "frr.conf").exit_code == 0
    router = lab.netns(lab.router_ns)
    _run("ip", "-n", router, "link", "add", "labbr", "type", "bridge")
    _run("ip", "-n", router, "addr", "add", f"{ROUTER}/23", "dev", "labbr")
    _run("ip", "-n", router, "link", "set", "labbr", "up")
    node = lab.add_node(0, NODES[0]["address"])
    run = lab.frr_dir / "run"
    run.mkdir()
    frr_user = pwd.getpwnam("frr")
    shutil.copy(project / "frr.conf", run / "bgpd.conf")
    for path in (run, run / "bgpd.conf"):
        os.chown(path, frr_user.pw_uid, frr_user.pw_gid)
    pidfile = run / "bgpd.pid"
    lab.pidfiles.append(pidfile)
    # bgpd alone (-Z: no zebra) is enough to see the session state
    _run("ip", "netns", "exec", router, str(FRR_LIB / "bgpd"), "-d", "-Z", "-f", str(run / "bgpd.conf"), "-i", str(pidfile),
         "--vty_socket", str(run), "-P", "0", "--log", f"file:{run / 'bgpd'}.log")
    _wait("bgpd to start", lambda: (run / "bgpd.vty").exists(), timeout=20)
    conf = lab.base / "gobgpd.toml"
    _gobgp_config(conf, asn=64500, router_id=NODES[0]["address"], peer_as=65530, key="not-the-key")
    lab.start(node, ["gobgpd", "-f", str(conf), "--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-p"], lab.base / "gobgpd.log")
    time.sleep(8)  # a few connection attempts (GoBGP retries every few seconds)
    out = _run("ip", "netns", "exec", router, "vtysh", "--vty_socket", str(run), "-c", "show bgp neighbors json").stdout
    assert json.loads(out)[NODES[0]["address"]]["bgpState"] != "Established"
