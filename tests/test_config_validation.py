"""Table-driven: every broken spec exits non-zero with one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import piimg
from piimg.errors import ConfigError
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model

BASE = yaml.safe_load((Path(piimg.__file__).parent / "default_spec.yaml").read_text())


def _with(path: str, value: object) -> dict:
    """The default spec with one value replaced (``a.b[0].c`` paths); None deletes."""
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    node = doc
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


_DELETE = object()
AGENT = {"hostname": "k8s-agent-1", "role": "agent", "address": "10.0.2.11"}

# (case id, document or raw text, key the message must name, words it must contain)
CASES: list[tuple[str, object, str, str]] = [
    ("node outside subnet", _with("nodes[0].address", "10.0.5.3"), "nodes[0].address", "outside network.subnet"),
    ("node is gateway", _with("nodes[0].address", "10.0.2.1"), "nodes[0].address", "gateway"),
    ("node in dhcp pool", _with("nodes[0].address", "10.0.3.7"), "nodes[0].address", "dhcp_pool"),
    ("node not an ip", _with("nodes[0].address", "ten"), "nodes[0].address", "not an IPv4 address"),
    ("gateway outside subnet", _with("network.gateway", "10.0.9.1"), "network.gateway", "not a host address"),
    ("pool outside subnet", _with("network.dhcp_pool", "10.0.3.1-10.0.9.9"), "network.dhcp_pool", "not inside"),
    ("pool backwards", _with("network.dhcp_pool", "10.0.3.9-10.0.3.1"), "network.dhcp_pool", "ends before"),
    ("pool contains gateway", _with("network.dhcp_pool", "10.0.2.1-10.0.2.9"), "network.dhcp_pool", "contains network.gateway"),
    ("subnet host bits", _with("network.subnet", "10.0.2.1/23"), "network.subnet", "not an IPv4 network"),
    ("lb pool inside subnet", _with("cluster.pools[0].addresses", ["10.0.2.128/25"]), "cluster.pools[0].addresses[0]", "overlaps network.subnet"),
    (
        "lb pools overlap",
        _with("cluster.pools", [{"name": "a", "addresses": ["10.0.4.0/24"]}, {"name": "b", "addresses": ["10.0.4.128-10.0.4.200"]}]),
        "cluster.pools[1].addresses[0]",
        "overlaps cluster.pools[0]",
    ),
    ("lb pool bad name", _with("cluster.pools[0].name", "Default_Pool"), "cluster.pools[0].name", "not a valid Kubernetes name"),
    ("public asn", _with("cluster.bgp.asn", 3320), "cluster.bgp.asn", "public AS number"),
    ("asn out of range", _with("router.asn", 4294967295), "router.asn", "not a valid AS number"),
    ("asn not a number", _with("router.asn", "sixty"), "router.asn", "whole number"),
    ("same asn", _with("cluster.bgp.asn", 65530), "cluster.bgp.asn", "equals router.asn"),
    ("bad hostname", _with("nodes[0].hostname", "K8s_Master"), "nodes[0].hostname", "RFC 1123"),
    # MetalLB before v0.13 reads a ConfigMap (metallb@v0.16.1 release notes, 0.13.0)
    ("metallb configmap era", _with("cluster.metallb_version", "v0.12.1"), "cluster.metallb_version", "ConfigMap"),
    # no chart 0.14.0 in the chart repository (metallb/metallb gh-pages index.yaml)
    ("metallb without chart", _with("cluster.metallb_version", "v0.14.0"), "cluster.metallb_version", "no chart 0.14.0"),
    # k3s from pinned, verified files only (piimg/versions.py, fetch/artifacts.py): a channel
    # has no fixed files, an unpinned release needs the install script's digest from the user
    ("k3s channel", _with("cluster.k3s_version", "stable"), "cluster.k3s_version", "is a channel, not a release"),
    ("k3s install.sh unpinned", _with("cluster.k3s_version", "v1.30.0+k3s1"), "cluster.k3s_install_sha256",
     "needs its SHA-256"),
    ("metallb chart not pinned", _with("cluster.metallb_version", "v0.17.0"), "cluster.metallb_version",
     "pins the MetalLB chart by content"),
    # NGINX IC images are linux/arm64 and linux/amd64 only (nginx/kubernetes-ingress matrix-images-oss.json)
    ("32-bit image with nginx", _with("image.os", "raspios-lite-armhf"), "cluster.ingress", "image.os 'raspios-lite-armhf'"),
    (
        "duplicate hostname",
        _with("nodes", [BASE["nodes"][0], {**AGENT, "hostname": "k8s-master"}]),
        "nodes[1].hostname",
        "already used",
    ),
    ("duplicate address", _with("nodes", [BASE["nodes"][0], {**AGENT, "address": "10.0.2.10"}]), "nodes[1].address", "already used"),
    ("no server", _with("nodes", [{**AGENT}]), "nodes", "role: server"),
    ("first node is agent", _with("nodes", [AGENT, BASE["nodes"][0]]), "nodes[0].role", "initial server"),
    ("bad role", _with("nodes[0].role", "master"), "nodes[0].role", "not one of"),
    ("bad mac", _with("nodes[0].mac", "dc:a6:32:01:02"), "nodes[0].mac", "not a MAC address"),
    ("bad k3s version", _with("cluster.k3s_version", "1.36"), "cluster.k3s_version", "not a k3s release"),
    ("servicelb enabled", _with("cluster.disable", ["traefik"]), "cluster.disable", "servicelb"),
    ("traefik disabled but chosen", _with("cluster.ingress", "traefik"), "cluster.disable", "traefik"),
    ("unknown ingress", _with("cluster.ingress", "haproxy"), "cluster.ingress", "not one of"),
    ("gateway used by node", _with("nodes[0].address", "10.0.2.1"), "nodes[0].address", "router's own address"),
    ("bgp password env unset", _with("cluster.bgp.password_env", "PIIMG_TEST_UNSET_BGP"), "cluster.bgp.password_env", "not set"),
    ("unknown top key", {**BASE, "clusterr": {}}, "clusterr", "unknown key"),
    ("unknown nested key", _with("router.hots", "10.0.2.1"), "router.hots", "unknown key"),
    ("wrong type mapping", _with("network", ["10.0.2.0/23"]), "network", "expected a mapping"),
    ("wrong type list", _with("router.ports", "ether6"), "router.ports", "expected a list"),
    ("wrong type bool", _with("router.tls", "yes please"), "router.tls", "true or false"),
    ("bad init format", _with("image.init_format", "preseed"), "image.init_format", "not one of"),
    ("http without sha", _with("image.url", "http://example.invalid/x.img.xz"), "image.sha256", "http://"),
    ("bad sha", {**_with("image.url", "https://example.invalid/x.img.xz"), "image": {"url": "x.img", "sha256": "abc"}}, "image.sha256", "not a SHA-256"),
    ("bad password hash", _with("access.password_hash", "hunter2"), "access.password_hash", "crypt(3)"),
    ("bad ssh key", _with("access.ssh_authorized_keys", ["not a key"]), "access.ssh_authorized_keys[0]", "not an OpenSSH public key"),
    ("bad port", _with("router.port", 70000), "router.port", "not a TCP port"),
    ("bad router version", _with("router.version", "5"), "router.version", "auto, 6, 7"),
    ("wifi without psk_env", _with("wifi", {"ssid": "lab"}), "wifi.psk_env", "required"),
    ("missing address", _with("nodes", [{"hostname": "a"}]), "nodes[0].address", "required"),
    ("empty nodes", _with("nodes", []), "nodes", "at least one node"),
    ("router host with port", _with("router.host", "10.0.2.1:8728"), "router.host", "not an IPv4 address or host name"),
    ("router host url", _with("router.host", "https://10.0.2.1"), "router.host", "not an IPv4 address or host name"),
    ("image url scheme", _with("image.url", "ftp://example.invalid/x.img.xz"), "image.url", "only http://, https://"),
    ("image url upper-case scheme", _with("image.url", "HTTP://example.invalid/x.img.xz"), "image.url", "only http://"),
    ("catalog scheme", _with("image.catalog", "s3://bucket/os_list.json"), "image.catalog", "only http://"),
    ("node is broadcast", _with("nodes[0].address", "10.0.3.255"), "nodes[0].address", "network or broadcast address"),
    ("dhcp pool has broadcast", _with("network.dhcp_pool", "10.0.3.1-10.0.3.255"), "network.dhcp_pool", "broadcast address"),
    ("unknown time zone", _with("locale.timezone", "Europe/Berln"), "locale.timezone", "not a known time zone"),
    ("top level is a list", ["image", "nodes"], "piimg.yaml", "expected a mapping of sections"),
    # k3s flags: docs.k3s.io "Configuration File" (flag names without --, repeatable flags as lists)
    ("extra arg without dashes", _with("cluster.extra_server_args", ["token=abc"]), "cluster.extra_server_args[0]", "not a k3s server flag"),
    ("extra arg empty flag", _with("cluster.extra_server_args", ["--=abc"]), "cluster.extra_server_args[0]", "not a k3s flag"),
    ("extra arg sets token", _with("cluster.extra_server_args", ["--token=abc"]), "cluster.extra_server_args[0]", "sets token, which piimg manages"),
    ("extra arg sets server", _with("cluster.extra_server_args", ["--tls-san=a", "--server=https://x:6443"]), "cluster.extra_server_args[1]", "sets server"),
    ("extra arg sets node-ip", _with("cluster.extra_server_args", ["--node-ip=1.2.3.4"]), "cluster.extra_server_args[0]", "sets node-ip"),
    ("extra arg sets node-name", _with("cluster.extra_server_args", ["--node-name=x"]), "cluster.extra_server_args[0]", "sets node-name"),
    ("extra arg cluster-init", _with("cluster.extra_server_args", ["--cluster-init"]), "cluster.extra_server_args[0]", "sets cluster-init"),
    ("extra arg disables an addon of ours", _with("cluster.extra_server_args", ["--disable=metrics-server,piimg-metallb"]), "cluster.extra_server_args[0]", "disables piimg-metallb, which piimg deploys"),
    ("extra arg disables chosen traefik", {**_with("cluster.ingress", "traefik"), "cluster": {"ingress": "traefik", "disable": ["servicelb"], "extra_server_args": ["--disable=traefik"]}}, "cluster.extra_server_args[0]", "cluster.ingress is traefik"),
    ("extra list flag without value", _with("cluster.extra_server_args", ["--tls-san"]), "cluster.extra_server_args[0]", "--tls-san needs a value"),
    ("extra disable with empty item", _with("cluster.extra_server_args", ["--disable=metrics-server,"]), "cluster.extra_server_args[0]", "--disable needs a value"),
    ("wifi without country", {**BASE, "wifi": {"ssid": "lab", "psk_env": "PIIMG_TEST_UNSET_WIFI"}}, "locale.wifi_country", "required when wifi is set"),
    ("router ca file missing", _with("router.ca_file", "missing-ca.pem"), "router.ca_file", "no such file"),
    ("router api address in an lb pool", _with("router.host", "10.0.4.7"), "router.host", "inside cluster.pools[0]"),
    ("node address in an lb pool", {**_with("network.subnet", "10.0.0.0/16"), "network": {**BASE["network"], "subnet": "10.0.0.0/16", "dhcp_pool": "10.0.3.1-10.0.3.254"}, "cluster": {**BASE["cluster"], "pools": [{"name": "web", "addresses": ["10.0.2.8-10.0.2.12"]}]}}, "nodes[0].address", "inside cluster.pools[0]"),
    ("router api address is a node", _with("router.host", "10.0.2.10"), "router.host", "is nodes[0].address"),
    ("hostname with a trailing newline", _with("nodes[0].hostname", "k8s-master\n"), "nodes[0].hostname", "not a valid hostname"),
    ("ssh key that is no key", _with("access.ssh_authorized_keys", ["ssh-rsa notakey"]), "access.ssh_authorized_keys[0]", "not an OpenSSH public key"),
    ("wifi passphrase env unset", {**_with("locale.wifi_country", "GB"), "wifi": {"ssid": "lab", "psk_env": "PIIMG_TEST_UNSET_WIFI"}}, "wifi.psk_env", "not set"),
]

SYNTAX_CASES = [
    ("tab indentation", "network:\n\tsubnet: 10.0.2.0/23\n", ":2:"),
    ("unclosed bracket", "network:\n  dns: [8.8.8.8, 8.8.4.4\nnodes: []\n", ":3:"),
    ("bad mapping", "cluster:\n  name: a\n   k3s: b\n", ":3:"),
]


@pytest.mark.parametrize(("doc", "key", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_spec_names_key(project: Path, piimg, doc: object, key: str, words: str) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
    r = piimg("validate")
    assert r.exit_code != 0, r
    assert "Traceback" not in r.output
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"error: {key}: "), r.stderr
    assert words in first, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(("text", "where"), [c[1:] for c in SYNTAX_CASES], ids=[c[0] for c in SYNTAX_CASES])
def test_yaml_syntax_error_names_file_and_line(project: Path, piimg, text: str, where: str) -> None:
    (project / "piimg.yaml").write_text(text)
    r = piimg("validate")
    assert r.exit_code == 1
    line = r.stderr.splitlines()[0]
    assert "piimg.yaml" + where in line and "YAML syntax error" in line, r.stderr
    assert "Traceback" not in r.output


def test_did_you_mean(project: Path, piimg) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("router.hots", "x")))
    r = piimg("validate")
    assert "hint: did you mean 'host'?" in r.stderr


def test_every_case_is_distinct() -> None:
    # guards the table against copy-paste: at least 25 different rules
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


def test_missing_spec_file(project: Path, piimg) -> None:
    r = piimg("validate")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: piimg.yaml: no such file")
    assert "piimg init" in r.stderr


def test_no_login_possible(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nobody could log in"):
        spec_load.parse({}, home=tmp_path)


# A real public key: `ssh-keygen -t rsa -b 2048 -C me@laptop` (OpenSSH 9.2p1); the private half was discarded.
RSA_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCIzrwWiCFTmdaxriSQzjO1VAkl+L2WAAVxrEmIi9/jd/ZdGcAb2LsdrQvXU9TNWHgAdiWRmPRz"
    "jjM1Lq/MHRBX7/OxFPrjbStZkdcT9QxYcSMUtbREiGz50LOW9fAS8M7FsMNEmNvKhnxlxteq/zX3YLU1nezFnzaE2Yc25Xqh+Na5mw0JYRGNZUVG"
    "znLGH7mnnZYUpj8Mexm1XxRRPGJ1n80ABGZ+B/TEabuyEPlUd+zFnykYLEpCVHBlIJb0kx9LywdOTmEszQYS5RXxbey4mMBgJhRT0J8yL14bGLLn"
    "IfKet+LmGTLaGtdMH/MLfcWU5ATKBAAD65ndpEiCHtQt me@laptop"
)


def test_ssh_keys_default_from_home(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa.pub").write_text(RSA_KEY + "\n")
    spec = spec_load.parse({}, home=tmp_path)
    assert spec.access.ssh_authorized_keys == (RSA_KEY,)


def test_bgp_password_env_set(home: Path) -> None:
    doc = _with("cluster.bgp.password_env", "BGP_KEY")
    spec = spec_load.parse(doc, env={"BGP_KEY": "s3cret"})
    assert spec.cluster.bgp.password_env == "BGP_KEY"


@pytest.mark.parametrize(
    ("key", "words"),
    [
        # restraml docs/7.*/inspect.json: tcp-md5-key "string value, max length 80"
        ("k" * 81, "has 81 characters; RouterOS takes at most 80"),
        ("schlüssel", "printable ASCII"),  # librouteros encodes API words as ASCII
        ("tab\tkey", "printable ASCII"),
    ],
)
def test_bgp_key_checked_at_load(home: Path, key: str, words: str) -> None:
    doc = _with("cluster.bgp.password_env", "BGP_KEY")
    with pytest.raises(ConfigError) as info:
        spec_load.parse(doc, env={"BGP_KEY": key})
    assert info.value.key == "cluster.bgp.password_env"
    assert words in str(info.value) and key not in str(info.value)
    assert spec_load.parse(doc, env={"BGP_KEY": "k" * 80}).env_secrets.bgp_password == "k" * 80


def test_multi_node_and_ranges(home: Path) -> None:
    doc = _with("nodes", [BASE["nodes"][0], AGENT, {**AGENT, "hostname": "k8s-agent-2", "address": "10.0.2.12", "mac": "dc-a6-32-01-02-03"}])
    doc["cluster"]["pools"] = [{"name": "web", "addresses": ["10.0.4.10-10.0.4.20", "10.0.6.0/24"]}]
    spec = spec_load.parse(doc)
    assert [n.role for n in spec.nodes] == [spec_model.Role.SERVER, spec_model.Role.AGENT, spec_model.Role.AGENT]
    assert spec.nodes[2].mac == "DC:A6:32:01:02:03"
    assert spec.cluster.pools[0].addresses[0].size == 11


def test_debug_shows_traceback(project: Path, piimg) -> None:
    r = piimg("--debug", "validate")
    assert r.exit_code == 1
    assert "Traceback" in r.stderr and "error: piimg.yaml: no such file" in r.stderr


def test_all_digit_mac_is_not_a_base60_number(home: Path) -> None:
    # YAML 1.1 reads 12:34:56:12:34:56 unquoted as the integer 9783981296
    text = (Path(piimg.__file__).parent / "default_spec.yaml").read_text()
    text = text.replace("mac: null", "mac: 12:34:56:12:34:56", 1)
    assert "12:34:56:12:34:56" in text
    spec = spec_load.loads(text)
    assert spec.nodes[0].mac == "12:34:56:12:34:56"
    assert spec_load.loads("router:\n  port: 0x2219\n").router.port == 8729


def test_wifi_passphrase_checked_at_load(home: Path) -> None:
    doc = _with("wifi", {"ssid": "lab", "psk_env": "WIFI_PSK"})
    doc["locale"]["wifi_country"] = "GB"
    with pytest.raises(ConfigError, match=r"^wifi.psk_env: the passphrase in \$WIFI_PSK must be 8 to 63"):
        spec_load.parse(doc, env={"WIFI_PSK": "short"})
    assert spec_load.parse(doc, env={"WIFI_PSK": "long enough"}).wifi is not None
    doc["locale"]["wifi_country"] = None
    with pytest.raises(ConfigError, match=r"^locale.wifi_country: required when wifi is set"):
        spec_load.parse(doc, env={"WIFI_PSK": "long enough"})


def test_password_hash_with_rounds(home: Path) -> None:
    # mkpasswd -m sha-512 -R 10000 / crypt(3) with an explicit cost
    hashed = ("$6$rounds=10000$saltsalt$ZTNXXHFyLAi.0f6IV4I1ziqTD4etecjPY.wSj7UV9ctRg0t3APls5/"
              "5wgDKKPAKtz42rw3DeefzFnFyha0DdM.")
    assert spec_load.parse(_with("access.password_hash", hashed)).access.password_hash == hashed


def test_router_ca_file_must_exist(project: Path, piimg) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("router.ca_file", "router-ca.pem")))
    r = piimg("validate")
    assert r.exit_code == 1 and r.stderr.startswith("error: router.ca_file: router-ca.pem: no such file")
    (project / "router-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert piimg("validate").exit_code == 0


def test_validate_warns_about_even_server_count(project: Path, piimg) -> None:
    nodes = [BASE["nodes"][0], {**AGENT, "role": "server"}]
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("nodes", nodes)))
    r = piimg("validate")
    assert r.exit_code == 0
    assert "warning: nodes: 2 servers" in r.stderr and "use 1 or 3" in r.stderr


def test_validate_warns_about_retired_ingress_nginx(project: Path, piimg) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("cluster.ingress", "ingress-nginx")))
    r = piimg("validate")
    assert r.exit_code == 0 and "warning:" in r.stderr and "retired" in r.stderr
    # kubernetes/ingress-nginx@helm-chart-4.15.1:README.md: v1.15.1 supports Kubernetes 1.35 .. 1.31
    assert "tested up to Kubernetes 1.35" in r.stderr


def test_validate_warns_that_pi_kernels_cannot_sign_bgp(project: Path, piimg, monkeypatch: pytest.MonkeyPatch) -> None:
    """raspberrypi/linux bcm2711/bcm2712 defconfigs lack CONFIG_TCP_MD5SIG (metallb/metallb#1125)."""
    monkeypatch.setenv("PIIMG_TEST_BGP_KEY", "s3cret-md5-key")
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("cluster.bgp.password_env", "PIIMG_TEST_BGP_KEY")))
    r = piimg("validate")
    assert r.exit_code == 0
    assert "warning: cluster.bgp.password_env:" in r.stderr and "CONFIG_TCP_MD5SIG" in r.stderr
    assert "s3cret-md5-key" not in r.stdout + r.stderr
    (project / "piimg.yaml").write_text(yaml.safe_dump(BASE))
    assert "CONFIG_TCP_MD5SIG" not in piimg("validate").stderr


