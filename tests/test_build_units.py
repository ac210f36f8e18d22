"""Unit tests of the build's pieces: sparse copies, last.json, payload and templates."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from piimg.build import lastbuild, payload
from piimg.errors import LastBuildError, PiimgError
from piimg.firstboot.nodeconf import NodeConfig
from piimg.image import sparse
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from piimg.spec.model import InitFormat
from piimg.spec.secrets import Secrets
from tests.conftest import TEST_KEY

MiB = 1 << 20
SECRETS = Secrets(k3s_token="t0ken" * 8)


def _spec(env: dict[str, str] | None = None, **extra: object) -> spec_model.Spec:
    raw: dict[str, object] = {
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "nodes": [
            {"hostname": "m1", "role": "server", "address": "10.0.2.10"},
            {"hostname": "w1", "role": "agent", "address": "10.0.2.11"},
        ],
    }
    raw.update(extra)
    return spec_load.parse(raw, env=env or {}, home=Path("/nonexistent-home"))


# ------------------------------------------------------------------ sparse


def _holey(path: Path) -> bytes:
    with open(path, "wb") as fh:
        fh.truncate(64 * MiB)
        fh.seek(MiB)
        fh.write(b"A" * 5000)
        fh.seek(40 * MiB + 123)
        fh.write(os.urandom(3 * MiB))
    return path.read_bytes()


def test_sparse_copy_is_identical_and_keeps_holes(tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    data = _holey(src)
    method = sparse.sparse_copy(src, tmp_path / "dst.img")
    dst = tmp_path / "dst.img"
    assert dst.read_bytes() == data
    assert dst.stat().st_size == 64 * MiB
    if method != "reflink":
        assert dst.stat().st_blocks * 512 < 16 * MiB, method  # holes stayed holes


def test_sparse_copy_over_an_existing_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"x" * 1000)
    dst.write_bytes(b"y" * 5000)
    sparse.sparse_copy(src, dst)
    assert dst.read_bytes() == b"x" * 1000


def test_fallback_without_copy_file_range_or_reflink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.img"
    data = _holey(src)
    monkeypatch.setattr(sparse, "_reflink", lambda s, d: False)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    assert sparse.sparse_copy(src, tmp_path / "dst.img") == "sparse read/write"
    assert (tmp_path / "dst.img").read_bytes() == data


def test_data_ranges_cover_the_data(tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    _holey(src)
    with open(src, "rb") as fh:
        ranges = list(sparse.data_ranges(fh.fileno(), 64 * MiB))
    assert ranges
    covered = lambda off: any(o <= off < o + n for o, n in ranges)  # noqa: E731
    assert covered(MiB) and covered(MiB + 4999) and covered(40 * MiB + 123) and covered(43 * MiB + 122)


def test_sparse_copy_missing_source_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(PiimgError, match="cannot copy"):
        sparse.sparse_copy(tmp_path / "nope", tmp_path / "dst")


# --------------------------------------------------------------- last.json


def test_last_build_round_trip(tmp_path: Path) -> None:
    rec = lastbuild.LastBuild(
        built_at="2026-11-27T03:40:00Z",
        spec="/p/piimg.yaml",
        base=lastbuild.BaseRef("/c/base.img", "ab" * 32, "base", "systemd"),
        nodes={"m1": lastbuild.NodeImage("/p/build/m1.img", 123, "server", "10.0.2.10", "systemd")},
    )
    path = tmp_path / "build" / "last.json"
    lastbuild.save(path, rec)
    assert lastbuild.load(path) == rec
    data = json.loads(path.read_text())
    assert data["schema"] == 3 and data["nodes"]["m1"]["image"] == "/p/build/m1.img"
    assert data["nodes"]["m1"]["kind"] == "image"


def test_last_build_schema_1_is_still_read(tmp_path: Path) -> None:
    """A record written before overlays existed: full images, no kind."""
    path = tmp_path / "last.json"
    path.write_text(json.dumps({
        "schema": 1, "built_at": "2026-11-27T03:40:00Z", "spec": "/p/piimg.yaml",
        "base": {"path": "/c/base.img", "sha256": "ab" * 32, "name": "base", "init_format": "systemd"},
        "nodes": {"m1": {"image": "/p/build/m1.img", "size": 123, "role": "server", "address": "10.0.2.10",
                         "init_format": "systemd"}},
    }))
    node = lastbuild.load(path).nodes["m1"]
    assert node.kind == "image" and not node.is_overlay and node.image == "/p/build/m1.img"


def test_last_build_schema_2_is_still_read(tmp_path: Path) -> None:
    """A record written before shared layers: overlays straight on the base, no ``shared``."""
    path = tmp_path / "last.json"
    path.write_text(json.dumps({
        "schema": 2, "built_at": "2026-11-27T03:40:00Z", "spec": "/p/piimg.yaml",
        "base": {"path": "/c/base.img", "sha256": "ab" * 32, "name": "base", "init_format": "systemd"},
        "nodes": {"m1": {"image": "/p/build/m1.overlay", "kind": "overlay", "size": 123, "role": "server",
                         "address": "10.0.2.10", "init_format": "systemd", "base_sha256": "ab" * 32,
                         "built_at": "2026-11-27T03:40:00Z"}},
    }))
    node = lastbuild.load(path).nodes["m1"]
    assert node.is_overlay and node.shared == "" and node.image == "/p/build/m1.overlay"


@pytest.mark.parametrize("text", ["{", "[]", '{"schema": 4}', '{"schema": 1, "nodes": {}}',
                                  '{"schema": 2, "built_at": "x", "spec": "", "base": {"path": "", "sha256": "", "name": "",'
                                  ' "init_format": ""}, "nodes": {"a": {"image": "/a", "size": 1, "role": "agent",'
                                  ' "address": "1", "init_format": "systemd", "kind": "qcow2"}}}'])
def test_last_build_damaged(tmp_path: Path, text: str) -> None:
    path = tmp_path / "last.json"
    path.write_text(text)
    with pytest.raises(PiimgError, match=r"last\.json"):
        lastbuild.load(path)


def _last(nodes: dict[str, str]) -> lastbuild.LastBuild:
    base = lastbuild.BaseRef(path="/b.img", sha256="0" * 64, name="b", init_format="systemd")
    images = {n: lastbuild.NodeImage(image=p, size=1, role="server", address="10.0.2.10", init_format="systemd") for n, p in nodes.items()}
    return lastbuild.LastBuild(built_at="2026-11-27T03:40:00Z", spec="/p/piimg.yaml", base=base, nodes=images)


def test_last_build_image_for(tmp_path: Path) -> None:
    one = _last({"m1": "/p/build/m1.img"})
    assert one.image_for(None) == "/p/build/m1.img" == one.image_for("m1")
    two = _last({"m1": "/p/build/m1.img", "w1": "/p/build/w1.img"})
    assert two.image_for("w1") == "/p/build/w1.img"
    with pytest.raises(LastBuildError, match=r"several node images were built \(m1, w1\); choose one with --node"):
        two.image_for(None)
    with pytest.raises(LastBuildError, match=r"--node x1: not in the last build \(built: m1, w1\)"):
        two.image_for("x1")
    with pytest.raises(LastBuildError, match="lists no node images"):
        _last({}).image_for(None)
    # what flash reads is what build wrote, through the same reader
    path = tmp_path / "last.json"
    lastbuild.save(path, two)
    assert lastbuild.load(path).image_for("m1") == "/p/build/m1.img"
    path.write_text(path.read_text().replace('"schema": 3', '"schema": 4'))
    with pytest.raises(LastBuildError, match="unsupported schema 4"):
        lastbuild.load(path)


def test_last_build_missing(tmp_path: Path) -> None:
    with pytest.raises(PiimgError, match="nothing built yet"):
        lastbuild.load(tmp_path / "last.json")


# ----------------------------------------------------------------- payload


def test_payload_node_json_matches_the_contract() -> None:
    spec = _spec()
    edits = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.SYSTEMD)
    cfg = NodeConfig.from_json(edits.files["piimg/node.json"].decode())
    assert cfg.hostname == "w1" and cfg.role == "agent" and not cfg.initial_server
    assert cfg.address == "10.0.2.11" and cfg.prefixlen == 23 and cfg.gateway == "10.0.2.1"
    assert cfg.secrets["k3s_token"] == SECRETS.k3s_token
    assert cfg.k3s.server_url and "10.0.2.10" in cfg.k3s.server_url
    assert cfg.manifests == [] and cfg.ingress is None
    assert cfg.init_format == "systemd"
    assert not any(p.startswith("piimg/manifests/") for p in edits.files)
    assert all(p.endswith(".py") for p in edits.files if p.startswith("piimg/firstboot/"))
    assert "piimg/firstboot/nodeconf.py" in edits.files


def test_payload_initial_server_is_the_cluster_init() -> None:
    spec = _spec()
    edits = payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.CLOUDINIT)
    cfg = NodeConfig.from_json(edits.files["piimg/node.json"].decode())
    assert cfg.initial_server and cfg.k3s.server_url is None
    for name in cfg.manifests:
        assert f"piimg/manifests/{name}" in edits.files


def test_payload_first_boot_resolves_the_builders_registry_host() -> None:
    """The host first boot waits for in DNS is versions.K3S_REGISTRY_HOST, written by the builder
    (without cluster.airgap: the images are pulled); nodeconf has no copy of its own."""
    from piimg.versions import K3S_REGISTRY_HOST

    spec = _spec()
    edits = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.SYSTEMD)
    written = json.loads(edits.files["piimg/node.json"])
    assert written["k3s"]["registry_host"] == K3S_REGISTRY_HOST


def test_payload_first_boot_waits_for_metallb_where_the_manifests_install_it() -> None:
    spec = _spec()
    edits = payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD)
    cfg = NodeConfig.from_json(edits.files["piimg/node.json"].decode())
    charts = [doc for path, data in edits.files.items() if path.startswith("piimg/manifests/")
              for doc in yaml.safe_load_all(data) if doc and doc["kind"] == "HelmChart"]
    (metallb,) = [c for c in charts if c["metadata"]["name"] == "metallb"]
    assert cfg.metallb_namespace == metallb["spec"]["targetNamespace"]


def test_payload_carries_the_manifests_and_bgp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from piimg.manifests import render_addons, render_k3s_config

    monkeypatch.setenv("PIIMG_TEST_BGP", "s3cret-md5")
    spec = _spec(env={"PIIMG_TEST_BGP": "s3cret-md5"}, cluster={"bgp": {"password_env": "PIIMG_TEST_BGP"}})
    edits = payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD)
    cfg = NodeConfig.from_json(edits.files["piimg/node.json"].decode())
    assert cfg.secrets == {"k3s_token": SECRETS.k3s_token, "bgp_password": "s3cret-md5"}
    assert cfg.k3s.config_yaml == render_k3s_config(spec, spec.node("m1"), SECRETS)
    addons = render_addons(spec)
    assert sorted(cfg.manifests) == sorted(addons)
    for name, text in addons.items():
        assert edits.files[f"piimg/manifests/{name}"] == text.encode()
    assert cfg.ingress is not None


def test_systemd_edits() -> None:
    spec = _spec()
    edits = payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD)
    assert edits.files["ssh"] == b""
    assert "firstrun.sh" in edits.files and "user-data" not in edits.files
    line = edits.apply_cmdline(b"root=PARTUUID=x-02 rootwait systemd.run=/boot/old.sh\n").decode()
    assert line == (
        "root=PARTUUID=x-02 rootwait cgroup_memory=1 cgroup_enable=memory systemd.run=/boot/firmware/firstrun.sh "
        "systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n"
    )
    assert edits.apply_cmdline(line.encode()).decode() == line


def test_cloudinit_edits_parse_as_yaml() -> None:
    spec = _spec(access={"ssh_authorized_keys": [TEST_KEY], "password_hash": "$6$salt$" + "a" * 86},
                 network={"dns": ["1.1.1.1"]})
    edits = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.CLOUDINIT_RPI, instance_id="iid-1")
    user = yaml.safe_load(edits.files["user-data"])
    u = user["user"]
    assert "users" not in user and "keyboard" not in user
    assert u["lock_passwd"] is False and u["passwd"] == "$6$salt$" + "a" * 86 and user["ssh_pwauth"] is True
    assert yaml.safe_load(edits.files["meta-data"]) == {"instance-id": "iid-1", "local-hostname": "w1"}
    net = yaml.safe_load(edits.files["network-config"])["network"]
    (eth,) = net["ethernets"].values()
    assert ipaddress.ip_interface(eth["addresses"][0]) == ipaddress.ip_interface("10.0.2.11/23")
    assert eth["nameservers"]["addresses"] == ["1.1.1.1"]
    assert edits.instance_id == "iid-1"
    line = edits.apply_cmdline(b"root=x ds=nocloud;i=stale systemd.run=/boot/firstrun.sh\n").decode()
    assert line == "root=x cgroup_memory=1 cgroup_enable=memory ds=nocloud;i=iid-1\n"
    assert "firstrun.sh" in edits.remove and "piimg" in edits.remove


def test_instance_ids_differ_per_build() -> None:
    spec = _spec()
    a = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.CLOUDINIT)
    b = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.CLOUDINIT)
    assert a.instance_id != b.instance_id


def test_firstrun_quotes_hostile_values() -> None:
    spec = _spec()
    edits = payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD)
    text = edits.files["firstrun.sh"].decode()
    assert "NEW_HOSTNAME='m1'" in text and "PASSWORD_HASH=''" in text
    assert text.startswith("#!/bin/sh\n")
    assert "sed -i 's| systemd\\.run=" in text  # removes its own hook


def test_wifi_psk_matches_wpa_passphrase() -> None:
    # IEEE 802.11i-2004 annex H.4 test vector
    assert payload.wifi_psk("IEEE", "password") == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"


def test_wifi_in_both_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PIIMG_WIFI": "correct horse battery"}
    spec = _spec(env=env, wifi={"ssid": "Lab Net", "psk_env": "PIIMG_WIFI", "hidden": True}, locale={"wifi_country": "DE"})
    monkeypatch.setenv("PIIMG_WIFI", env["PIIMG_WIFI"])
    psk = payload.wifi_psk("Lab Net", "correct horse battery")
    ci = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.CLOUDINIT)
    sd = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.SYSTEMD)
    net = yaml.safe_load(ci.files["network-config"])["network"]
    wlan = net["wifis"]["wlan0"]
    assert wlan["regulatory-domain"] == "DE" and wlan["dhcp4"] is True
    assert wlan["access-points"] == {"Lab Net": {"password": psk, "hidden": True}}
    script = sd.files["firstrun.sh"].decode()
    assert f"set_wlan -h 'Lab Net' '{psk}' 'DE'" in script and f"psk={psk}" in script
    for edits in (ci, sd):
        assert not any(b"correct horse" in data for data in edits.files.values())
        # the regulatory domain on the kernel command line, as rpi-imager puts it; once, even on a rebuild
        line = edits.apply_cmdline(b"root=x rootwait cfg80211.ieee80211_regdom=GB\n").decode()
        assert line.split().count("cfg80211.ieee80211_regdom=DE") == 1 and "regdom=GB" not in line
    # the radio is switched on in both formats
    assert "rfkill unblock wifi" in script and "WirelessEnabled=true" in script
    radio = [c for c in yaml.safe_load(ci.files["user-data"])["runcmd"] if "rfkill unblock wifi" in " ".join(c)]
    assert radio and "nmcli radio wifi on" in radio[0][2]


def test_no_wifi_no_wifi_config() -> None:
    spec = _spec()
    ci = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.CLOUDINIT)
    assert "wifis" not in yaml.safe_load(ci.files["network-config"])["network"]
    sd = payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.SYSTEMD)
    assert b"set_wlan" not in sd.files["firstrun.sh"] and b"rfkill" not in sd.files["firstrun.sh"]
    assert b"rfkill" not in ci.files["user-data"]
    for edits in (ci, sd):
        assert not any(w.startswith("cfg80211.") for w in edits.cmdline_add)
        # a rebuild keeps a regdom someone put there by hand: piimg only owns what it sets
        assert "cfg80211.ieee80211_regdom=GB" in edits.apply_cmdline(b"root=x cfg80211.ieee80211_regdom=GB\n").decode()


def test_firstrun_with_a_password_hash() -> None:
    pw = "$6$salt$" + "b" * 86
    spec = _spec(access={"ssh_authorized_keys": [], "password_hash": pw}, locale={"timezone": "America/New_York"})
    text = payload.boot_edits(spec, spec.node("m1"), SECRETS, InitFormat.SYSTEMD).files["firstrun.sh"].decode()
    assert f"PASSWORD_HASH='{pw}'" in text
    assert "PasswordAuthentication yes" in text and "PasswordAuthentication no" not in text
    assert "enable_ssh -k" not in text and "authorized_keys" not in text


def test_cloudinit_runcmd_scripts_pass_shellcheck(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIIMG_WIFI", "correct horse battery")
    spec = _spec(env={"PIIMG_WIFI": "x" * 10}, wifi={"ssid": "lab", "psk_env": "PIIMG_WIFI"}, locale={"wifi_country": "GB"})
    user = yaml.safe_load(payload.boot_edits(spec, spec.node("w1"), SECRETS, InitFormat.CLOUDINIT).files["user-data"])
    scripts = [c[2] for c in user["runcmd"] if c[:2] == ["sh", "-c"]]
    assert len(scripts) == 4  # cancel-rename, keymap, radio, payload copy
    for i, script in enumerate(scripts):
        path = tmp_path / f"runcmd{i}.sh"
        path.write_text(script + "\n")
        subprocess.run(["sh", "-n", str(path)], check=True)
        if shutil.which("shellcheck"):
            proc = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout


# ------------------------------------------------------------------ identity (host keys, CA, node passwords)


def _with_identity(tmp_path: Path, spec: spec_model.Spec) -> Secrets:
    from piimg.identity.store import NodeName

    return SECRETS.with_identity(tmp_path / ".piimg", [NodeName(n.hostname, str(n.address)) for n in spec.nodes])


def test_cloudinit_user_data_carries_the_host_key(tmp_path: Path) -> None:
    spec = _spec()
    secrets = _with_identity(tmp_path, spec)
    assert secrets.identity is not None
    for name in ("m1", "w1"):
        edits = payload.boot_edits(spec, spec.node(name), secrets, InitFormat.CLOUDINIT_RPI, instance_id="iid")
        user = yaml.safe_load(edits.files["user-data"])
        key = secrets.identity.node(name).host_key
        # cloud-init's cc_ssh: with ssh_keys given it deletes the image's keys and writes these
        assert user["ssh_keys"] == {"ed25519_private": key.private_openssh.decode(), "ed25519_public": key.public_line}
        assert user["ssh_deletekeys"] is True
        text = edits.files["user-data"].decode()
        # first boot cuts these lines out of the boot partition's copy
        block = text[text.index("# piimg:ssh-host-key:begin"):text.index("# piimg:ssh-host-key:end")]
        assert "PRIVATE KEY" in block and "PRIVATE KEY" not in text.replace(block, "")
        cfg = NodeConfig.from_json(edits.files["piimg/node.json"].decode())
        assert cfg.secrets["node_password"] == secrets.identity.node(name).node_password
        assert cfg.ssh_host_public_key == key.public_line
        tls = sorted(k for k in cfg.secrets if k.startswith("k3s_tls/"))
        if name == "m1":
            assert tls == sorted("k3s_tls/" + f for f in secrets.identity.ca.server_files)
        else:
            assert tls == []
        # the root CA's key never goes on a card
        assert secrets.identity.ca.root_key_pem.decode() not in edits.files["piimg/node.json"].decode()


def test_firstrun_host_key_block_writes_the_key(tmp_path: Path) -> None:
    """Run firstrun.sh's host-key lines (paths moved under tmp_path) and read the key back with ssh-keygen."""
    import shutil
    import subprocess

    spec = _spec()
    secrets = _with_identity(tmp_path, spec)
    assert secrets.identity is not None
    text = payload.boot_edits(spec, spec.node("w1"), secrets, InitFormat.SYSTEMD).files["firstrun.sh"].decode()
    start = text.index("# The host key piimg generated")
    end = text.index("chmod 0644 /etc/ssh/ssh_host_ed25519_key.pub")
    block = text[start:end].replace("systemctl ", ": ").replace("/etc/", f"{tmp_path}/etc/")
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_rsa_key").write_text("old\n")
    subprocess.run(["sh", "-ec", block], check=True)
    key = tmp_path / "etc/ssh/ssh_host_ed25519_key"
    assert key.read_bytes() == secrets.identity.node("w1").host_key.private_openssh
    assert not (tmp_path / "etc/ssh/ssh_host_rsa_key").exists()
    assert os.stat(key).st_mode & 0o077 == 0
    if shutil.which("ssh-keygen"):
        out = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], check=True, capture_output=True, text=True).stdout
        assert out.split()[:2] == secrets.identity.node("w1").host_key.public_key.split()
    assert f"echo '{secrets.identity.node('w1').host_key.public_line}' >/etc/ssh/ssh_host_ed25519_key.pub" in text


