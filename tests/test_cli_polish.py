"""The smaller usability items (audit S18): whole command summaries, exit codes
documented, colour only on a terminal (NO_COLOR, --color/--no-color), a router
plan that wraps between key=value pairs, one level of parentheses, a password
hint that fits where the password came from, status --json with schema, time
and host, a closed stdout is no error, `piimg completion`, the SPDX licence,
`os list` in catalog order with image.os marked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimg import errors
from piimg.cli import cli
from tests.conftest import LOOPBACK_SPEC, TEST_KEY, have
from tests.ptyrun import PtyProcess, piimg_argv, run_pty

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _words(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- help


def test_top_level_help_shows_every_summary_whole(piimg: Any) -> None:
    r = piimg("--help")
    assert r.exit_code == 0
    commands = r.stdout.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    assert "..." not in commands, commands
    for name, command in cli.commands.items():
        paragraph = _words((command.help or "").split("\n\n")[0])
        first = paragraph.split(". ")[0].rstrip(".") + "."  # the first sentence
        assert first.endswith(".") and _words(f"{name} {first}") in _words(commands), (name, first)


def test_exit_codes_are_in_help_and_readme(piimg: Any) -> None:
    text = piimg("--help").stdout
    readme = (ROOT / "README.md").read_text()
    assert "Exit status:" in text
    for code in (0, errors.EXIT_ERROR, errors.EXIT_USAGE, errors.EXIT_UNSAFE, 130):
        assert re.search(rf"^\s+{code}\s+\S", text, re.M), (code, text)
        assert f"| {code} |" in readme, code
    assert re.search(rf"^\s+{errors.EXIT_UNSAFE}\s+unsafe target", text, re.M)


# ---------------------------------------------------------------- stdout closed, completion, licence


def test_a_closed_stdout_is_not_an_error(project: Path, piimg: Any) -> None:
    assert piimg("init").exit_code == 0
    read, write = os.pipe()
    os.close(read)  # the reader is gone before piimg writes a byte: `piimg validate | head -0`
    try:
        proc = subprocess.run(piimg_argv("validate"), stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_validate_into_head_exits_0(project: Path, piimg: Any) -> None:
    assert piimg("init").exit_code == 0
    argv = " ".join(piimg_argv("validate"))
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {argv} | head -1"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.endswith(": ok\n"), proc
    assert "Exception" not in proc.stderr and "error" not in proc.stderr


def _installed() -> Path | None:
    exe = Path(sys.executable).with_name("piimg")
    return exe if exe.exists() else None


@pytest.mark.skipif(_installed() is None or not have("bash"), reason="needs the piimg console script and bash")
def test_bash_completion_script_registers_and_completes(tmp_path: Path) -> None:
    exe = _installed()
    assert exe is not None
    script = (
        'source <(piimg completion bash)\n'
        "complete -p piimg\n"
        "COMP_WORDS=(piimg fl); COMP_CWORD=1; _piimg_completion piimg fl piimg; echo \"${COMPREPLY[*]}\"\n"
        "COMPREPLY=(); COMP_WORDS=(piimg completion ''); COMP_CWORD=2; _piimg_completion piimg '' completion; "
        "echo \"${COMPREPLY[*]}\"\n"
    )
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["complete -o nosort -F _piimg_completion piimg", "flash", "bash zsh fish"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script_for_the_shell(shell: str, tmp_path: Path) -> None:
    # click's other route to the same script: the variable its shell_complete machinery reads
    ours = subprocess.run(piimg_argv("completion", shell), capture_output=True, text=True, timeout=60)
    env = {**os.environ, "_PIIMG_COMPLETE": f"{shell}_source"}
    clicks = subprocess.run(piimg_argv(), capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert ours.returncode == 0 and clicks.returncode == 0, (ours.stderr, clicks.stderr)
    assert ours.stdout.strip() == clicks.stdout.strip() != ""
    if have(shell):  # parse it with the shell itself where installed
        check = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}[shell]
        assert subprocess.run([*check], input=ours.stdout, capture_output=True, text=True).returncode == 0


def test_licence_is_an_spdx_string() -> None:
    # setuptools >= 77 deprecates the table form (the box in `make venv`); PEP 639
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


# ---------------------------------------------------------------- os list


def _catalog_names(srv: Any, url: str) -> list[str]:
    """The image names of a served catalog, in the order the catalog lists them (subitems, subitems_url)."""
    from urllib.parse import urljoin, urlparse

    names: list[str] = []

    def walk(items: list[dict[str, Any]], base: str) -> None:
        for item in items:
            if "url" in item:
                names.append(item["name"])
            walk(item.get("subitems", []), base)
            if "subitems_url" in item:
                sub = urljoin(base, item["subitems_url"])
                walk(json.loads(srv.files[urlparse(sub).path])["os_list"], sub)

    walk(json.loads(srv.files[urlparse(url).path])["os_list"], url)
    return names


def test_os_list_keeps_catalog_order_and_marks_image_os(srv: Any, project: Path, piimg: Any) -> None:
    s, url = srv
    (project / "piimg.yaml").write_text(f"image:\n  os: raspios-lite-arm64\n  catalog: {url}\n")
    r = piimg("os", "list")
    assert r.exit_code == 0, r
    rows = r.stdout.splitlines()[1:-1]
    shown = [tuple(re.split(r"\s{2,}", row[2:])[:2]) for row in rows]  # (slug, name)
    order = _catalog_names(s, url)
    slugs = list(dict.fromkeys(slug for slug, _ in shown))
    # each slug where the catalog first lists one of its images (not sorted by slug: raspios-* would lead)
    first = {slug: min(order.index(name) for sl, name in shown if sl == slug) for slug in slugs}
    assert slugs == sorted(slugs, key=first.__getitem__), (slugs, order)
    assert slugs != sorted(slugs)
    marked = [row for row in rows if row.startswith("* ")]
    assert marked and all(row[2:].startswith("raspios-lite-arm64 ") for row in marked)
    assert r.stdout.splitlines()[-1] == f"* image.os in {Path('piimg.yaml')}"


# ---------------------------------------------------------------- status: colour and JSON


RED_FAIL = "\x1b[31m\x1b[1mFAIL    \x1b[0m"


def test_status_is_coloured_only_on_a_terminal_and_not_with_no_color(project: Path) -> None:
    (project / "piimg.yaml").write_text(LOOPBACK_SPEC)  # nothing listens there: every check fails at once
    colour_ok = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    rc, screen = run_pty(piimg_argv("status", "--no-router"), cwd=project, env=colour_ok)
    assert rc == 1 and RED_FAIL in screen, repr(screen)
    rc, screen = run_pty(piimg_argv("status", "--no-router"), cwd=project, env={**os.environ, "NO_COLOR": "1"})
    assert rc == 1 and "FAIL" in screen and "\x1b[" not in screen, repr(screen)
    rc, screen = run_pty(piimg_argv("--no-color", "status", "--no-router"), cwd=project, env=colour_ok)
    assert rc == 1 and "\x1b[" not in screen
    piped = subprocess.run(piimg_argv("status", "--no-router"), capture_output=True, text=True, timeout=120,
                           env=colour_ok)
    assert "FAIL" in piped.stdout and "\x1b[" not in piped.stdout
    forced = subprocess.run(piimg_argv("--color", "status", "--no-router"), capture_output=True, text=True,
                            timeout=120, env={**os.environ, "NO_COLOR": "1"})  # the flag beats the variable
    assert RED_FAIL in forced.stdout


def test_status_json_has_schema_time_and_host(project: Path, piimg: Any) -> None:
    (project / "piimg.yaml").write_text(LOOPBACK_SPEC)
    r = piimg("status", "--json", "--no-router")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["schema"] == 1 and data["cluster"] == "homelab" and data["ok"] is False
    when = datetime.fromisoformat(data["time"].replace("Z", "+00:00"))
    assert when.utcoffset() is not None and abs((datetime.now(when.tzinfo) - when).total_seconds()) < 600
    hosts = {c["name"]: c["host"] for c in data["checks"]}
    assert hosts["node k8s-master"] == "127.0.2.10" and hosts["firstboot k8s-master"] == "127.0.2.10"
    assert hosts["router bgp"] == "127.0.2.1" and hosts["kubernetes api"] == "127.0.2.10"


# ---------------------------------------------------------------- router: plan, version, password hint


def _router_spec(project: Path, peer: Any) -> None:
    host, port = peer.address
    (project / "piimg.yaml").write_text(yaml.safe_dump({
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "router": {"host": host, "port": port, "tls": False},
        "nodes": [{"hostname": "k8s-master", "role": "server", "address": "10.0.2.10"},
                  {"hostname": "k8s-agent-1", "role": "agent", "address": "10.0.2.11", "mac": "dc:a6:32:01:02:03"}],
    }))


def test_router_plan_wraps_between_pairs_with_colour_and_one_level_of_parentheses(project: Path) -> None:
    from tests.routeros_peer import RouterOSPeer

    with RouterOSPeer(version="7.16.1", users={"admin": "pw"}) as peer:
        _router_spec(project, peer)
        env = {**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, "PIIMG_ROUTER_PASSWORD": "pw"}
        piped = subprocess.run(piimg_argv("router-setup", "--dry-run"), capture_output=True, text=True, env=env,
                               timeout=120)
        with PtyProcess(piimg_argv("router-setup", "--dry-run"), cwd=project, env=env, columns=80) as p:
            rc, screen = p.finish()
    assert piped.returncode == 0 and rc == 0, (piped.stderr, screen)
    host, port = peer.address
    assert f"connected to {host}:{port}: RouterOS 7.16.1 stable, 7.0-7.18 command set" in piped.stderr
    assert "((" not in piped.stdout + piped.stderr and "))" not in piped.stdout + piped.stderr
    long = [line for line in piped.stdout.splitlines() if len(line) > 80]
    assert long  # piped: one line per item, as scripts want it
    lines = [ANSI.sub("", line) for line in screen.split("\r\n")]
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    joined = " ".join(line.strip() for line in lines)
    for line in long:  # every key=value of the long lines is on the terminal, whole (not split over two lines)
        for pair in re.findall(r'\S+=(?:"[^"]*"|\S+)', line):
            assert pair in joined, pair
    adds = [line for line in screen.split("\r\n") if ANSI.sub("", line).lstrip().startswith("+ add")]
    assert adds and all(line.lstrip().startswith("\x1b[32m") for line in adds), adds[:2]


def test_wrong_password_typed_at_the_prompt_names_no_variable(project: Path, piimg: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.routeros_peer import RouterOSPeer

    with RouterOSPeer(version="7.20.1", users={"admin": "right"}) as peer:
        _router_spec(project, peer)
        env = {k: v for k, v in os.environ.items() if k != "PIIMG_ROUTER_PASSWORD"}
        with PtyProcess(piimg_argv("router-setup", "--dry-run"), cwd=project, env=env) as p:
            p.expect("RouterOS password for admin@")
            p.wait_reading()
            p.send(b"wrong\r")
            rc, screen = p.finish()
        assert rc == 1, screen
        assert "login as admin refused" in screen
        assert "PIIMG_ROUTER_PASSWORD" not in screen, screen
        assert "hint: the password typed at the prompt was refused" in screen
        # from the variable: the hint names it
        monkeypatch.setenv("PIIMG_ROUTER_PASSWORD", "wrong")
        r = piimg("router-setup", "--dry-run")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1].startswith("hint: check $PIIMG_ROUTER_PASSWORD (the password of admin")
