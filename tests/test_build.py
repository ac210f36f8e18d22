"""Integration tests of ``piimg build``: real generated images, checked with independent tools.

fsck.vfat, mtools, sh -n and shellcheck judge the result; nothing here reads
the images back through piimg's own FAT code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_KEY, have, run_ok
from tests.imagegen import GeneratedImage, extract_partition, make_image, tools_available
from tests.releaseserver import Published

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (tools_available() and have("fsck.vfat") and have("mtype")), reason="needs dosfstools, mtools, e2fsprogs"),
]

FIRSTBOOT = Path(__file__).resolve().parent.parent / "piimg" / "firstboot"
SPEC_BASE = f"""\
access:
  user: admin
  ssh_authorized_keys: ["{TEST_KEY}"]
locale:
  timezone: Europe/Berlin
  keymap: de
nodes:
  - {{hostname: k8s-master, role: server, address: 10.0.2.10}}
  - {{hostname: k8s-worker-1, role: agent, address: 10.0.2.11}}
"""
CGROUP = ("cgroup_memory=1", "cgroup_enable=memory")
#: what the tests write: SPEC_BASE + the k3s release mirror + ``image:`` (tests may add image keys)
SPEC = SPEC_BASE + "image:\n  arch: arm64\n"


@pytest.fixture(autouse=True)
def _release(k3s_release: Published, monkeypatch: pytest.MonkeyPatch) -> Published:
    """k3s and the charts come from a generated release behind a mirror on 127.0.0.1."""
    monkeypatch.setattr(sys.modules[__name__], "SPEC", SPEC_BASE + k3s_release.cluster_yaml() + "image:\n  arch: arm64\n")
    return k3s_release


HOOK = (
    "systemd.run=/boot/firmware/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], GeneratedImage]:
    """Small generated base images, one per (flavour, alignment), shared by the module."""
    out = {}
    d = tmp_path_factory.mktemp("bases")
    for flavour, align in (("bookworm", 8), ("trixie", 4), ("bookworm", 4), ("trixie", 8)):
        out[(flavour, align)] = make_image(d / f"{flavour}-{align}.img", flavour=flavour, align_mib=align, boot_mib=48, root_mib=24)
    return out


def _sha(path: Path, start: int = 0, end: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = (end if end is not None else os.path.getsize(path)) - start
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _mtype(img: Path, offset: int, path: str) -> bytes:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    proc = subprocess.run(["mtype", "-i", f"{img}@@{offset}", f"::{path}"], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _mcopy_all(img: Path, offset: int, dest: Path) -> dict[str, bytes]:
    """Every file of the FAT file system, read by mtools."""
    dest.mkdir()
    run_ok(["mcopy", "-s", "-n", "-i", f"{img}@@{offset}", "::*", str(dest)])
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


def _fsck_clean(img: Path, base: GeneratedImage, tmp: Path) -> None:
    part = extract_partition(img, base.boot_offset, base.boot_size, tmp / f"{img.stem}.boot")
    proc = subprocess.run(["fsck.vfat", "-n", str(part)], capture_output=True, text=True)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 0, lines
    # exactly the banner and the summary: not a single warning
    assert len(lines) == 2 and lines[0].startswith("fsck.fat"), lines
    assert re.match(r"^\S+: \d+ files, \d+/\d+ clusters$", lines[1]), lines


def _cmdline_words(text: bytes) -> list[str]:
    s = text.decode()
    assert s.endswith("\n") and s.count("\n") == 1, f"cmdline.txt is not one line: {s!r}"
    assert "  " not in s
    return s.split()


def _build(piimg: Any, project: Path, base: GeneratedImage, *args: str) -> Any:
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(base.path), *args)
    assert r.exit_code == 0, r
    return r


def _img(piimg: Any, project: Path, hostname: str, out: str = "build") -> Path:
    """The node's full image: build/NODE.img (--full-images), or base + overlay exported by ``piimg export``."""
    full = project / out / f"{hostname}.img"
    if full.exists():
        return full
    overlay = project / out / f"{hostname}.overlay"
    assert overlay.is_file(), f"neither {full} nor {overlay}"
    exported = project / "exported" / out / f"{hostname}.img"
    exported.parent.mkdir(parents=True, exist_ok=True)
    r = piimg("export", str(overlay), "-o", str(exported))
    assert r.exit_code == 0, r
    return exported


