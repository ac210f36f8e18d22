"""ConsoleReporter: what reaches the screen on a terminal and in a log."""

from __future__ import annotations

import io
import logging

import pytest

from piimg.progress import ConsoleReporter


@pytest.mark.parametrize("tty", [True, False])
def test_a_note_is_a_line_in_logs_and_only_debug_on_a_terminal(tty: bool, caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG, logger="piimg.progress"):
        ConsoleReporter(out, tty=tty).note("downloading http://127.0.0.1:8099/img/x.img.xz")
    if tty:  # the download bar that follows names the file
        assert out.getvalue() == ""
        assert [r.getMessage() for r in caplog.records] == ["downloading http://127.0.0.1:8099/img/x.img.xz"]
    else:
        assert out.getvalue() == "downloading http://127.0.0.1:8099/img/x.img.xz\n"
