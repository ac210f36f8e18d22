"""First boot: the parts that need no child process, and the shipping constraints
(stdlib only, Python 3.9, no piimg imports, a valid systemd unit)."""

from __future__ import annotations

import ast
import configparser
import errno
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from piimg.firstboot import bgp, cluster, k3s, system
from piimg.firstboot.context import DEFAULT_TIMEOUTS, Context, StepError, detect_boot_dir
from piimg.firstboot.log import Log
from piimg.firstboot.main import parse_timeouts, steps_for
from piimg.firstboot.nodeconf import K3sConfig, NodeConfig
from piimg.firstboot.runner import CommandError, Result, Runner, child_env
from piimg.firstboot.store import Store
from tests.conftest import have
from tests.firstboot.fakepi import PACKAGE, K3sServer, find_python39, node_config

MODULES = sorted(PACKAGE.glob("*.py"))
UNIT = PACKAGE / "piimg-firstboot.service"


# -- shipping constraints ----------------------------------------------------------------------
def interpreters() -> list[str]:
    found = [sys.executable]
    py39 = find_python39()
    if py39:
        found.append(py39)
    return found


@pytest.mark.parametrize("python", interpreters())
def test_imports_in_clean_interpreter_with_only_the_payload(tmp_path: Path, python: str) -> None:
    payload = tmp_path / "opt-piimg"
    shutil.copytree(PACKAGE, payload / "firstboot", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        f"import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p]; sys.path.insert(0, {str(payload)!r})\n"
        "import importlib, pkgutil, firstboot\n"
        "names = [m.name for m in pkgutil.iter_modules(firstboot.__path__) if m.name != '__main__']\n"
        "for n in names: importlib.import_module('firstboot.' + n)\n"
        "bad = sorted(m for m in sys.modules if m == 'piimg' or m.startswith('piimg.'))\n"
        "assert not bad, bad\n"
        "print(len(names))\n"
    )
    proc = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 9
    # and the entry point exactly as the unit starts it (PYTHONPATH=/opt/piimg, -m firstboot)
    help_run = subprocess.run([python, "-m", "firstboot", "run", "--help"], capture_output=True, text=True,
                              check=False, cwd=tmp_path, env={"PYTHONPATH": str(payload), "PATH": "/usr/bin:/bin"})
    assert help_run.returncode == 0 and "--config" in help_run.stdout, help_run.stderr


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_is_python39_stdlib_only(module: Path) -> None:
    source = module.read_text()
    tree = ast.parse(source, feature_version=(3, 9))  # no match, no 3.10+ grammar
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            tops = [(node.module or "").split(".")[0]]
        else:
            continue
        for top in tops:
            assert top in sys.stdlib_module_names or top == "__future__", f"{module.name}: imports {top}"
    annotated = any(isinstance(n, (ast.AnnAssign, ast.arg)) and getattr(n, "annotation", None) for n in ast.walk(tree))
    if annotated:
        # X | Y and list[int] in annotations are fine on 3.9 only as strings
        assert "from __future__ import annotations" in source, module.name