def _built(project: Path, hostname: str) -> bool:
    return any((project / "build" / f"{hostname}{suffix}").exists() for suffix in (".img", ".overlay"))


def _check_common(img: Path, base: GeneratedImage, tmp: Path, hostname: str) -> dict[str, bytes]:
    assert img.is_file()
    assert img.stat().st_size == base.path.stat().st_size
    assert (img.stat().st_mode & 0o077) == 0, "node images carry the k3s token: owner-only"
    # the root partition and everything outside the boot partition: unchanged bytes
    assert _sha(img, base.root_offset, base.root_offset + base.root_size) == _sha(base.path, base.root_offset, base.root_offset + base.root_size)
    assert _sha(img, 0, base.boot_offset) == _sha(base.path, 0, base.boot_offset)
    assert _sha(img, base.boot_offset + base.boot_size) == _sha(base.path, base.boot_offset + base.boot_size)
    _fsck_clean(img, base, tmp)
    files = _mcopy_all(img, base.boot_offset, tmp / f"{img.stem}-files")
    before = _mcopy_all(base.path, base.boot_offset, tmp / f"{img.stem}-base")
    for name in ("config.txt", "kernel8.img", "bcm2712-rpi-5-b.dtb", "issue.txt"):
        assert files[name] == before[name], f"{name} changed"
    assert files["ssh"] == b""
    for src in FIRSTBOOT.glob("*.py"):
        assert files[f"piimg/firstboot/{src.name}"] == src.read_bytes()
    assert not any("__pycache__" in n for n in files)
    node = json.loads(files["piimg/node.json"])
    assert node["hostname"] == hostname
    assert node["user"] == "admin"
    assert node["secrets"]["k3s_token"]
    assert node["k3s"]["config_yaml"]
    for name in node["manifests"]:
        assert f"piimg/manifests/{name}" in files
    assert node["initial_server"] is (hostname == "k8s-master")
    if hostname == "k8s-master":
        assert node["manifests"] and node["ingress"], "the initial server deploys the add-ons"
    else:
        assert not any(n.startswith("piimg/manifests/") for n in files)
    # k3s from the pinned, verified release files; node.json records their digests
    k3s = node["k3s"]
    assert "install_url" not in k3s
    assert hashlib.sha256(files["piimg/k3s/install.sh"]).hexdigest() == k3s["install_sha256"]
    assert hashlib.sha256(files["piimg/k3s/k3s"]).hexdigest() == k3s["binary_sha256"] and k3s["arch"] == "arm64"
    for name in node["manifests"]:
        for doc in yaml.safe_load_all(files[f"piimg/manifests/{name}"]):
            if doc and doc["kind"] == "HelmChart":  # every chart on the card by content, none by version
                assert "chartContent" in doc["spec"], name
                assert not {"version", "repo", "chart"} & set(doc["spec"]), name
    unit = FIRSTBOOT / "piimg-firstboot.service"
    if unit.exists():
        assert files["piimg/piimg-firstboot.service"] == unit.read_bytes()
    # mtools finds each file by name too (long names and lower-case 8.3 flags)
    assert _mtype(img, base.boot_offset, "piimg/node.json") == files["piimg/node.json"]
    return files


