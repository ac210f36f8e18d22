"""End to end: ``piimg build --image`` on a Pi-OS-like Debian image, boots under qemu, the whole chain.

Per case: build the node image with piimg, boot it like a Pi (qemu reads
kernel, initrd and cmdline.txt from the FAT), boot by boot, and assert each
link of the chain from the FAT (mtools) and the ext4 root (debugfs) after qemu
exits, and from the serial log:

- systemd format (Bookworm): boot 1 is the sys-mods resize boot (stand-in),
  boot 2 runs piimg's firstrun.sh through ``systemd.run=`` and reboots,
  boot 3 runs ``piimg-firstboot.service``.
- cloud-init format (Trixie, current and the first release of 2025-10-01,
  which has no seed files): no ``init=`` boot; boot 1 is a systemd boot that
  applies user-data/network-config and starts the first-boot service; a
  further boot only if it is not done yet.

k3s comes from the payload: the build fetches a generated k3s release from
a loopback mirror (``cluster.artifact_mirror``, tests/releaseserver.py).
e2e-only override after the build: the payload's install.sh is replaced by
the stand-in installer (its SHA-256 put into node.json), the DNS probe of
the registry is switched off (the guest has no internet) and the wait limits
are shortened. The stand-in server at ``http://10.0.2.100`` must see no
request: first boot downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import imgfs, qemu, standin
from tests.e2e.baseimage import DIAG_PREFIX, LOGIN_USER, SYS_MODS_INIT, BaseImage
from tests.k3s_token import hash_ca, parse_token
from tests.releaseserver import Published

INSTALL_HOST = "10.0.2.100"
K3S_VERSION = "v1.36.3+k3s1"
UNIT = "piimg-firstboot.service"
WANTS = "/etc/systemd/system/multi-user.target.wants"
# First boot's waits. The stand-ins answer at once, so these are shortened
# to fail a broken link in minutes, not hours; but the network wait is on
# something the guest does itself (cloud-init/netplan and NetworkManager
# bring eth0 up with its static address and default route), which under TCG
# on a loaded 2-core host once took longer than 180 s. It keeps first boot's
# own default (piimg/firstboot/context.py DEFAULT_TIMEOUTS "network": 600):
# it polls the real condition (a default route in /proc/net/route), so a
# quick route costs nothing and only a missing one waits the whole limit.
TIMEOUTS = {"network": 600, "clock": 120, "download": 120, "node": 60, "metallb": 60, "ingress": 60, "command": 60}
#: One boot may hold the whole network wait plus everything else a boot does
#: (start-up, the other steps, the probe's power-off): 420 s was the limit
#: with a 180 s network wait.
BOOT_TIMEOUT = 240 + TIMEOUTS["network"]
MAX_BOOTS = 5
#: pytest's limit per case: the boots before first boot (systemd: resize and
#: hook boots) plus two full boots, with room for the build.
CASE_TIMEOUT = 600 + 2 * BOOT_TIMEOUT

SERVER = {"hostname": "k8s-master", "role": "server", "address": "10.0.2.10"}
AGENT = {"hostname": "k8s-worker-1", "role": "agent", "address": "10.0.2.11"}
SERVER_URL = f"https://{SERVER['address']}:6443"


def spec_text(init_format: str, mirror: str, login_key: str) -> str:
    """The e2e spec; ``login_key`` is the public half of the session's key pair (conftest.login_keypair)."""
    spec: dict[str, Any] = {
        "image": {"init_format": init_format, "arch": "arm64"},
        "access": {"user": LOGIN_USER, "ssh_authorized_keys": [login_key]},
        "cluster": {"k3s_version": K3S_VERSION, "artifact_mirror": mirror},
        "nodes": [SERVER, AGENT],
    }
    return yaml.safe_dump(spec, sort_keys=False)