def test_unit_file_orders_after_network_and_clock() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    unit, service = parser["Unit"], parser["Service"]
    for target in ("network-online.target", "time-sync.target"):
        assert target in unit["After"].split() and target in unit["Wants"].split()
    # exec: the start job ends when the program runs, so multi-user.target (and
    # cloud-final after it) is not held for the hours an agent may wait
    assert service["Type"] == "exec" and "RemainAfterExit" not in service and "TimeoutStartSec" not in service
    assert unit["RequiresMountsFor"].split() == ["/boot/firmware"]
    assert service["ExecStart"] == "/usr/bin/python3 -m firstboot run --config /opt/piimg/node.json"
    assert "PYTHONPATH=/opt/piimg" in UNIT.read_text()
    assert service["RuntimeMaxSec"] == "4h"
    # the unit's limit must cover the program's own worst case
    worst = sum(v for k, v in DEFAULT_TIMEOUTS.items() if k not in ("command", "http", "backoff_initial", "backoff_max"))
    assert worst + DEFAULT_TIMEOUTS["network"] < 4 * 3600
    assert parser["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.integration
@pytest.mark.skipif(not have("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "piimg-firstboot.service"
    shutil.copy(UNIT, unit)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "piimg-firstboot" not in proc.stderr, proc.stderr


# -- pure helpers -----------------------------------------------------------------------------
SKIP = {"INSTALL_K3S_SKIP_DOWNLOAD": "true"}


@pytest.mark.parametrize(
    ("version", "role", "url", "expected"),
    [
        ("v1.36.3+k3s1", "server", None, {"INSTALL_K3S_EXEC": "server", "INSTALL_K3S_VERSION": "v1.36.3+k3s1", **SKIP}),
        ("v1.36.3+k3s1", "agent", "https://10.0.2.10:6443",
         {"INSTALL_K3S_EXEC": "agent", "INSTALL_K3S_VERSION": "v1.36.3+k3s1", "K3S_URL": "https://10.0.2.10:6443", **SKIP}),
        ("v1.36.3+k3s1", "server", "https://10.0.2.10:6443",
         {"INSTALL_K3S_EXEC": "server", "INSTALL_K3S_VERSION": "v1.36.3+k3s1", **SKIP}),
    ],
)
def test_install_env(version: str, role: str, url: str | None, expected: dict[str, str]) -> None:
    """The script never downloads (INSTALL_K3S_SKIP_DOWNLOAD=true, install.sh's can_skip_download_binary)."""
    assert k3s.install_env(version, role, url) == expected


@pytest.mark.parametrize("version", ["stable", "latest", "v1.31"])
def test_install_env_refuses_a_channel(version: str) -> None:
    with pytest.raises(StepError, match="is not a release"):
        k3s.install_env(version, "server", None)


def test_install_env_agent_needs_server_url() -> None:
    with pytest.raises(StepError, match="server_url"):
        k3s.install_env("v1.36.3+k3s1", "agent", None)


@pytest.mark.parametrize("arch", ["armhf", "arm64"])
def test_armv6_board_refused(arch: str) -> None:
    with pytest.raises(StepError, match=r"ARMv6 .*k3s publishes no ARMv6 build"):
        k3s.check_machine("armv6l", arch)


def test_arm64_payload_on_a_32bit_kernel_refused() -> None:
    with pytest.raises(StepError, match=r"k3s for arm64, but this kernel is 32-bit \(uname -m: armv7l\)"):
        k3s.check_machine("armv7l", "arm64")


@pytest.mark.parametrize(("machine", "arch"), [("aarch64", "arm64"), ("armv7l", "armhf"), ("aarch64", "armhf"),
                                               ("x86_64", "arm64")])
def test_machines_that_run_the_payload(machine: str, arch: str) -> None:
    k3s.check_machine(machine, arch)  # x86_64: the e2e guest (a stand-in binary)


def test_child_env_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K3S_TOKEN", "leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = child_env({"INSTALL_K3S_EXEC": "agent"})
    assert "K3S_TOKEN" not in env and env["INSTALL_K3S_EXEC"] == "agent" and "/usr/local/bin" in env["PATH"]


def test_runner_reports_failures(tmp_path: Path) -> None:
    assert Runner().run(["sh", "-c", "echo out"]).stdout == "out\n"
    with pytest.raises(CommandError, match=r"exit 3.*boom"):
        Runner().run(["sh", "-c", "echo boom >&2; exit 3"])
    with pytest.raises(CommandError, match="program not found"):
        Runner().run([str(tmp_path / "missing")])
    with pytest.raises(CommandError, match="timed out"):
        Runner().run(["sleep", "5"], timeout=0.1)


def test_hosts_and_cmdline_edits_are_idempotent() -> None:
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\traspberrypi\n"
    once = system.hosts_with(hosts, "k8s-master")
    assert once == "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tk8s-master\n"
    assert system.hosts_with(once, "k8s-master") == once
    line = "console=tty1 root=PARTUUID=x rootwait cgroup_enable=memory"
    out = system.cmdline_with_cgroup(line)
    assert out == "console=tty1 root=PARTUUID=x rootwait cgroup_enable=memory cgroup_memory=1\n"
    assert system.cmdline_with_cgroup(out.strip()) == out


def test_dns_check_without_network() -> None:
    assert system.dns_works(None) == (True, "no name to resolve")
    assert system.dns_works("127.0.0.1") == (True, "127.0.0.1 is an address")
    assert system.dns_works("localhost")[0]  # /etc/hosts, no query leaves the machine


def test_nm_keyfile() -> None:
    text = system.nm_keyfile("10.0.2.10", 23, "10.0.2.1", ["8.8.8.8"])
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert parser["connection"]["interface-name"] == "eth0"
    assert parser["ipv4"]["method"] == "manual"
    assert parser["ipv4"]["address1"] == "10.0.2.10/23,10.0.2.1"
    assert parser["ipv4"]["dns"] == "8.8.8.8;"


def test_detect_boot_dir(tmp_path: Path) -> None:
    assert detect_boot_dir(str(tmp_path)) == str(tmp_path / "boot/firmware")
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "cmdline.txt").write_text("x\n")  # Bullseye and older
    assert detect_boot_dir(str(tmp_path)) == str(tmp_path / "boot")
    (tmp_path / "boot" / "firmware").mkdir()
    (tmp_path / "boot" / "firmware" / "config.txt").write_text("")  # Bookworm+
    assert detect_boot_dir(str(tmp_path)) == str(tmp_path / "boot/firmware")


# pi-gen@d7a31c6a (bookworm-arm64):stage1/00-boot-files/00-run.sh:12-14 writes this to /boot/cmdline.txt
STUB = "DO NOT EDIT THIS FILE\n\nThe file you are looking for has moved to /boot/firmware/cmdline.txt\n"


def test_detect_boot_dir_skips_the_do_not_edit_stub(tmp_path: Path) -> None:
    (tmp_path / "boot" / "firmware").mkdir(parents=True)  # not mounted: empty
    (tmp_path / "boot" / "cmdline.txt").write_text(STUB)
    (tmp_path / "boot" / "config.txt").write_text(STUB.replace("cmdline", "config"))
    assert detect_boot_dir(str(tmp_path)) == str(tmp_path / "boot/firmware")


def test_cgroup_self_heal_never_edits_the_stub(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path)
    (tmp_path / "root" / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "root" / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io pids\n")
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "cmdline.txt").write_text(STUB)
    with pytest.raises(StepError, match=r"DO NOT EDIT.*is /boot/firmware mounted"):
        system.step_cgroup(ctx)
    assert (tmp_path / "boot" / "cmdline.txt").read_text() == STUB
    assert ctx.store.get("cgroup_reboot") is None  # no reboot asked for


class MissingPrograms(Runner):
    """The real runner, on an image without NetworkManager: nmcli does not exist."""

    def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
        if argv[0] == "nmcli":
            argv = ["/nonexistent/nmcli", *argv[1:]]
        return super().run(argv, **kw)


def test_static_address_without_networkmanager_says_so(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path, MissingPrograms())
    with pytest.raises(StepError, match=r"NetworkManager \(nmcli\) is not installed.*Bookworm and later"):
        system.step_address(ctx)


def test_parse_timeouts() -> None:
    cfg = NodeConfig.from_json(node_config_json(timeouts={"server": 30}))
    t = parse_timeouts(cfg, ["network=1.5"])
    assert t["server"] == 30 and t["network"] == 1.5 and t["clock"] == DEFAULT_TIMEOUTS["clock"]
    for bad, msg in (("nosuch=1", "unknown timeout"), ("network", "NAME=SECONDS"), ("network=x", "not a number")):
        with pytest.raises(ValueError, match=msg):
            parse_timeouts(cfg, [bad])


def test_steps_by_role() -> None:
    server = NodeConfig.from_json(node_config_json())
    agent = NodeConfig.from_json(node_config_json(role="agent"))
    assert [n for n, _ in steps_for(server)] == [
        "scrub", "hostname", "identity", "address", "network", "cgroup", "k3s", "cluster", "finish"
    ]
    assert "cluster" not in [n for n, _ in steps_for(agent)]
    # an agent's speaker signs its BGP session too: it probes TCP-MD5 when there is a password
    assert "bgp" in [n for n, _ in steps_for(agent)]
    no_password = NodeConfig.from_json(node_config_json(role="agent", secrets={"k3s_token": "t"}))
    assert "bgp" not in [n for n, _ in steps_for(no_password)]


def test_nodeconf_roundtrip_keeps_contract() -> None:
    cfg = NodeConfig.from_json(node_config_json())
    assert NodeConfig.from_json(cfg.to_json()) == cfg
    data = json.loads(cfg.to_json())
    data.pop("timeouts")  # a node.json written before timeouts existed still loads
    assert NodeConfig.from_dict(data).timeouts == {}
    assert isinstance(cfg.k3s, K3sConfig)


def test_node_json_without_the_metallb_namespace_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The namespace is piimg.versions' (written by the builder): first boot has no copy to fall back on.
    Every node.json piimg wrote carries it (asdict writes every field), so only a hand-made one lacks it."""
    from piimg.firstboot.main import main

    data = json.loads(node_config_json())
    del data["metallb_namespace"], data["hostname"]
    with pytest.raises(ValueError, match=r"^node.json: missing hostname, metallb_namespace \(rebuild"):
        NodeConfig.from_dict(data)
    monkeypatch.setenv("PIIMG_FIRSTBOOT_ROOT", str(tmp_path))
    (tmp_path / "boot" / "firmware" / "piimg").mkdir(parents=True)
    config = tmp_path / "node.json"
    config.write_text(json.dumps(data))
    assert main(["run", "--config", str(config)]) == 2  # a usage error, recorded where the user looks
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "missing hostname, metallb_namespace" in json.loads(capsys.readouterr().out)["error"]


def test_node_json_without_the_registry_host_is_refused_by_name() -> None:
    """The registry host is piimg.versions' too (K3S_REGISTRY_HOST): no first-boot default to fall back on."""
    data = json.loads(node_config_json())
    del data["k3s"]["registry_host"]
    with pytest.raises(ValueError, match=r"^node.json: missing k3s.registry_host \(rebuild"):
        NodeConfig.from_dict(data)
    data["k3s"]["registry_host"] = None  # the airgap images on the card: nothing to resolve
    assert NodeConfig.from_dict(data).k3s.registry_host is None


# -- waits with a fake clock ---------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def time(self) -> float:
        return self.now


def make_ctx(tmp_path: Path, runner: Runner | None = None, **timeouts: float) -> tuple[Context, FakeClock]:
    clock = FakeClock()
    cfg = NodeConfig.from_json(node_config_json())
    log = Log(None, stream=io.StringIO())
    store = Store(str(tmp_path / "state.json"), str(tmp_path / "status.json"), cfg.hostname)
    ctx = Context(root=str(tmp_path / "root"), boot_dir=str(tmp_path / "boot"), payload_dir=str(tmp_path),
                  config=cfg, runner=runner or Runner(), log=log, store=store,
                  timeouts={**DEFAULT_TIMEOUTS, **timeouts}, sleep=clock.sleep, clock=clock.time)
    return ctx, clock


def test_wait_for_backs_off_exponentially_and_names_what_is_missing(tmp_path: Path) -> None:
    ctx, clock = make_ctx(tmp_path, network=100, backoff_initial=2, backoff_max=30)
    with pytest.raises(StepError, match=r"timed out after 100s \(8 attempts\) waiting for a default route: no route"):
        ctx.wait_for("a default route", lambda: (False, "no route"), "network")
    assert clock.sleeps == [2, 4, 8, 16, 30, 30, 10]
    ctx2, clock2 = make_ctx(tmp_path)
    answers = iter([(False, "a"), (False, "b"), (True, "ok")])
    assert ctx2.wait_for("x", lambda: next(answers), "network") == "ok"
    assert clock2.sleeps == [2, 4]


class Canned(Runner):
    def __init__(self, stdout: str, rc: int = 0) -> None:
        self.stdout, self.rc = stdout, rc

    def run(self, argv, *, env=None, timeout=None, check=True):  # type: ignore[no-untyped-def]
        if check and self.rc:
            raise CommandError(argv, self.rc, "The connection to the server was refused")
        return Result(list(argv), self.rc, self.stdout, "")


def test_cluster_checks_parse_kubectl_json(tmp_path: Path) -> None:
    helm_pods = {"items": [
        {"metadata": {"labels": {"app.kubernetes.io/component": "controller"}}, "status": {"phase": "Running"}},
        {"metadata": {"labels": {"app.kubernetes.io/component": "speaker"}}, "status": {"phase": "Pending"}},
    ]}
    ctx, _ = make_ctx(tmp_path, Canned(json.dumps(helm_pods)))
    assert cluster.metallb_running(ctx) == (False, "MetalLB in metallb-system: no Running speaker pod yet")
    ctx, _ = make_ctx(tmp_path, Canned(json.dumps(
        {"status": {"conditions": [{"type": "Ready", "status": "False", "message": "CNI not ready"}]}})))
    assert cluster.node_ready(ctx) == (False, "node k8s-master not Ready: CNI not ready")
    ctx, _ = make_ctx(tmp_path, Canned(json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.4.7"}]}}})))
    assert cluster.ingress_ip(ctx) == (True, "10.0.4.7")
    ctx, _ = make_ctx(tmp_path, Canned("", rc=1))
    ok, detail = cluster.node_ready(ctx)
    assert not ok and "refused" in detail
    ctx, _ = make_ctx(tmp_path, Canned("not json"))
    assert cluster.node_ready(ctx) == (False, "k3s kubectl get node k8s-master: output is not JSON")


def test_log_masks_secrets(tmp_path: Path) -> None:
    out = io.StringIO()
    log = Log(str(tmp_path / "fb.log"), stream=out)
    log.add_secret("s3cr3t-token")
    log.add_secret("")  # ignored
    log.info("token: s3cr3t-token here")
    log.flush()
    assert "s3cr3t-token" not in out.getvalue() + (tmp_path / "fb.log").read_text()
    assert "token: *** here" in out.getvalue() and "token: *** here" in (tmp_path / "fb.log").read_text()


def test_boot_partition_log_is_written_in_batches(tmp_path: Path) -> None:
    now = [0.0]
    out = io.StringIO()
    fat = tmp_path / "firstboot.log"
    log = Log(str(fat), stream=out, interval=60, clock=lambda: now[0])
    for i in range(50):  # a wait loop's notes, every 2 s
        now[0] += 2
        log.info(f"waiting {i}")
    assert out.getvalue().count("waiting") == 50  # the journal has each at once
    lines = fat.read_text().splitlines()
    assert len(lines) == 30 and lines[-1].endswith("waiting 29")  # one batch after 60 s
    log.warn("trouble")  # warnings and errors go out at once, with what was pending
    assert fat.read_text().splitlines()[-1].endswith("warning: trouble") and len(fat.read_text().splitlines()) == 51
    log.info("step done")
    log.flush()
    assert fat.read_text().splitlines()[-1].endswith("step done")


def test_status_mirror_is_throttled_but_step_changes_go_out_at_once(tmp_path: Path) -> None:
    now = [100.0]
    status = tmp_path / "boot" / "status.json"
    store = Store(str(tmp_path / "state.json"), str(status), "n1", fat_interval=60, clock=lambda: now[0])
    store.begin(["a", "b"])
    store.step_start("a")
    writes = []
    for i in range(10):
        now[0] += 5
        store.set("detail", f"retry {i}", force=i == 0)
        writes.append(json.loads(status.read_text())["detail"])
        assert json.loads((tmp_path / "state.json").read_text())["detail"] == f"retry {i}"  # the truth: always
    assert writes == ["retry 0"] * 10  # throttled: 45 s since the forced write
    now[0] += 20
    store.set("detail", "retry 10")
    assert json.loads(status.read_text())["detail"] == "retry 10"  # 65 s: due
    store.step_end("a", "done")
    assert json.loads(status.read_text())["steps"]["a"]["state"] == "done"


def node_config_json(**changes: object) -> str:
    srv = K3sServer.__new__(K3sServer)  # only .url is read
    srv.url = "http://127.0.0.1:9"
    return node_config(str(changes.pop("role", "server")), srv, **changes).to_json()


def test_status_subcommand_and_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from piimg.firstboot.main import main

    monkeypatch.setenv("PIIMG_FIRSTBOOT_ROOT", str(tmp_path))
    assert main(["status"]) == 1
    assert "no status" in capsys.readouterr().err
    payload = tmp_path / "boot" / "firmware" / "piimg"
    payload.mkdir(parents=True)
    # a missing node.json is recorded where the user looks, and is a usage error
    assert main(["run", "--config", str(tmp_path / "nope.json")]) == 2
    capsys.readouterr()
    assert main(["status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "failed" and "nope.json" in status["error"]
    assert "nope.json" in (payload / "firstboot.log").read_text()


# -- BGP password vs. the kernel's TCP-MD5 support ---------------------------------------------
def kernel_has_md5sig() -> bool | None:
    """CONFIG_TCP_MD5SIG of the running kernel, when its config is readable."""
    import gzip
    import os

    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{os.uname().release}", open)):
        try:
            with opener(path, "rt") as fh:  # type: ignore[operator]
                text = fh.read()
        except OSError:
            continue
        return "CONFIG_TCP_MD5SIG=y" in text
    return None


def test_md5sig_option_is_struct_tcp_md5sig() -> None:
    # linux/tcp.h: sockaddr_storage (128) + flags, prefixlen (u8 each) + keylen (u16) + ifindex (int) + key[80]
    opt = bgp.md5sig_option(b"key")
    assert len(opt) == 128 + 1 + 1 + 2 + 4 + 80
    assert opt[128 + 2:128 + 4] == (3).to_bytes(2, sys.byteorder)
    assert opt[136:139] == b"key"
    with pytest.raises(ValueError):
        bgp.md5sig_option(b"x" * 81)


def test_probe_asks_the_running_kernel() -> None:
    """The real setsockopt: the answer agrees with the kernel's config, and the layout is accepted."""
    problem = bgp.probe_md5sig(b"bgp-md5-key")
    has = kernel_has_md5sig()
    if has is True:
        assert problem is None
    elif has is False:
        assert problem is not None and "CONFIG_TCP_MD5SIG" in problem
    if problem is None:  # supported: a full-length key is accepted as MetalLB would pass it
        assert bgp.probe_md5sig(b"k" * bgp.TCP_MD5SIG_MAXKEYLEN) is None
    assert "at most 80" in (bgp.probe_md5sig(b"k" * 81) or "")
    assert bgp.probe_md5sig(b"") == "the BGP password is empty"


class NoMd5Socket:
    """A socket on a kernel without CONFIG_TCP_MD5SIG (what stock Raspberry Pi OS kernels answer)."""

    closed = False

    def __init__(self, *args: object, err: int = errno.ENOPROTOOPT) -> None:
        self.err = err

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        assert (level, option) == (socket.IPPROTO_TCP, bgp.TCP_MD5SIG)
        raise OSError(self.err, os.strerror(self.err))

    def close(self) -> None:
        NoMd5Socket.closed = True


def test_password_on_a_kernel_without_md5sig_fails_with_what_to_do(tmp_path: Path) -> None:
    ctx, _ = make_ctx(tmp_path)
    assert ctx.config.secrets.get("bgp_password")
    with pytest.raises(StepError) as err:
        bgp.check_bgp_password(ctx, NoMd5Socket)
    msg = str(err.value)
    for words in ("cluster.bgp.password_env", "CONFIG_TCP_MD5SIG", "Protocol not available", "metallb/metallb#1125",
                  "Raspberry Pi OS", "remove cluster.bgp.password_env", "CONFIG_TCP_MD5SIG=y"):
        assert words in msg, words
    assert ctx.config.secrets["bgp_password"] not in msg
    assert NoMd5Socket.closed
    # another failure is reported as itself, not as a missing kernel option
    with pytest.raises(StepError, match=r"setsockopt\(TCP_MD5SIG\) failed: Invalid argument"):
        bgp.check_bgp_password(ctx, lambda *a: NoMd5Socket(err=errno.EINVAL))
    # no password: nothing to probe
    ctx.config.secrets.pop("bgp_password")
    bgp.check_bgp_password(ctx, NoMd5Socket)


def test_cluster_step_checks_the_password_before_deploying(tmp_path: Path) -> None:
    """The MetalLB step fails before placing a manifest when the kernel refuses the key (here: too long)."""
    ctx, _ = make_ctx(tmp_path)
    ctx.config.secrets["bgp_password"] = "k" * 81
    with pytest.raises(StepError, match=r"cannot work on this node.*at most 80"):
        cluster.step_cluster(ctx)
    assert not Path(ctx.path(cluster.MANIFESTS_DIR)).exists()