@pytest.mark.parametrize(("align", "full"), [(8, False), (4, True)], ids=["align8-overlay", "align4-full"])
def test_build_systemd_format(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage], tmp_path: Path, align: int,
                              full: bool) -> None:
    base = bases[("bookworm", align)]
    r = _build(piimg, project, base, *(["--full-images"] if full else []))
    assert "init format systemd" in r.stdout
    for hostname, address in (("k8s-master", "10.0.2.10"), ("k8s-worker-1", "10.0.2.11")):
        assert str(project / "build" / f"{hostname}{'.img' if full else '.overlay'}") in r.stdout and address in r.stdout
        img = _img(piimg, project, hostname)
        files = _check_common(img, base, tmp_path, hostname)
        words = _cmdline_words(files["cmdline.txt"])
        for w in (*CGROUP, *HOOK, "init=/usr/lib/raspberrypi-sys-mods/firstboot"):
            assert words.count(w) == 1, (w, words)
        assert not any(w.startswith("ds=") for w in words)
        assert "user-data" not in files
        script = tmp_path / f"{hostname}-firstrun.sh"
        script.write_bytes(files["firstrun.sh"])
        run_ok(["sh", "-n", str(script)])
        if have("shellcheck"):
            run_ok(["shellcheck", "-s", "sh", str(script)])
        text = script.read_text()
        assert f"NEW_HOSTNAME='{hostname}'\n" in text and "NEW_USER='admin'\n" in text
        assert TEST_KEY in text and "TIMEZONE='Europe/Berlin'" in text and "KEYMAP='de'" in text
        assert "/opt/piimg" in text and "systemctl enable" in text
        # the script's own clean-up line, run on the built cmdline.txt, leaves the
        # original words plus the cgroup flags, twice in a row
        (sed_line,) = [ln for ln in text.splitlines() if ln.startswith("sed -i 's| systemd")]
        cmd = tmp_path / f"{hostname}-cmdline.txt"
        cmd.write_bytes(files["cmdline.txt"])
        for _ in range(2):
            run_ok(["sh", "-c", sed_line.replace('"$BOOT/cmdline.txt"', '"$1"'), "sh", str(cmd)])
        original = _mtype(base.path, base.boot_offset, "cmdline.txt").decode().split()
        assert cmd.read_text() == " ".join([*original, *CGROUP]) + "\n"
    # the two node images differ only inside the boot partition (checked above) and there
    assert _sha(_img(piimg, project, "k8s-master")) != _sha(_img(piimg, project, "k8s-worker-1"))


@pytest.mark.parametrize(("align", "full"), [(4, False), (8, True)], ids=["align4-overlay", "align8-full"])
def test_build_cloudinit_format(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage], tmp_path: Path, align: int,
                                full: bool) -> None:
    base = bases[("trixie", align)]
    r = _build(piimg, project, base, *(["--full-images"] if full else []))
    assert "init format cloudinit" in r.stdout
    ids = set()
    for hostname, address in (("k8s-master", "10.0.2.10"), ("k8s-worker-1", "10.0.2.11")):
        img = _img(piimg, project, hostname)
        files = _check_common(img, base, tmp_path, hostname)
        assert "firstrun.sh" not in files
        user = yaml.safe_load(files["user-data"])
        assert files["user-data"].startswith(b"#cloud-config\n")
        assert user["hostname"] == hostname and user["manage_etc_hosts"] is True
        assert user["timezone"] == "Europe/Berlin" and "keyboard" not in user
        assert any(c[-1] == "de" and "set_keymap" in c[2] for c in user["runcmd"])
        u = user["user"]  # singular: renames the image's default user (uid 1000)
        assert "users" not in user
        assert user["runcmd"][0][-1] == "admin" and "cancel-rename" in user["runcmd"][0][2]
        assert u["name"] == "admin" and u["ssh_authorized_keys"] == [TEST_KEY] and u["lock_passwd"] is True
        assert "passwd" not in u and user["ssh_pwauth"] is False
        cmds = [" ".join(c) for c in user["runcmd"]]
        assert any("enable" in c and "ssh" in c for c in cmds)
        assert any("cp -R" in c and "/opt/piimg" in c for c in cmds)
        assert "systemctl enable piimg-firstboot.service" in cmds
        assert "systemctl start --no-block piimg-firstboot.service" in cmds
        meta = yaml.safe_load(files["meta-data"])
        assert meta["local-hostname"] == hostname
        net = yaml.safe_load(files["network-config"])["network"]
        assert net["version"] == 2
        assert list(net["ethernets"]) == ["eth0"] and "match" not in net["ethernets"]["eth0"]
        eth = net["ethernets"]["eth0"]
        assert eth["addresses"] == [f"{address}/23"]
        assert eth["routes"] == [{"to": "0.0.0.0/0", "via": "10.0.2.1"}]
        assert eth["nameservers"]["addresses"] == ["8.8.8.8", "8.8.4.4"]
        words = _cmdline_words(files["cmdline.txt"])
        for w in (*CGROUP, f"ds=nocloud;i={meta['instance-id']}"):
            assert words.count(w) == 1, (w, words)
        assert sum(w.startswith("ds=") for w in words) == 1
        assert not any(w.startswith("systemd.run") for w in words)
        ids.add(meta["instance-id"])
    assert len(ids) == 2


