"""Shared fixtures. Every test runs with network access limited to loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import settings

# Property tests check behaviour, not speed: no per-example deadline (hypothesis' default
# 200 ms is a timed assertion, and it failed test_cmdline under a loaded machine's 438 ms).
settings.register_profile("piimg", deadline=None)
settings.load_profile("piimg")

# fixtures `images` and `srv` (a catalog on 127.0.0.1) for the catalog and fetch tests;
# modules with a fixture of the same name (test_download's `srv`) keep their own
# `k3s_release` (a generated k3s release and charts behind a mirror on 127.0.0.1)
pytest_plugins = ["tests.catalogserver", "tests.releaseserver"]

# A real public key: `ssh-keygen -t ed25519 -C test@piimg` (OpenSSH 9.2p1); the private half was discarded.
TEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKG/9VkN1xCggDUtUiRPJkbbpvUF/EMKs8xOJGdlRBom test@piimg"

#: A one-node spec whose lab subnet is on loopback (127.0.2.0/23): piimg status,
#: kubeconfig and router-setup may run against it (nothing there answers unless a test starts it).
LOOPBACK_SPEC = f"""\
access:
  ssh_authorized_keys: ["{TEST_KEY}"]
network:
  subnet: 127.0.2.0/23
  gateway: 127.0.2.1
  dhcp_pool: 127.0.3.1-127.0.3.254
router:
  host: 127.0.2.1
cluster:
  pools:
    - name: default
      addresses: [127.0.4.0/23]
nodes:
  - {{hostname: k8s-master, role: server, address: 127.0.2.10}}
"""


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(sock: socket.socket, address: Any) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _allowed(self, address):
        raise AssertionError(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _allowed(self, address):
        raise AssertionError(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that opens a connection to anything but loopback."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway HOME with one SSH public key and a private cache folder."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(TEST_KEY + "\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIIMG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return home


@pytest.fixture()
def project(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (the current directory) with HOME set up."""
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    return proj


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return f"CliResult(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


@pytest.fixture()
def piimg() -> Any:
    """Run the CLI in-process: ``piimg("validate")`` returns a CliResult."""
    from piimg.cli import main

    def invoke(*args: str, input: str | None = None) -> CliResult:
        runner = CliRunner()
        holder: dict[str, int] = {}

        def entry() -> None:
            holder["rc"] = main(list(args))

        import click

        cmd = click.Command("piimg", callback=entry)
        result = runner.invoke(cmd, [], input=input, catch_exceptions=False)
        return CliResult(holder.get("rc", result.exit_code), result.stdout, result.stderr)

    return invoke


def have(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


def run_ok(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a checking tool in a test; show its output on failure."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, **kwargs)
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture()
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make any unmocked subprocess call fail (for pure unit tests)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected subprocess call: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    yield
