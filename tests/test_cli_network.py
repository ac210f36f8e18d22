"""Network failures, cut-off files and Ctrl-C during a download, as the user sees them
(usability audit S12, S13, S14).

Every situation is real: a name that does not resolve (in a network namespace
of the test's own, so the DNS query cannot leave the host), a refused loopback
connection, a loopback HTTP server that closes mid-body or stops sending, an
xz file cut in half, an ssh connect to a closed loopback port, a real SIGINT
to a real piimg process, a real pseudo-terminal.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from piimg.errors import Unreachable
from piimg.fetch.download import RetryPolicy
from piimg.fetch.source import OFFLINE_HINT, obtain_base_image
from piimg.image import decompress
from piimg.paths import user_cache_dir
from piimg.spec import load as spec_load
from tests import fetchfixtures as ig
from tests.conftest import LOOPBACK_SPEC, TEST_KEY, have
from tests.httpserver import Fault, FileServer
from tests.ptyrun import piimg_argv, run_pty

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=1, first_delay=0.01, max_delay=0.02, connect_timeout=10, read_timeout=30)
INVALID = "https://downloads.piimg-test.invalid/os_list_imagingutility_v4.json"  # RFC 2606: never resolves


def _noise(size: int, seed: int) -> bytes:
    """Incompressible data (a downloaded image's compressed body is, too): xz of it is as large."""
    import random

    return random.Random(seed).randbytes(size)


def _closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _netns_ok() -> bool:
    return have("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


# ---------------------------------------------------------------- S12: no network, refused, cut off


@pytest.mark.skipif(not _netns_ok(), reason="needs unshare -rn (user and network namespaces)")
def test_a_name_that_does_not_resolve_says_how_to_work_offline(project: Path) -> None:
    # a network namespace with no interface up: the resolver's query fails on this host
    proc = subprocess.run(["unshare", "-rn", *piimg_argv("os", "list", "--catalog", INVALID)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"error: {INVALID}: "), proc.stderr
    assert "name resolution" in lines[0] or "not known" in lines[0], proc.stderr
    assert lines[-1] == f"hint: {OFFLINE_HINT}", proc.stderr


def test_os_list_offline_without_a_cached_catalog_names_os_list(project: Path, piimg: Any) -> None:
    r = piimg("os", "list", "--offline", "--catalog", INVALID)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == (
        "hint: run `piimg os list` once with network access, or set image.url to a local file"), r.stderr


def test_refused_connection_during_a_download_says_how_to_work_offline(project: Path) -> None:
    port = _closed_port()
    (project / "piimg.yaml").write_text(
        f"image:\n  url: http://127.0.0.1:{port}/img/2025-11-24-raspios-trixie-arm64-lite.img.xz\n"
        f"  sha256: {'a' * 64}\n")
    with pytest.raises(Unreachable) as err:
        obtain_base_image(spec_load.load(project / "piimg.yaml"), policy=FAST)
    assert "Connection refused" in err.value.message
    assert err.value.hint == OFFLINE_HINT


def test_a_server_closing_mid_body_says_the_download_resumes(project: Path) -> None:
    blob = ig.compress(_noise(2 * ig.MIB, 7), "xz")
    cut = len(blob) // 2
    with FileServer() as s:
        url = s.add("/img/cut.img.xz", blob)
        s.faults["/img/cut.img.xz"] = Fault(drop_after=cut)
        (project / "piimg.yaml").write_text(f"image:\n  url: {url}\n  sha256: {ig.sha(blob)}\n")
        spec = spec_load.load(project / "piimg.yaml")
        with pytest.raises(Unreachable) as err:
            obtain_base_image(spec, policy=FAST)
        assert f"connection closed mid-file ({cut} bytes read, {len(blob) - cut} more expected)" in err.value.message
        assert err.value.hint == f"run again to resume from {cut} bytes; {OFFLINE_HINT}"
        s.reset_log()
        obtain_base_image(spec, policy=FAST)
        assert s.bytes_sent("/img/cut.img.xz") == len(blob) - cut  # it did resume


@pytest.fixture(params=["xz", "python"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    if request.param == "xz" and not have("xz"):
        pytest.skip("xz not installed")
    if request.param == "python":
        ig.without_decoder_programs(monkeypatch, tmp_path)
    return str(request.param)


def test_a_truncated_xz_says_download_it_again(project: Path, piimg: Any, decoder: str) -> None:
    whole = subprocess.run(["xz", "-1", "-c"], input=_noise(3 * ig.MIB, 3), capture_output=True,
                           check=True).stdout if have("xz") else ig.compress(_noise(3 * ig.MIB, 3), "xz")
    trunc = project / "trunc.img.xz"
    trunc.write_bytes(whole[: len(whole) // 2])
    (project / "piimg.yaml").write_text("image:\n  os: raspios-lite-arm64\n")
    r = piimg("fetch", "--image-only", "--image", str(trunc))
    assert r.exit_code == 1, r
    first, hint = next(line for line in r.stderr.splitlines() if line.startswith("error: ")), r.stderr.splitlines()[-1]
    assert first.startswith(f"error: {trunc}: "), r.stderr
    assert ("Unexpected end of input" if decoder == "xz" else "ended before the end-of-stream marker") in first
    assert hint == f"hint: {decompress.TRUNCATED_HINT}"
    assert "the file is truncated" in hint


@pytest.mark.skipif(not have("ssh"), reason="needs the OpenSSH client")
def test_ssh_to_a_closed_port_says_first_boot_takes_minutes(project: Path) -> None:
    from piimg.status import kubeconfig as kcfg
    from piimg.status.ssh import SshFailed, SshTarget

    (project / "piimg.yaml").write_text(f"access:\n  ssh_authorized_keys: [\"{TEST_KEY}\"]\n")
    spec = spec_load.load(project / "piimg.yaml")
    target = SshTarget(host="127.0.0.1", user="pi", port=_closed_port(), host_key_alias="k8s-master",
                       known_hosts=str(project / "known_hosts"))
    with pytest.raises(SshFailed) as err:
        kcfg.fetch(spec, target)
    assert err.value.kind == SshFailed.UNREACHABLE
    assert "Connection refused" in err.value.message
    assert err.value.hint == ("is k8s-master booted? First boot takes a few minutes before SSH answers; "
                              "piimg status shows how far it got")




@pytest.mark.skipif(not have("ssh"), reason="needs the OpenSSH client")
def test_kubeconfig_over_ssh_to_a_node_not_up_yet(project: Path, piimg: Any) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.2.10", 22)) == 0:
            pytest.skip("something listens on 127.0.2.10:22")
    (project / "piimg.yaml").write_text(LOOPBACK_SPEC)
    r = piimg("kubeconfig", "--ssh")
    assert r.exit_code == 1, r
    assert r.stderr.splitlines() == [
        "error: pi@127.0.2.10:/etc/rancher/k3s/k3s.yaml: ssh: connect to host 127.0.2.10 port 22: Connection refused",
        "hint: is k8s-master booted? First boot takes a few minutes before SSH answers; "
        "piimg status shows how far it got",
    ]


# ---------------------------------------------------------------- S13: Ctrl-C during a download


def _part_size(cache: Path) -> int:
    parts = list((cache / "downloads").glob("*.part")) if (cache / "downloads").exists() else []
    return parts[0].stat().st_size if parts else 0


def test_ctrl_c_during_a_download_says_what_is_kept_and_that_fetch_resumes(project: Path) -> None:
    blob = ig.compress(_noise(4 * ig.MIB, 11), "xz")
    held = 1 << 20
    cache = user_cache_dir()
    with FileServer() as s:
        url = s.add("/img/2025-11-24-raspios-trixie-arm64-lite.img.xz", blob)
        s.faults["/img/2025-11-24-raspios-trixie-arm64-lite.img.xz"] = Fault(hold_after=held)
        (project / "piimg.yaml").write_text(f"image:\n  url: {url}\n  sha256: {ig.sha(blob)}\n")
        proc = subprocess.Popen(piimg_argv("fetch", "--image-only"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 60
            while _part_size(cache) < held - (64 << 10):  # the held megabyte has arrived (less a write buffer)
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert err.splitlines()[-1] == (
            "interrupted: 1.0 MiB downloaded and kept; piimg fetch (or the same command again) resumes"), err
        assert out == ""
        assert _part_size(cache) == held
        s.faults.clear()
        s.release.set()
        s.reset_log()
        again = subprocess.run(piimg_argv("fetch", "--image-only"), capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert f"downloading {url} (resuming)" in again.stderr.splitlines()  # logs keep the URL
        assert s.bytes_sent("/img/2025-11-24-raspios-trixie-arm64-lite.img.xz") == len(blob) - held


# ---------------------------------------------------------------- S14: names on the bars, the path once


def test_bars_name_the_file_and_the_path_is_printed_once_on_a_terminal(project: Path) -> None:
    name = "2025-11-24-raspios-trixie-arm64-lite.img.xz"
    blob = ig.compress(_noise(3 * ig.MIB, 5), "xz")
    with FileServer() as s:
        url = s.add(f"/raspios_lite_arm64/images/raspios_lite_arm64-2025-11-24/{name}", blob)
        (project / "piimg.yaml").write_text(f"image:\n  url: {url}\n  sha256: {ig.sha(blob)}\n")
        rc, screen = run_pty(piimg_argv("fetch", "--image-only"), cwd=project)
        assert rc == 0, screen
        piped = subprocess.run(piimg_argv("fetch", "--image-only"), capture_output=True, text=True, timeout=120)
    path = piped.stdout.strip()
    assert piped.returncode == 0 and Path(path).is_file(), piped  # stdout: the path alone, for scripts
    assert piped.stdout == path + "\n"
    assert f"verifying {name} (SHA-256): 100%" in screen, screen
    assert f"downloading {name}: 3.00MiB" in screen, screen  # the catalog gives the size; image.url does not
    assert screen.count(path) == 1, screen
    assert url not in screen, screen  # on a terminal the bar names the file; the URL is not repeated above it
    bars = screen.replace(path, "")
    assert ".part" not in bars and ig.sha(blob)[:32] not in bars, screen  # not the cache's name for the download


def test_hashing_a_local_file_says_sha256(project: Path) -> None:
    local = ig.write(project / "local.img.xz", ig.compress(_noise(2 * ig.MIB, 9), "xz"))
    (project / "piimg.yaml").write_text("image:\n  os: raspios-lite-arm64\n")
    proc = subprocess.run(piimg_argv("fetch", "--image-only", "--image", str(local)), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hashing local.img.xz (SHA-256): 2.0 MiB in" in proc.stderr, proc.stderr
    assert "cached: local.img.xz (2.0 MiB decompressed)" in proc.stderr, proc.stderr