def test_rebuild_from_a_built_image_keeps_words_once(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage], tmp_path: Path) -> None:
    base = bases[("trixie", 8)]
    _build(piimg, project, base, "--node", "k8s-master")
    first = _img(piimg, project, "k8s-master")
    again = tmp_path / "again.img"
    shutil.copy(first, again)
    r = piimg("build", "--image", str(again), "--node", "k8s-master", "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r
    img = _img(piimg, project, "k8s-master", out=str(tmp_path / "out"))
    words = _cmdline_words(_mtype(img, base.boot_offset, "cmdline.txt"))
    for w in CGROUP:
        assert words.count(w) == 1
    assert sum(w.startswith("ds=") for w in words) == 1
    _fsck_clean(img, base, tmp_path)


def test_last_json_and_node_selection(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage]) -> None:
    base = bases[("bookworm", 8)]
    r = _build(piimg, project, base, "--node", "k8s-worker-1")
    assert not _built(project, "k8s-master")
    last = json.loads((project / "build" / "last.json").read_text())
    assert last["schema"] == 3 and last["spec"] == str(project / "piimg.yaml")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", last["built_at"])
    assert last["base"]["path"] == str(base.path) and last["base"]["sha256"] == _sha(base.path)
    assert last["base"]["init_format"] == "systemd"
    assert list(last["nodes"]) == ["k8s-worker-1"]
    w = last["nodes"]["k8s-worker-1"]
    assert w == {
        "image": str(project / "build" / "k8s-worker-1.overlay"),
        "kind": "overlay",
        "size": base.path.stat().st_size,
        "role": "agent",
        "address": "10.0.2.11",
        "init_format": "systemd",
        "base_sha256": _sha(base.path),
        "built_at": last["built_at"],
        "shared": w["shared"],
    }
    (shared,) = (project / "build").glob("shared-*.layer")
    assert w["shared"] == str(shared) and shared.name == f"shared-{_sha(shared)[:16]}.layer"
    assert "k8s-worker-1" in r.stdout
    # a second build of the other node keeps the first in last.json (same base)
    r = piimg("build", "--image", str(base.path), "--node", "k8s-master")
    assert r.exit_code == 0, r
    last = json.loads((project / "build" / "last.json").read_text())
    assert sorted(last["nodes"]) == ["k8s-master", "k8s-worker-1"]
    assert last["nodes"]["k8s-master"]["role"] == "server"
    # -o elsewhere, as full images, from another base: the nodes built before stay flashable (S16)
    other = project / "other.img"
    shutil.copy(bases[("bookworm", 4)].path, other)
    r = piimg("build", "--image", str(other), "--node", "k8s-master", "-o", "big", "--full-images")
    assert r.exit_code == 0, r
    last = json.loads((project / "build" / "last.json").read_text())
    assert sorted(last["nodes"]) == ["k8s-master", "k8s-worker-1"]
    assert last["nodes"]["k8s-master"]["image"] == str(project / "big" / "k8s-master.img")
    assert last["nodes"]["k8s-master"]["kind"] == "image"
    assert last["nodes"]["k8s-master"]["base_sha256"] == _sha(other)
    assert last["nodes"]["k8s-worker-1"]["base_sha256"] == _sha(base.path)
    # an unknown node: one clear line, nothing written
    before = sorted(p.name for p in (project / "build").iterdir())
    r = piimg("build", "--image", str(base.path), "--node", "nope")
    assert r.exit_code != 0
    assert "nope" in r.stderr and "k8s-master" in r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output
    assert sorted(p.name for p in (project / "build").iterdir()) == before


@pytest.mark.parametrize("content", [b"", b"\0" * 4096, os.urandom(70000)])
def test_bad_image_one_line_error_no_output(piimg: Any, project: Path, tmp_path: Path, content: bytes) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    bad = tmp_path / "bad.img"
    bad.write_bytes(content)
    r = piimg("build", "--image", str(bad))
    assert r.exit_code != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], r.stderr
    assert "Traceback" not in r.output
    out = project / "build"
    assert not out.exists() or not [p for p in out.iterdir() if p.suffix in (".img", ".overlay", ".part") or ".part" in p.name]


def test_refuses_to_overwrite_its_base(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage]) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    (project / "build").mkdir()
    img = project / "build" / "k8s-master.img"
    shutil.copy(bases[("bookworm", 8)].path, img)
    before = _sha(img)
    r = piimg("build", "--image", str(img), "--full-images")
    assert r.exit_code != 0 and "overwritten" in r.stderr
    assert _sha(img) == before and not _built(project, "k8s-worker-1")
    # overlays only read their base: a full image in build/ is a fine base for them
    r = piimg("build", "--image", str(img))
    assert r.exit_code == 0, r
    assert _sha(img) == before and (project / "build" / "k8s-master.overlay").is_file()


