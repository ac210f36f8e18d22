"""Hostile and mangled specs (issue 16, items 1-3 and 9; issue 18's YAML syntax errors).

Every case: a non-zero exit with one error line naming the key or the file and line,
no traceback, and bounded work: the costly cases are refused before the work
(checked with tracemalloc's peak, never with a clock).
"""

from __future__ import annotations

import base64
import re
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg.errors import ConfigError
from piimg.spec import load as spec_load
from piimg.spec import sshkeys, yamlload
from tests.conftest import TEST_KEY, have
from tests.test_config_validation import BASE, _with


def refusal(piimg: Any, project: Path, text: str) -> list[str]:
    (project / "piimg.yaml").write_text(text)
    r = piimg("validate")
    assert r.exit_code == 1, r
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: ") and len(lines[0]) < 600, lines[0][:1000]
    return lines


# ------------------------------------------------------------------ 1: whole-value patterns

NEWLINE_CASES = [
    ("nodes[0].hostname", "k8s-master"),
    ("access.user", "pi"),
    ("cluster.k3s_version", "v1.36.3+k3s1"),
    ("locale.keymap", "us"),
    ("locale.wifi_country", "GB"),
    ("nodes[0].mac", "dc:a6:32:01:02:03"),
    ("locale.timezone", "Etc/UTC"),
    ("cluster.name", "homelab"),
    ("cluster.metallb_version", "v0.16.1"),
    ("cluster.pools[0].name", "default"),
    ("router.host", "10.0.2.1"),
    ("router.version", "7"),
    ("router.password_env", "PIIMG_ROUTER_PASSWORD"),
]


@pytest.mark.parametrize(("key", "good"), NEWLINE_CASES, ids=[c[0] for c in NEWLINE_CASES])
def test_a_trailing_newline_is_refused(home: Path, key: str, good: str) -> None:
    spec_load.parse(_with(key, good))  # the value itself is fine
    for bad in (good + "\n", good + "\nrm -rf /", "\n" + good):
        with pytest.raises(ConfigError) as info:
            spec_load.parse(_with(key, bad))
        assert info.value.message.startswith(f"{key}: "), info.value.message
        assert "\n" not in info.value.message


def test_image_sha256_with_a_newline_is_refused(home: Path) -> None:
    doc = _with("image.url", "https://example.invalid/pi.img.xz")
    doc["image"]["sha256"] = "a" * 64 + "\n"
    with pytest.raises(ConfigError, match=r"^image\.sha256: "):
        spec_load.parse(doc)


# ------------------------------------------------------------------ 2: SSH keys

KEY_TYPES = [("ed25519", []), ("ecdsa", ["-b", "256"]), ("ecdsa", ["-b", "384"]), ("ecdsa", ["-b", "521"]),
             ("rsa", ["-b", "2048"])]


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(public key line, fingerprint) made and printed by ssh-keygen itself."""
    if not have("ssh-keygen"):
        pytest.skip("ssh-keygen (openssh-client) is not installed")
    d = tmp_path_factory.mktemp("keys")
    out = []
    for i, (kind, extra) in enumerate(KEY_TYPES):
        f = d / f"k{i}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"user{i}@host", "-f", str(f)], check=True)
        fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{f}.pub"], capture_output=True, text=True,
                            check=True).stdout.split()[1]
        out.append(((d / f"k{i}.pub").read_text().strip(), fp))
    return out


def ssh_keygen_accepts(tmp_path: Path, line: str) -> bool:
    """The oracle: does OpenSSH's own parser take this authorized_keys line?"""
    f = tmp_path / "probe.pub"
    f.write_text(line + "\n")
    return subprocess.run(["ssh-keygen", "-l", "-f", str(f)], capture_output=True).returncode == 0


def test_real_keys_are_accepted_with_ssh_keygens_fingerprint(real_keys: list[tuple[str, str]], home: Path) -> None:
    for line, fingerprint in real_keys:
        key = sshkeys.parse(line)
        assert key.fingerprint == fingerprint and key.type == line.split()[0]
    spec = spec_load.parse(_with("access.ssh_authorized_keys", [k for k, _ in real_keys]))
    assert spec.access.ssh_authorized_keys == tuple(k for k, _ in real_keys)


def _mangled(ed: str, rsa: str) -> list[tuple[str, str, str]]:
    kind, data, comment = ed.split(" ", 2)
    blob = base64.b64decode(data)
    rtype, rdata = rsa.split()[:2]
    return [
        ("not a key", "ssh-rsa notakey", "not valid base64"),
        ("cut off", f"{kind} {data[:-12]} {comment}", ""),
        ("cut off at a base64 boundary", f"{kind} {base64.b64encode(blob[:-3]).decode()} {comment}", "cut off"),
        ("line wrapped in the middle", f"{kind} {data[:30]}\n{data[30:]} {comment}", ""),
        ("wrong type prefix", f"ssh-rsa {data} {comment}", "the key data is of type 'ssh-ed25519'"),
        ("stray bytes", f"{kind} {base64.b64encode(blob + b'xyz').decode()} {comment}", "stray bytes"),
        ("rsa cut off", f"{rtype} {rdata[:-40]}", ""),
        ("a path", "~/.ssh/id_ed25519.pub", "paste the key itself"),
        ("dsa", "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys are refused"),
    ]