def test_ha_servers_share_the_ca_and_every_node_joins_with_its_hash(tmp_path: Path) -> None:
    from tests.k3s_token import hash_ca, parse_token

    spec = _spec(nodes=[
        {"hostname": "s1", "role": "server", "address": "10.0.2.10"},
        {"hostname": "s2", "role": "server", "address": "10.0.2.11"},
        {"hostname": "s3", "role": "server", "address": "10.0.2.12"},
        {"hostname": "a1", "role": "agent", "address": "10.0.2.13"},
    ])
    secrets = _with_identity(tmp_path, spec)
    assert secrets.identity is not None
    bundle = secrets.identity.ca.server_files["server-ca.crt"]
    tls_by_node = {}
    for node in spec.nodes:
        cfg = NodeConfig.from_json(payload.boot_edits(spec, node, secrets, InitFormat.CLOUDINIT, instance_id="i")
                                   .files["piimg/node.json"].decode())
        tls_by_node[node.hostname] = {k: v for k, v in cfg.secrets.items() if k.startswith("k3s_tls/")}
        token = parse_token(yaml.safe_load(cfg.k3s.config_yaml)["token"])
        assert token.ca_hash == hash_ca(bundle) and token.password == SECRETS.k3s_token
    assert tls_by_node["s1"] == tls_by_node["s2"] == tls_by_node["s3"] and len(tls_by_node["s1"]) == 11
    assert tls_by_node["a1"] == {}
    # every node has its own host key and node password
    keys = {secrets.identity.node(n.hostname).host_key.public_key for n in spec.nodes}
    passwords = {secrets.identity.node(n.hostname).node_password for n in spec.nodes}
    assert len(keys) == len(passwords) == 4