def test_missing_image(piimg: Any, project: Path, tmp_path: Path) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(tmp_path / "nope.img"))
    assert r.exit_code != 0 and "nope.img" in r.stderr and "no such file" in r.stderr


def test_directory_as_image(piimg: Any, project: Path, tmp_path: Path) -> None:
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(tmp_path))
    assert r.exit_code == 1 and "is a directory, not an image file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_init_format_contradicting_the_image_warns(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage]) -> None:
    (project / "piimg.yaml").write_text(SPEC + "  init_format: cloudinit\n")
    r = piimg("build", "--image", str(bases[("bookworm", 8)].path), "--node", "k8s-master")
    assert r.exit_code == 0, r
    assert "warning: image.init_format is cloudinit, but" in r.stderr and "looks like a systemd image" in r.stderr
    (project / "piimg.yaml").write_text(SPEC + "  init_format: cloudinit-rpi\n")
    r = piimg("build", "--image", str(bases[("trixie", 8)].path), "--node", "k8s-master")
    assert r.exit_code == 0 and "warning" not in r.stderr, r  # both cloud-init: no contradiction


def test_undetectable_init_format_suggests_setting(piimg: Any, project: Path, tmp_path: Path) -> None:
    # no seed files, no init=, no Trixie resize word: neither format can be recognised
    base = make_image(tmp_path / "odd.img", flavour="bookworm", boot_mib=48, root_mib=24,
                      boot_extra={"cmdline.txt": b"console=tty1 root=PARTUUID=5e3da0c1-02 rootwait\n"})
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(base.path))
    assert r.exit_code != 0
    assert "image.init_format" in r.stderr
    assert not _built(project, "k8s-master")
    # stating the format in the spec makes it build
    (project / "piimg.yaml").write_text(SPEC + "  init_format: cloudinit\n")
    r = piimg("build", "--image", str(base.path), "--node", "k8s-master")
    assert r.exit_code == 0, r
    words = _cmdline_words(_mtype(_img(piimg, project, "k8s-master"), base.boot_offset, "cmdline.txt"))
    assert sum(w.startswith("ds=nocloud;i=") for w in words) == 1


def test_first_trixie_release_builds_with_cloudinit(piimg: Any, project: Path, tmp_path: Path) -> None:
    """Trixie 2025-10-01: no seed files, no init=: auto picks cloud-init and writes the seed."""
    base = make_image(tmp_path / "t1.img", flavour="trixie-2025-10-01", boot_mib=48, root_mib=24)
    r = _build(piimg, project, base, "--node", "k8s-master")
    assert "init format cloudinit" in r.stdout
    files = _check_common(_img(piimg, project, "k8s-master"), base, tmp_path, "k8s-master")
    assert {"user-data", "meta-data", "network-config"} <= set(files) and "firstrun.sh" not in files
    words = _cmdline_words(files["cmdline.txt"])
    assert words[-4:-1] == ["resize", *CGROUP] and words[-1].startswith("ds=nocloud;i=")


@pytest.mark.parametrize("flavour", ["trixie-2025-10-01", "trixie"])
def test_systemd_format_on_trixie_is_refused(piimg: Any, project: Path, tmp_path: Path, flavour: str) -> None:
    base = make_image(tmp_path / "t.img", flavour=flavour, boot_mib=48, root_mib=24)
    (project / "piimg.yaml").write_text(SPEC + "  init_format: systemd\n")
    r = piimg("build", "--image", str(base.path))
    assert r.exit_code != 0
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: image.init_format: systemd needs an image whose first boot is init="), r.stderr
    assert not (project / "build").exists() or not [p for p in (project / "build").iterdir() if p.suffix in (".img", ".overlay")]


def test_bullseye_is_refused(piimg: Any, project: Path, tmp_path: Path) -> None:
    base = make_image(tmp_path / "b.img", flavour="bullseye", boot_mib=48, root_mib=24)
    (project / "piimg.yaml").write_text(SPEC)
    r = piimg("build", "--image", str(base.path))
    assert r.exit_code != 0 and "Bullseye or older" in r.stderr and "Bookworm and later" in r.stderr, r.stderr
    assert not (project / "build").exists() or not [p for p in (project / "build").iterdir() if p.suffix in (".img", ".overlay")]