def test_validate_names_the_datastore(project: Path, piimg) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(BASE))
    assert "datastore: SQLite on the one server" in piimg("validate").stdout
    nodes = [BASE["nodes"][0], {**AGENT, "role": "server"}, {**AGENT, "hostname": "k8s-m3", "address": "10.0.2.13", "role": "server"}]
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("nodes", nodes)))
    assert "datastore: embedded etcd across 3 servers" in piimg("validate").stdout


def test_secrets_from_env_are_read_once_and_never_printed(project: Path, piimg, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _with("cluster.bgp.password_env", "PIIMG_TEST_BGP_KEY")
    monkeypatch.setenv("PIIMG_TEST_BGP_KEY", "s3cret-md5-key")
    spec = spec_load.parse(doc)
    assert spec.env_secrets.bgp_password == "s3cret-md5-key"
    assert "s3cret" not in repr(spec) and "s3cret" not in repr(spec.env_secrets)
    (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
    r = piimg("validate", "--json")
    assert r.exit_code == 0, r
    assert "s3cret" not in r.output and "PIIMG_TEST_BGP_KEY" in r.stdout
    monkeypatch.setenv("PIIMG_TEST_BGP_KEY", "changed-after-load")
    assert spec.env_secrets.bgp_password == "s3cret-md5-key"  # the renderers see what was checked


def test_router_setup_repeats_the_tcp_md5_caveat(project: Path, piimg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The router side would require a key the nodes may not be able to send: router-setup says so too."""
    monkeypatch.setenv("PIIMG_TEST_BGP_KEY", "s3cret-md5-key")
    monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", "router-pw")
    doc = _with("cluster.bgp.password_env", "PIIMG_TEST_BGP_KEY")
    doc["router"]["version"] = "7.20"  # --export works offline with a known version
    (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
    r = piimg("router-setup", "--export", str(project / "out.rsc"))
    assert r.exit_code == 0, r.output
    assert "warning: cluster.bgp.password_env:" in r.stderr and "CONFIG_TCP_MD5SIG" in r.stderr
    assert "s3cret-md5-key" not in r.output