@dataclass
class Run:
    """One node's image through its boots, with everything needed to explain a failure."""

    node: dict[str, str]
    image: Path
    fat: imgfs.Fat
    ext: imgfs.Ext4
    workdir: Path
    server: standin.FileServer  # the k3s install script
    supervisor: standin.FileServer  # the k3s server's port 6443, for agents
    login_key: str  # the public key the spec authorises (its private half is in the guest: LOGIN_KEY)
    boots: list[qemu.Boot] = field(default_factory=list)

    def boot(self) -> qemu.Boot:
        fwd = [qemu.Forward(INSTALL_HOST, 80, self.server.port)]
        if self.node["role"] == "agent":
            fwd.append(qemu.Forward(SERVER["address"], 6443, self.supervisor.port))
        b = qemu.boot(self.image, number=len(self.boots) + 1, workdir=self.workdir, forwards=fwd,
                      timeout=BOOT_TIMEOUT, boot_offset=self.fat.offset)  # fmt: skip
        self.boots.append(b)
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"boot {b.number}: {b.seconds:.0f}s, qemu exit {b.returncode}, host load {load}, cmdline: {b.cmdline}")
        assert not b.timed_out, f"boot {b.number} did not end within {BOOT_TIMEOUT}s"
        return b

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.fat.read_text("piimg/status.json"))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def diagnosis(self) -> str:
        parts = []
        for b in self.boots[-2:]:
            parts.append(f"--- serial log of boot {b.number} (last 60 lines) ---\n{b.tail(60)}")
            diag = diag_lines(b.log)
            if diag:
                parts.append(f"--- the guest's network state and logs at the end of boot {b.number} ---\n" + "\n".join(diag))
        for name in ("piimg/firstboot.log", "piimg/firstrun.log", "piimg/status.json"):
            try:
                text = self.fat.read_text(name)
            except FileNotFoundError:
                text = "(missing)"
            parts.append(f"--- {name} on the FAT (last 40 lines) ---\n" + "\n".join(text.splitlines()[-40:]))
        return "\n".join(parts)


@pytest.fixture()
def run_factory(tmp_path: Path, request: pytest.FixtureRequest, k3s_release: Published,
                login_keypair: tuple[Path, str]) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []
    with (
        standin.http_server({"/install.sh": standin.INSTALL_SH.encode()}) as server,
        standin.https_server(tmp_path, {"/ping": b"pong", "/cacerts": b"stand-in"}) as supervisor,
    ):

        def make(base: BaseImage, init_format: str, node: dict[str, str] = SERVER) -> Run:
            return _build(tmp_path, base, init_format, node, server, supervisor, runs, k3s_release.mirror, login_keypair[1])

        yield make
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for r in runs:
            print(r.diagnosis())


def _build(
    tmp_path: Path,
    base: BaseImage,
    init_format: str,
    node: dict[str, str],
    server: standin.FileServer,
    supervisor: standin.FileServer,
    runs: list[Run],
    mirror: str,
    login_key: str,
) -> Run:
    from click.testing import CliRunner

    from piimg.cli import main

    project = tmp_path / "proj"
    project.mkdir()
    (project / "piimg.yaml").write_text(spec_text(init_format, mirror, login_key))
    out = tmp_path / "out"
    runner = CliRunner()
    rc: dict[str, int] = {}

    def entry() -> None:
        rc["rc"] = main(
            ["-c", str(project / "piimg.yaml"), "build", "--node", node["hostname"], "--image", str(base.path), "-o", str(out),
             "--full-images"]  # the test edits node.json inside the image before booting it
        )

    import click

    res = runner.invoke(click.Command("piimg", callback=entry), [], catch_exceptions=False)
    assert rc.get("rc", res.exit_code) == 0, f"piimg build failed:\n{res.output}"
    print(res.output)
    image = out / f"{node['hostname']}.img"
    assert image.is_file(), res.output
    fat = imgfs.Fat(image, base.boot_offset)
    ext = imgfs.Ext4(image, base.root_offset)
    # e2e-only: the stand-in installer in place of the pinned install.sh, no DNS probe
    conf = json.loads(fat.read_text("piimg/node.json"))
    fat.write_text("piimg/k3s/install.sh", standin.INSTALL_SH)
    conf["k3s"]["install_sha256"] = hashlib.sha256(standin.INSTALL_SH.encode()).hexdigest()
    conf["k3s"]["registry_host"] = None
    conf["timeouts"] = TIMEOUTS
    fat.write_text("piimg/node.json", json.dumps(conf, indent=2) + "\n")
    run = Run(node=node, image=image, fat=fat, ext=ext, workdir=tmp_path, server=server, supervisor=supervisor,
              login_key=login_key)
    runs.append(run)
    return run


