from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from piimg.errors import DownloadError, NotFound
from piimg.fetch.download import RetryPolicy, download, fetch_text, parse_sha256_file, part_path, sha256_file
from tests.fetchfixtures import sha
from tests.httpserver import Fault, FileServer

FAST = RetryPolicy(attempts=4, first_delay=0.01, max_delay=0.05, connect_timeout=10, read_timeout=30)
DATA = os.urandom(1_000_000)

pytestmark = pytest.mark.integration  # a real HTTP server on 127.0.0.1


@pytest.fixture()
def srv() -> Iterator[FileServer]:
    with FileServer() as s:
        s.add("/f.bin", DATA)
        yield s


def test_plain_download(tmp_path: Path, srv: FileServer) -> None:
    part = download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)
    assert part == part_path(tmp_path / "f.bin")
    assert sha256_file(part) == sha(DATA)
    assert srv.bytes_sent("/f.bin") == len(DATA)


def test_resume_after_connection_drop_fetches_only_the_rest(tmp_path: Path, srv: FileServer) -> None:
    srv.faults["/f.bin"] = Fault(drop_after=300_000, times=1)
    part = download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST, expected_size=len(DATA))
    assert part.read_bytes() == DATA
    reqs = srv.requests_for("/f.bin")
    assert [r.range for r in reqs] == [None, "bytes=300000-"]
    assert reqs[0].sent == 300_000
    assert reqs[1].status == 206 and reqs[1].sent == len(DATA) - 300_000
    assert srv.bytes_sent("/f.bin") == len(DATA)  # nothing fetched twice


def test_resume_of_existing_part_file(tmp_path: Path, srv: FileServer) -> None:
    part_path(tmp_path / "f.bin").write_bytes(DATA[:123_456])
    download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)
    assert part_path(tmp_path / "f.bin").read_bytes() == DATA
    assert srv.requests_for("/f.bin")[0].range == "bytes=123456-"
    assert srv.bytes_sent("/f.bin") == len(DATA) - 123_456


def test_complete_part_without_known_size(tmp_path: Path, srv: FileServer) -> None:
    part_path(tmp_path / "f.bin").write_bytes(DATA)
    download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)
    assert part_path(tmp_path / "f.bin").read_bytes() == DATA
    assert [r.status for r in srv.requests_for("/f.bin")] == [416]


def test_complete_part_with_known_size_makes_no_request(tmp_path: Path, srv: FileServer) -> None:
    part_path(tmp_path / "f.bin").write_bytes(DATA)
    download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST, expected_size=len(DATA))
    assert srv.requests_for("/f.bin") == []


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, srv: FileServer) -> None:
    part_path(tmp_path / "f.bin").write_bytes(DATA[:500_000])
    srv.faults["/f.bin"] = Fault(ignore_range=True)
    download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)
    assert part_path(tmp_path / "f.bin").read_bytes() == DATA
    reqs = srv.requests_for("/f.bin")
    assert len(reqs) == 1 and reqs[0].range == "bytes=500000-" and reqs[0].status == 200


def test_ignoring_range_after_a_drop(tmp_path: Path, srv: FileServer) -> None:
    srv.faults["/f.bin"] = Fault(drop_after=200_000, ignore_range=True, times=1)
    download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)
    assert part_path(tmp_path / "f.bin").read_bytes() == DATA


def test_transient_http_errors_are_retried(tmp_path: Path, srv: FileServer) -> None:
    srv.faults["/f.bin"] = Fault(status=503, times=2)
    download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)
    assert part_path(tmp_path / "f.bin").read_bytes() == DATA
    assert [r.status for r in srv.requests_for("/f.bin")] == [503, 503, 200]


def test_gives_up_after_attempts(tmp_path: Path, srv: FileServer) -> None:
    srv.faults["/f.bin"] = Fault(status=503, times=-1)
    with pytest.raises(DownloadError, match=r"HTTP 503.*gave up after 4 attempts"):
        download(srv.url("/f.bin"), tmp_path / "f.bin", policy=FAST)


def test_fetch_text_404_is_not_found_not_an_os_error(srv: FileServer) -> None:
    # a 404 is its own DownloadError, never mistaken for a missing local file (W8)
    with pytest.raises(NotFound) as err:
        fetch_text(srv.url("/missing.sha256"), policy=FAST)
    assert not isinstance(err.value, OSError) and err.value.url == srv.url("/missing.sha256")
    assert len(srv.requests_for("/missing.sha256")) == 1


def test_not_found_is_an_error_at_once(tmp_path: Path, srv: FileServer) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(srv.url("/missing.bin"), tmp_path / "m.bin", policy=FAST)
    assert len(srv.requests_for("/missing.bin")) == 1


def test_connection_refused(tmp_path: Path) -> None:
    with FileServer() as s:
        url = s.url("/x")
    with pytest.raises(DownloadError, match="gave up"):
        download(url, tmp_path / "x", policy=FAST)


class _InterruptingReporter:
    """A reporter whose bar raises KeyboardInterrupt (like Ctrl-C) after ``after`` bytes."""

    def __init__(self, after: int) -> None:
        self.after = after

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None, *, unit: str = "B") -> Iterator[object]:
        outer = self

        class Bar:
            done = 0

            def update(self, n: int) -> None:
                self.done += n
                if self.done >= outer.after:
                    raise KeyboardInterrupt

        yield Bar()


def test_ctrl_c_leaves_a_resumable_part(tmp_path: Path, srv: FileServer) -> None:
    big = os.urandom(5_000_000)  # more than one read (<= 1 MiB) can return
    srv.add("/big.bin", big)
    dest = tmp_path / "dl" / "big.bin"
    with pytest.raises(KeyboardInterrupt):
        download(srv.url("/big.bin"), dest, policy=FAST, reporter=_InterruptingReporter(400_000))  # type: ignore[arg-type]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big.bin.part"]
    have = part_path(dest).stat().st_size
    assert 0 < have < len(big)
    srv.reset_log()
    download(srv.url("/big.bin"), dest, policy=FAST)
    assert part_path(dest).read_bytes() == big
    assert srv.requests_for("/big.bin")[0].range == f"bytes={have}-"
    assert srv.bytes_sent("/big.bin") == len(big) - have


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("a" * 64 + "  x.img.xz\n", "x.img.xz", "a" * 64),
        ("A" * 64 + " *x.img.xz\n", "x.img.xz", "a" * 64),
        ("b" * 64 + "  other.img\n" + "c" * 64 + "  dir/x.img.xz\n", "x.img.xz", "c" * 64),
        ("d" * 64 + "\n", "x.img.xz", "d" * 64),
        ("b" * 64 + "  a\n" + "c" * 64 + "  b\n", "x.img.xz", None),
        ("<html>not found</html>", "x.img.xz", None),
    ],
)
def test_parse_sha256_file(text: str, name: str, expected: str | None) -> None:
    assert parse_sha256_file(text, name) == expected


def test_concurrent_download_of_the_same_file_is_refused(tmp_path: Path, srv: FileServer) -> None:
    import fcntl

    dest = tmp_path / "f.bin"
    with open(part_path(dest), "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another piimg is downloading"):
            download(srv.url("/f.bin"), dest, policy=FAST)
    assert srv.requests == []
    download(srv.url("/f.bin"), dest, policy=FAST)
    assert part_path(dest).read_bytes() == DATA