def test_mangled_keys_are_refused_naming_the_item(real_keys: list[tuple[str, str]], tmp_path: Path, piimg: Any,
                                                  project: Path) -> None:
    ed, rsa = real_keys[0][0], real_keys[-1][0]
    for name, bad, words in _mangled(ed, rsa):
        if name not in ("a path", "dsa"):
            assert not ssh_keygen_accepts(tmp_path, bad), name  # genuinely broken, by OpenSSH's judgement
        doc = _with("access.ssh_authorized_keys", [ed, bad])
        lines = refusal(piimg, project, yaml.safe_dump(doc))
        assert lines[0].startswith("error: access.ssh_authorized_keys[1]: not an OpenSSH public key"), (name, lines)
        assert words in lines[0], (name, lines[0])


def test_a_broken_default_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(TEST_KEY[:-30] + "\n")
    with pytest.raises(ConfigError, match=r"id_ed25519\.pub: not an OpenSSH public key"):
        spec_load.parse({}, home=tmp_path)


# ------------------------------------------------------------------ 3: bounded loading

#: The "billion laughs" document (Wikipedia, "Billion laughs attack", YAML variant): 9 levels of 9 aliases.
LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def test_alias_bomb_is_refused_within_bounds(piimg: Any, project: Path) -> None:
    assert len(LAUGHS.encode()) < 400
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="aliases") as info:
            spec_load.loads(LAUGHS, file="bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak
    assert len(info.value.message) < 200
    # the same document as the value of a real key is refused the same way
    lines = refusal(piimg, project, "cluster:\n  extra_server_args: *i\n" + LAUGHS.replace("a: &a", "x: &a"))
    assert ":" in lines[0]


def test_a_few_aliases_still_work(home: Path) -> None:
    text = yaml.safe_dump(BASE) + "x-dns: &dns [1.1.1.1]\n"
    with pytest.raises(ConfigError, match="x-dns: unknown key"):  # the loader took it; the spec refuses the key
        spec_load.loads(text)


def test_huge_value_gives_a_short_message(piimg: Any, project: Path) -> None:
    host = "a" * 200_000
    lines = refusal(piimg, project, yaml.safe_dump(_with("nodes[0].hostname", host), width=10**7))
    assert lines[0].startswith("error: nodes[0].hostname: 'aaaa") and "characters left out" in lines[0]


def test_huge_file_is_refused_before_it_is_read(project: Path, piimg: Any) -> None:
    spec = project / "piimg.yaml"
    with open(spec, "w") as fh:
        fh.write(yaml.safe_dump(BASE))
        fh.write("# " + "x" * 1000 + "\n")
        fh.truncate(50 * 2**20)  # 50 MB (sparse)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"larger than 256 KiB") as info:
            spec_load.load(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # not read in full
    assert str(spec) in info.value.message
    refusal(piimg, project, spec.read_text())  # and through the CLI


@pytest.mark.parametrize("text", ["a: " + "[" * 5000 + "]" * 5000 + "\n", "a:\n" + "".join(" " * i + "- \n" for i in range(0, 400, 2)),
                                  "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n"], ids=["flow lists", "block lists", "flow maps"])
def test_deep_nesting_is_refused_not_a_recursion_error(piimg: Any, project: Path, text: str) -> None:
    lines = refusal(piimg, project, text)
    assert "nested more than" in lines[0], lines[0]


def test_duplicate_keys_name_the_key_and_both_lines(piimg: Any, project: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    text += "nodes:\n  - {hostname: other, role: server, address: 10.0.2.20}\n"
    lines = refusal(piimg, project, text)
    first = text.splitlines().index("nodes:") + 1
    second = len(text.splitlines()) - 1
    assert lines[0] == (f"error: piimg.yaml:{second}:1: the key 'nodes' is given twice in one mapping "
                        f"(lines {first} and {second})"), lines
    nested = "nodes:\n  - hostname: a\n    address: 10.0.2.10\n    hostname: b\n"
    lines = refusal(piimg, project, nested)
    assert "the key 'hostname' is given twice in one mapping (lines 2 and 4)" in lines[0]


# ------------------------------------------------------------------ issue 18: YAML syntax errors in words


SYNTAX = [
    # (the audit's case, text, line, column (1-based), words of the sentence, words of the hint)
    ("indent", "nodes:\n  - hostname: a\n     role: server\n", 3, 6, "indented 5 spaces; the key on the line above starts at 4",
     "same column"),
    ("indent less", "access:\n    user: pi\n  keymap: us\n", 3, 3, "indented 2 spaces", "same column"),
    ("tab", "access:\n\tuser: pi\n", 2, 1, "a tab character", "replace the tab with spaces"),
    ("unquoted colon in flow", "cluster: {name: a:b: c}\n", 1, 20, "not quoted", "quote such values"),
    ("second colon", "access:\n  user: pi: x\n", 2, 11, "a second ': ' on one line", "quote a value"),
    ("unclosed quote", 'access:\n  user: "pi\n', 2, 9, "a quote that is never closed", "close the quote"),
]


@pytest.mark.parametrize(("text", "line", "column", "sentence", "hint"), [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_yaml_syntax_errors_quote_the_line_with_a_caret(piimg: Any, project: Path, text: str, line: int, column: int,
                                                        sentence: str, hint: str) -> None:
    lines = refusal(piimg, project, text)
    assert lines[0].startswith(f"error: piimg.yaml:{line}:{column}: YAML syntax error: "), lines
    assert sentence in lines[0], lines[0]
    quoted = text.splitlines()[line - 1].replace("\t", "→")
    assert lines[1] == f"  {line} | {quoted}", lines
    caret = re.fullmatch(r"  ( *) \| ( *)\^", lines[2])
    assert caret and len(caret.group(1)) == len(str(line)) and len(caret.group(2)) == column - 1, lines
    assert lines[3].startswith("hint: ") and hint in lines[3] and "(YAML parser: " in lines[3], lines
    assert len(lines) == 4


def test_load_text_bounds_are_what_the_docs_say() -> None:
    assert yamlload.MAX_BYTES == 256 * 1024 and yamlload.MAX_DEPTH == 24


# ------------------------------------------------------------------ 9: addresses vs LB pools


def test_router_host_inside_a_pool(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"^router\.host: 10\.0\.4\.7 \(the router's API address\) is inside "
                                          r"cluster\.pools\[0\]\.addresses\[0\] 10\.0\.4\.0/23"):
        spec_load.parse(_with("router.host", "10.0.4.7"))


def test_router_host_that_is_a_node(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"^router\.host: 10\.0\.2\.10 is nodes\[0\]\.address"):
        spec_load.parse(_with("router.host", "10.0.2.10"))


def test_node_address_equal_to_a_pool_address(home: Path) -> None:
    doc = _with("network.subnet", "10.0.0.0/16")
    doc["cluster"]["pools"] = [{"name": "web", "addresses": ["10.0.2.10/32"]}]
    with pytest.raises(ConfigError, match=r"^nodes\[0\]\.address: 10\.0\.2\.10 \(k8s-master's address\) is inside "
                                          r"cluster\.pools\[0\]\.addresses\[0\] 10\.0\.2\.10/32 \(pool web\)"):
        spec_load.parse(doc)


def test_router_host_name_is_not_compared(home: Path) -> None:
    spec = spec_load.parse(_with("router.host", "router.lan"))
    assert spec.router.host == "router.lan"


def test_k3s_install_sha256_must_be_the_whole_value(home: Path) -> None:
    # a digest followed by anything (here a newline and a second word) is no digest
    for bad in ("a" * 64 + "zz", "a" * 64 + "\nb"):
        doc = _with("cluster.k3s_install_sha256", bad)
        with pytest.raises(ConfigError, match=r"^cluster\.k3s_install_sha256: "):
            spec_load.parse(doc)


def test_validate_lists_each_key_with_ssh_keygens_fingerprint(real_keys: list[tuple[str, str]], piimg: Any,
                                                              project: Path) -> None:
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("access.ssh_authorized_keys", [k for k, _ in real_keys])))
    r = piimg("validate")
    assert r.exit_code == 0, r
    for line, fingerprint in real_keys:
        kind, _, comment = line.split(" ", 2)
        assert f"  key {kind} {fingerprint} {comment}" in r.stdout.splitlines(), r.stdout


def test_validate_names_the_file_of_each_key_taken_from_home(real_keys: list[tuple[str, str]], piimg: Any,
                                                             project: Path, home: Path) -> None:
    """With no key in the spec, each ~/.ssh/id_*.pub key is listed with the file it came from."""
    (ed25519, ed_fp), (rsa, rsa_fp) = real_keys[0], real_keys[-1]
    (home / ".ssh" / "id_ed25519.pub").write_text(ed25519 + "\n")
    (home / ".ssh" / "id_rsa.pub").write_text(rsa + "\n")
    (project / "piimg.yaml").write_text(yaml.safe_dump(_with("access.user", "pi")))
    r = piimg("validate")
    assert r.exit_code == 0, r
    keys = [ln for ln in r.stdout.splitlines() if ln.startswith("  key ")]
    assert keys == [f"  key ssh-ed25519 {ed_fp} user0@host (~/.ssh/id_ed25519.pub)",
                    f"  key ssh-rsa {rsa_fp} user4@host (~/.ssh/id_rsa.pub)"], r.stdout