@pytest.mark.skipif(not have("setpriv"), reason="needs setpriv (util-linux)")
def test_build_runs_as_unprivileged_user(bases: dict[tuple[str, int], GeneratedImage], home: Path, _release: Published) -> None:
    """A whole build as uid/gid 65534 (nobody) without capabilities, on files it owns."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: every other test here proves it")
    base = bases[("bookworm", 8)]
    _release_prelude = _release.child_prelude()
    work = Path(tempfile.mkdtemp(prefix="piimg-unpriv-"))
    try:
        os.chmod(work, 0o777)
        img = work / "base.img"
        shutil.copy(base.path, img)
        (work / "piimg.yaml").write_text(SPEC)
        for p in (img, work / "piimg.yaml"):
            os.chown(p, 65534, 65534)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "PIIMG_CACHE_DIR": str(work / "cache"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "LC_ALL": "C.UTF-8",
        }
        # the child gets the test's pins (generated release files) before piimg runs
        code = _release_prelude + "import runpy, sys\nsys.argv = ['piimg', 'build', '--image', sys.argv[1], '--node', 'k8s-master']\n" \
            "runpy.run_module('piimg', run_name='__main__', alter_sys=True)\n"
        argv = [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
            sys.executable, "-c", code, str(img),
        ]
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (work / "build" / "k8s-master.overlay").stat().st_uid == 65534
        out = work / "build" / "k8s-master.img"
        proc = subprocess.run([*argv[: argv.index(sys.executable)], sys.executable, "-m", "piimg", "export", "k8s-master",
                               "-o", str(out)], cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert out.stat().st_uid == 65534
        assert _sha(out, base.root_offset, base.root_offset + base.root_size) == _sha(base.path, base.root_offset, base.root_offset + base.root_size)
        words = _cmdline_words(_mtype(out, base.boot_offset, "cmdline.txt"))
        assert words.count("cgroup_enable=memory") == 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.skipif(not have("sfdisk"), reason="needs sfdisk (fdisk)")
def test_build_gpt_image(piimg: Any, project: Path, tmp_path: Path) -> None:
    base = make_image(tmp_path / "gpt.img", flavour="bookworm", align_mib=8, boot_mib=48, root_mib=24, gpt=True)
    _build(piimg, project, base, "--node", "k8s-worker-1")
    files = _check_common(_img(piimg, project, "k8s-worker-1"), base, tmp_path, "k8s-worker-1")
    assert _cmdline_words(files["cmdline.txt"]).count("cgroup_enable=memory") == 1


def test_build_runs_no_external_command(bases: dict[tuple[str, int], GeneratedImage], project: Path, no_subprocess: None) -> None:
    """No mount, no losetup, no sudo: the build core starts no process at all."""
    from piimg.build.images import build_images
    from piimg.spec import load as spec_load
    from piimg.spec.secrets import Secrets

    (project / "piimg.yaml").write_text(SPEC)
    spec = spec_load.load(project / "piimg.yaml")
    for key in (("bookworm", 4), ("trixie", 8)):
        built = build_images(spec, Secrets("x" * 64), image=str(bases[key].path), output_dir=project / key[0])
        assert [b.hostname for b in built] == ["k8s-master", "k8s-worker-1"]


def test_build_from_a_compressed_image_url(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage], tmp_path: Path) -> None:
    """image.url to a local .img.gz: decompressed once into the cache, then built."""
    import gzip

    base = bases[("trixie", 4)]
    packed = project / "raspios.img.gz"
    with open(base.path, "rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = _sha(packed)
    (project / "piimg.yaml").write_text(SPEC + f"  url: raspios.img.gz\n  sha256: {digest}\n")
    r = piimg("build", "--node", "k8s-worker-1")
    assert r.exit_code == 0, r
    last = json.loads((project / "build" / "last.json").read_text())
    assert last["base"]["sha256"] == _sha(base.path) and last["base"]["init_format"] == "cloudinit"
    assert Path(last["base"]["path"]).is_file() and Path(last["base"]["path"]) != packed
    _check_common(_img(piimg, project, "k8s-worker-1"), base, tmp_path, "k8s-worker-1")
    # a wrong checksum: one line, nothing built
    (project / "piimg.yaml").write_text(SPEC + f"  url: raspios.img.gz\n  sha256: {'0' * 64}\n")
    shutil.rmtree(project / "build")
    r = piimg("build")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert not _built(project, "k8s-master")


@pytest.mark.parametrize("flavour", ["bookworm", "trixie"])
def test_build_with_wifi(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch, flavour: str) -> None:
    monkeypatch.setenv("PIIMG_TEST_WIFI", "zebra's \"quux\" $42")
    (project / "piimg.yaml").write_text(
        SPEC.replace("keymap: de\n", "keymap: de\n  wifi_country: GB\n")
        + "wifi: {ssid: \"Bob's net\", psk_env: PIIMG_TEST_WIFI}\n"
    )
    base = bases[(flavour, 8)]
    r = piimg("build", "--image", str(base.path), "--node", "k8s-worker-1")
    assert r.exit_code == 0, r
    files = _check_common(_img(piimg, project, "k8s-worker-1"), base, tmp_path, "k8s-worker-1")
    assert not any(b"quux" in data for data in files.values()), "only the derived WPA key goes on the card"
    if flavour == "bookworm":
        script = tmp_path / "firstrun.sh"
        script.write_bytes(files["firstrun.sh"])
        run_ok(["sh", "-n", str(script)])
        if have("shellcheck"):
            run_ok(["shellcheck", "-s", "sh", str(script)])
        assert "set_wlan" in script.read_text()
    else:
        wlan = yaml.safe_load(files["network-config"])["network"]["wifis"]["wlan0"]
        assert list(wlan["access-points"]) == ["Bob's net"]


def test_bad_source_date_epoch_fails_before_any_download(piimg: Any, project: Path, _release: Published,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """SOURCE_DATE_EPOCH is read first: a bad one costs no base image or k3s download."""
    data = b"base image bytes (never fetched)"
    srv = _release.rel.srv  # the session's server: k3s and the charts are on it too
    srv.add("/raspios.img", data)
    (project / "piimg.yaml").write_text(SPEC + f"  url: {srv.url('/raspios.img')}\n  sha256: {hashlib.sha256(data).hexdigest()}\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    before = len(srv.requests)
    r = piimg("build")
    assert r.exit_code != 0 and r.stderr == "error: SOURCE_DATE_EPOCH: 'yesterday' is not a number of seconds since 1970\n", r
    assert srv.requests[before:] == []
    assert not (project / "build").exists()


def test_bad_wifi_passphrase_fails_before_any_image(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMG_TEST_WIFI", "short")
    # the rest is valid (wifi_country set), so only the passphrase can fail
    (project / "piimg.yaml").write_text(
        SPEC.replace("keymap: de\n", "keymap: de\n  wifi_country: GB\n") + "wifi: {ssid: lab, psk_env: PIIMG_TEST_WIFI}\n"
    )
    r = piimg("build", "--image", str(bases[("bookworm", 8)].path))
    assert r.exit_code != 0 and "wifi.psk_env" in r.stderr and "short" not in r.stderr
    assert not (project / "build").exists() or not [p for p in (project / "build").iterdir() if p.suffix in (".img", ".overlay")]


def test_build_with_airgap_ships_the_images(piimg: Any, project: Path, bases: dict[tuple[str, int], GeneratedImage],
                                            tmp_path: Path, _release: Published) -> None:
    """cluster.airgap: the release's airgap tarball is on the card, verified, and first boot needs no registry."""
    base = bases[("bookworm", 8)]
    (project / "piimg.yaml").write_text(SPEC_BASE + _release.cluster_yaml() + "  airgap: true\nimage:\n  arch: arm64\n")
    r = piimg("build", "--image", str(base.path), "--node", "k8s-worker-1")
    assert r.exit_code == 0, r
    files = _check_common(_img(piimg, project, "k8s-worker-1"), base, tmp_path, "k8s-worker-1")
    k3s = json.loads(files["piimg/node.json"])["k3s"]
    name = "k3s-airgap-images-arm64.tar.zst"
    assert k3s["airgap_images"] == name and k3s["registry_host"] is None
    data = files[f"piimg/k3s/images/{name}"]
    assert data == _release.rel.files[_release.rel.url(name)]
    assert hashlib.sha256(data).hexdigest() == k3s["airgap_sha256"]
