"""run.spawn: the streaming twin of run.run (W5): same lookup, env, log and failure report."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import pytest

from piimg import run
from piimg.errors import CommandFailed, ToolMissing


def test_spawn_streams_stdout_and_returns_cleanly() -> None:
    with run.spawn([sys.executable, "-c", "import sys; sys.stdout.write('x' * 100000)"]) as proc:
        assert proc.stdout is not None
        data = b""
        while chunk := proc.stdout.read(65536):
            data += chunk
    assert data == b"x" * 100000 and proc.returncode == 0


def test_spawn_failure_carries_the_stderr_tail_masked() -> None:
    code = "import sys; sys.stderr.write('warming up\\nbad key s3cret here\\n'); sys.exit(3)"
    with pytest.raises(CommandFailed) as err, run.spawn([sys.executable, "-c", code], secrets=["s3cret"]):
        pass
    assert err.value.returncode == 3
    assert err.value.tail == "bad key *** here"
    assert "s3cret" not in str(err.value)


def test_spawn_tail_without_stderr_names_the_exit_code() -> None:
    with pytest.raises(CommandFailed) as err, run.spawn([sys.executable, "-c", "raise SystemExit(5)"]):
        pass
    assert err.value.tail == "exit code 5"


def test_an_exception_in_the_block_kills_the_program() -> None:
    with pytest.raises(KeyboardInterrupt), run.spawn([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
        raise KeyboardInterrupt
    assert proc.returncode == -signal.SIGKILL


def test_missing_tool_names_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no xz to be found
    with pytest.raises(ToolMissing) as caught, run.spawn(["xz", "-dc"]):
        pass
    assert (caught.value.tool, caught.value.package) == ("xz", "xz-utils")
    assert "apt-get install xz-utils" in (caught.value.hint or "")


def test_debug_log_shows_the_command(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="piimg.run"), run.spawn([sys.executable, "-c", "pass"]):
        pass
    assert any(r.getMessage().startswith("spawn: ") and "-c pass" in r.getMessage() for r in caplog.records)