def diag_lines(log: str) -> list[str]:
    """What the probe's netdiag.sh printed (prefix removed), wherever it stands in the serial log."""
    prefix = DIAG_PREFIX + " "
    return [ln.split(prefix, 1)[1] if prefix in ln else "" for ln in log.splitlines() if DIAG_PREFIX in ln]


def _secrets(run: Run) -> list[str]:
    """The generated secrets (k3s token...) of the build: they must never leak."""
    data = yaml.safe_load((run.workdir / "proj" / ".piimg" / "secrets.yaml").read_text())
    return [str(v) for v in _leaves(data) if isinstance(v, str) and len(v) >= 16]


def _leaves(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for v in data.values():
            yield from _leaves(v)
    elif isinstance(data, list):
        for v in data:
            yield from _leaves(v)
    else:
        yield data


def assert_first_run_applied(run: Run, *, hook: bool) -> None:
    """The first-run hook (systemd) or cloud-init (user-data) did its part."""
    ext, fat = run.ext, run.fat
    assert ext.read_text("/etc/hostname").strip() == run.node["hostname"]
    passwd = {line.split(":")[0]: line.split(":") for line in ext.read_text("/etc/passwd").splitlines() if line}
    assert LOGIN_USER in passwd, f"user {LOGIN_USER} missing from /etc/passwd"
    home = passwd[LOGIN_USER][5]
    keys = ext.read_text(f"{home}/.ssh/authorized_keys")
    assert run.login_key in keys, f"{home}/.ssh/authorized_keys lacks the spec's key: {keys!r}"
    assert ext.readlink(f"{WANTS}/ssh.service") is not None, "ssh.service is not enabled"
    assert ext.exists(f"/etc/systemd/system/{UNIT}"), f"{UNIT} not installed"
    assert ext.exists("/opt/piimg/node.json"), "payload not copied to /opt/piimg"
    if hook:
        cmdline = fat.read_text("cmdline.txt")
        assert "systemd.run" not in cmdline and "kernel-command-line.target" not in cmdline, cmdline
        assert not fat.exists("firstrun.sh"), "firstrun.sh still on the boot partition"


def assert_first_boot_done(run: Run, secrets: list[str]) -> None:
    """piimg-firstboot.service ran every step; the stand-in installer saw the right call."""
    ext, fat = run.ext, run.fat
    status = run.status()
    assert status is not None, "no status.json on the boot partition"
    assert status["state"] == "done", f"first boot not done: state={status['state']} step={status['step']} error={status['error']}"
    assert status["step"] == "finish", status
    assert all(s["state"] == "done" for s in status["steps"].values()), status["steps"]
    server = run.node["role"] == "server"
    cluster = ["cluster"] if server else []
    assert list(status["steps"]) == ["scrub", "hostname", "identity", "address", "network", "cgroup", "k3s", *cluster, "finish"]
    if server:
        assert status["ingress_ip"] == "10.0.4.1", status  # first address of the default pool 10.0.4.0/23

    record = json.loads(ext.read_text("/var/lib/piimg-e2e/install.json"))
    assert record["uid"] == 0
    assert run.server.requests == [], "first boot downloaded something (k3s comes from the payload)"
    assert record["env"].get("INSTALL_K3S_SKIP_DOWNLOAD") == "true", record["env"]
    assert record["env"].get("INSTALL_K3S_VERSION") == K3S_VERSION, record["env"]
    assert record["env"].get("INSTALL_K3S_EXEC") == run.node["role"], record["env"]
    assert "K3S_TOKEN" not in record["env"]
    config = yaml.safe_load(record["config_yaml"] or "{}")
    assert config.get("node-name") == run.node["hostname"], config
    assert config.get("node-ip") == run.node["address"], config
    # k3s's secure token (hash per k3s's hashCA, re-implemented in tests/k3s_token.py) around the build's secret
    state = run.workdir / "proj" / ".piimg"
    token = parse_token(str(config.get("token")))
    assert token.password in secrets and token.username == "server", "config.yaml does not hold the build's k3s token"
    assert token.ca_hash == hash_ca((state / "k3s-ca" / "server-ca.crt").read_bytes()), "token CA hash != the build's CA"
    # the CA files and the node password were in place when the (stand-in) k3s install ran
    ca_files = {str(p.relative_to(state / "k3s-ca")): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (state / "k3s-ca").rglob("*") if p.is_file() and not p.name.startswith("root-ca.")}
    assert record["tls"] == (ca_files if server else {}), f"k3s tls folder at install time: {sorted(record['tls'])}"
    passwords = yaml.safe_load((state / "node-passwords.yaml").read_text())
    assert record["node_password"] == passwords[run.node["hostname"]] + "\n", "node password not in place before k3s"
    assert ext.stat("/etc/rancher/node/password")["mode"].endswith("600")
    if server:
        assert {"traefik", "servicelb"} <= set(config.get("disable", [])), config
    else:
        assert record["env"].get("K3S_URL") == SERVER_URL, record["env"]
        assert config.get("server") == SERVER_URL, config
        assert "/ping" in [r.path for r in run.supervisor.requests], "the agent did not wait for its server"
    for secret in secrets:
        assert secret not in json.dumps(record["env"]) and secret not in json.dumps(record["argv"]), "secret in env/argv"
    assert ext.stat("/etc/rancher/k3s/config.yaml")["mode"].endswith("600")

    manifests = ext.names("/var/lib/rancher/k3s/server/manifests")
    node = json.loads(ext.read_text("/opt/piimg/node.json"))
    if server:
        assert node["manifests"], "node.json lists no manifests"
        assert set(node["manifests"]) <= set(manifests), f"manifests placed: {manifests}, expected {node['manifests']}"
    else:
        assert manifests == [], f"an agent got server manifests: {manifests}"

    # secrets are gone from the FAT
    assert not fat.exists("piimg/manifests"), "piimg/manifests still on the boot partition"
    boot_node = fat.read_text("piimg/node.json")
    for secret in secrets:
        assert secret not in boot_node, "a secret is still in piimg/node.json on the boot partition"
    for name in fat.names("piimg"):
        if name not in ("manifests",):
            text = fat.read_bytes(f"piimg/{name}").decode(errors="replace") if "." in name else ""
            for secret in secrets:
                assert secret not in text, f"a secret is in piimg/{name} on the boot partition"
    # the service disabled itself
    assert ext.readlink(f"{WANTS}/{UNIT}") is None, f"{UNIT} still enabled"
    assert_host_key_is_pregenerated(run)
    assert_key_only_login(run)
    # no private key or node password left on the boot partition (user-data's key block is cut out)
    for name in ("user-data", "piimg/node.json"):
        if fat.exists(name):
            text = fat.read_text(name)
            assert "PRIVATE KEY" not in text and passwords[run.node["hostname"]] not in text, f"a secret is in {name}"


def assert_host_key_is_pregenerated(run: Run) -> None:
    """The guest's sshd presents the host key piimg generated (Pi OS's regeneration did not replace it)."""
    pub = (run.workdir / "proj" / ".piimg" / "ssh" / run.node["hostname"] / "ssh_host_ed25519_key.pub").read_text()
    expected = pub.split()[:2]
    lines = [ln for ln in run.boots[-1].log.splitlines() if "PIIMG-E2E-HOSTKEY:" in ln]
    assert lines, "the probe printed no host key line"
    presented = lines[-1].split("PIIMG-E2E-HOSTKEY:", 1)[1].split()
    assert presented[:2] == expected, f"sshd presents {presented}, piimg generated {expected}"
    assert run.ext.read_text("/etc/ssh/ssh_host_ed25519_key.pub").split()[:2] == expected
    assert run.ext.stat("/etc/ssh/ssh_host_ed25519_key")["mode"].endswith("600")
    assert run.ext.readlink(f"{WANTS}/regenerate_ssh_host_keys.service") is None, "Pi OS's key regeneration still enabled"


def assert_key_only_login(run: Run) -> None:
    """The spec's user has a locked password and still logs in with the spec's key (the probe's real ssh login).

    OpenSSH refuses a locked account (shadow password starting with ``!``)
    unless PAM does the account check: openssh-portable@010359b3:auth.c
    ``allowed_user()`` ("check for locked account" only ``if (!options.use_pam
    ...)``). Upstream's default is ``UsePAM no``; Debian's sshd_config, which
    Raspberry Pi OS ships, sets ``UsePAM yes``, so key-only login with a locked
    password depends on that line; ``sshd -T`` shows the effective value.
    """
    lines = [ln for ln in run.boots[-1].log.splitlines() if "PIIMG-E2E-LOGIN:" in ln]
    assert lines, "the probe printed no login line"
    seen = dict(w.split("=", 1) for w in lines[-1].split("PIIMG-E2E-LOGIN:", 1)[1].split() if "=" in w)
    errors = [ln.split("PIIMG-E2E-LOGIN-ERR:", 1)[1] for ln in run.boots[-1].log.splitlines() if "PIIMG-E2E-LOGIN-ERR:" in ln]
    assert seen.get("user") == LOGIN_USER, seen
    assert seen.get("password") == "locked", f"{LOGIN_USER}'s password is not locked: {seen}"
    assert seen.get("usepam") == "yes", f"sshd -T: usepam {seen.get('usepam')!r}; a locked account cannot log in without PAM"
    assert seen.get("login") == f"ok-{LOGIN_USER}", f"key login as {LOGIN_USER} failed: {seen}\n" + "\n".join(errors)


def _boot_until_done(run: Run, *, first: int) -> None:
    """Boot (at least once from boot ``first`` on) until first boot is done or stops making progress.

    More than one boot only when first boot itself asked for a reboot (state
    "waiting", e.g. for the memory cgroup) or is still running.
    """
    while len(run.boots) < MAX_BOOTS:
        if len(run.boots) >= first:
            status = run.status()
            if status is None or status.get("state") not in ("waiting", "running"):
                return
        run.boot()


@pytest.mark.e2e
@pytest.mark.timeout(CASE_TIMEOUT)
def test_systemd_server(base_image: Callable[[str], BaseImage], run_factory: Callable[..., Run]) -> None:
    base = base_image("systemd")
    run = run_factory(base, "auto")  # detected: sys-mods firstboot on cmdline.txt
    cmdline = run.fat.read_text("cmdline.txt")
    assert "systemd.run=/boot/firmware/firstrun.sh" in cmdline and SYS_MODS_INIT in cmdline, cmdline
    assert "cgroup_memory=1" in cmdline and "cgroup_enable=memory" in cmdline
    assert run.fat.exists("ssh") and run.fat.exists("firstrun.sh")
    secrets = _secrets(run)

    # boot 1: the (stand-in) sys-mods resize boot takes init= off cmdline.txt
    run.boot()
    cmdline = run.fat.read_text("cmdline.txt")
    assert SYS_MODS_INIT not in cmdline and "systemd.run=" in cmdline, cmdline

    # boot 2: firstrun.sh through systemd.run=, then a reboot
    b2 = run.boot()
    assert "reboot: Restarting system" in b2.log, "the first-run hook boot did not end in a reboot"
    assert run.status() is None, "first boot ran during the hook boot"
    assert_first_run_applied(run, hook=True)
    assert ext_wants(run, UNIT), f"{UNIT} not enabled by the first-run hook"

    # boot 3 (and more if first boot asks for a reboot): the first-boot service
    _boot_until_done(run, first=3)
    assert "PIIMG-E2E-PROBE:" in run.boots[-1].log
    # Type=exec: multi-user.target was reached while first boot still ran (a
    # oneshot unit would hold it until the end)
    last = probe(run.boots[-1])
    assert 0 < int(last["multiuser_at"]) < float(last["firstboot_last_log_at"]) * 1e6, last
    assert_first_boot_done(run, secrets)
    assert run.server.requests == [], "first boot fetched something; k3s comes from the payload"


@pytest.mark.e2e
@pytest.mark.timeout(CASE_TIMEOUT)
def test_systemd_agent(base_image: Callable[[str], BaseImage], run_factory: Callable[..., Run]) -> None:
    """An agent: waits for its server's supervisor port (stand-in), joins with K3S_URL, no manifests."""
    run = run_factory(base_image("systemd"), "systemd", AGENT)
    secrets = _secrets(run)
    run.boot()  # sys-mods resize boot
    run.boot()  # first-run hook
    assert_first_run_applied(run, hook=True)
    _boot_until_done(run, first=3)
    assert_first_boot_done(run, secrets)


@pytest.mark.e2e
@pytest.mark.timeout(CASE_TIMEOUT)
def test_cloudinit_server(base_image: Callable[[str], BaseImage], run_factory: Callable[..., Run]) -> None:
    base = base_image("cloudinit")
    run = run_factory(base, "auto")  # detected: seed files on the boot partition
    cmdline = run.fat.read_text("cmdline.txt")
    assert "ds=nocloud" in cmdline and "systemd.run" not in cmdline, cmdline
    user_data = run.fat.read_text("user-data")
    assert user_data.startswith("#cloud-config") and "k8s-master" in user_data
    secrets = _secrets(run)

    _boot_until_done(run, first=1)
    log = run.boots[0].log
    assert "cloud-init" in log
    assert_first_run_applied(run, hook=False)
    assert run.ext.exists("/var/lib/cloud/instance/boot-finished"), "cloud-init did not finish"
    result = json.loads(run.ext.read_text("/var/lib/cloud/data/result.json"))["v1"]
    assert "NoCloud" in result["datasource"], result
    assert result["errors"] == [], f"cloud-init reported errors: {result['errors']}"
    assert_first_boot_done(run, secrets)


def probe(boot: qemu.Boot) -> dict[str, str]:
    """The probe's summary line of a boot, as key=value pairs."""
    (line,) = [ln for ln in boot.log.splitlines() if "PIIMG-E2E-PROBE:" in ln]
    return dict(w.split("=", 1) for w in line.split("PIIMG-E2E-PROBE:", 1)[1].split() if "=" in w)


@pytest.mark.e2e
@pytest.mark.timeout(CASE_TIMEOUT)
def test_cloudinit_first_trixie_release(base_image: Callable[[str], BaseImage], run_factory: Callable[..., Run]) -> None:
    """Trixie 2025-10-01: no seed files, no init=: auto picks cloud-init, boot 1 is already a systemd boot."""
    base = base_image("cloudinit-2025-10-01")
    assert not base_has_seed(base)
    run = run_factory(base, "auto")
    cmdline = run.fat.read_text("cmdline.txt")
    assert "ds=nocloud" in cmdline and "systemd.run" not in cmdline and "init=" not in cmdline, cmdline
    assert run.fat.exists("user-data") and run.fat.exists("meta-data") and run.fat.exists("network-config")
    secrets = _secrets(run)
    _boot_until_done(run, first=1)
    assert_first_run_applied(run, hook=False)
    result = json.loads(run.ext.read_text("/var/lib/cloud/data/result.json"))["v1"]
    assert "NoCloud" in result["datasource"] and result["errors"] == [], result
    assert_first_boot_done(run, secrets)


def base_has_seed(base: BaseImage) -> bool:
    fat = imgfs.Fat(base.path, base.boot_offset)
    return any(fat.exists(n) for n in ("user-data", "meta-data", "network-config"))


def ext_wants(run: Run, unit: str) -> bool:
    return run.ext.readlink(f"{WANTS}/{unit}") is not None
