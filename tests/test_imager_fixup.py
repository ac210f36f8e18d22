"""piimg's firstrun.sh against the real initramfs ``imager_fixup`` of Raspberry Pi OS.

On a Bookworm card whose cmdline.txt names ``systemd.run=/boot/firstrun.sh``
(rpi-imager's spelling), the initramfs rewrites the hook to /boot/firmware,
truncates firstrun.sh at the first line matching ``/rm.*firstrun\\.sh$/`` and
appends its own three-line tail. piimg spells the hook
``/boot/firmware/firstrun.sh``, so the fixup's trigger does not fire; should it
ever fire anyway (an older build, a hand edit), nothing of piimg's script may be
cut off. The script is the real one (tests/data/pios/sys-mods/imager_fixup,
RPi-Distro/raspberrypi-sys-mods@3af395f6:initramfs-tools/scripts/local-bottom/imager_fixup);
its edits run here with the real sed and sh on every rendered firstrun.sh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from piimg.build import payload
from piimg.spec import load as spec_load
from piimg.spec.model import InitFormat
from piimg.spec.secrets import Secrets
from tests import piosfacts
from tests.conftest import TEST_KEY

SECRETS = Secrets(k3s_token="t0ken" * 8)
FIXUP = piosfacts.imager_fixup()
MOUNT = "/run/imager_fixup"


def _trigger_pattern() -> str:
    """The grep -q pattern the fixup checks /proc/cmdline against (line 13)."""
    (pattern,) = re.findall(r"^if ! grep -q '([^']+)' /proc/cmdline; then$", FIXUP, re.M)
    return pattern


def _edits() -> str:
    """The fixup's edits of the mounted boot partition: from the first sed to the heredoc's end (lines 26-32)."""
    lines = FIXUP.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("sed -i 's|/boot/|"))
    end = next(i for i, ln in enumerate(lines) if ln == "EOF" and i > start)
    return "\n".join(lines[start : end + 1]) + "\n"


def _tail() -> str:
    """What the fixup appends to firstrun.sh (the heredoc body)."""
    body = _edits().split("<< \\EOF\n", 1)[1]
    return body[: -len("EOF\n")]


def apply_fixup(boot: Path) -> None:
    """Run the real fixup's edits on ``boot`` (standing in for the mounted FAT)."""
    script = _edits().replace(MOUNT, str(boot))
    subprocess.run(["sh", "-e", "-c", script], check=True, capture_output=True, text=True)


def _spec(**extra: object) -> object:
    raw: dict[str, object] = {
        "access": {"ssh_authorized_keys": [TEST_KEY]},
        "nodes": [
            {"hostname": "m1", "role": "server", "address": "10.0.2.10"},
            {"hostname": "w1", "role": "agent", "address": "10.0.2.11"},
        ],
    }
    raw.update(extra)
    return spec_load.parse(raw, env={"PIIMG_WIFI": "correct horse battery"}, home=Path("/nonexistent-home"))


VARIANTS = {
    "keys": {},
    "no-keys-password": {"access": {"ssh_authorized_keys": [], "password_hash": "$6$salt$" + "c" * 86}},
    "wifi": {"wifi": {"ssid": "lab", "psk_env": "PIIMG_WIFI"}, "locale": {"wifi_country": "GB"}},
    "wifi-hidden": {"wifi": {"ssid": "it's", "psk_env": "PIIMG_WIFI", "hidden": True}, "locale": {"wifi_country": "US"}},
    "country-only": {"locale": {"wifi_country": "DE", "keymap": "de", "timezone": "Europe/Berlin"}},
}


CASES = [(name, node) for name in VARIANTS for node in ("m1", "w1")]
IDS = [f"{name}-{node}" for name, node in CASES]


def render(monkeypatch: pytest.MonkeyPatch, name: str, node: str) -> tuple[bytes, bytes]:
    """firstrun.sh and the edited Bookworm cmdline.txt of one node of one spec variant."""
    monkeypatch.setenv("PIIMG_WIFI", "correct horse battery")
    spec = _spec(**VARIANTS[name])
    edits = payload.boot_edits(spec, spec.node(node), SECRETS, InitFormat.SYSTEMD)  # type: ignore[attr-defined]
    return edits.files["firstrun.sh"], edits.apply_cmdline(piosfacts.cmdline("bookworm", "5e3da0c1").encode())


def test_the_upstream_script_is_what_this_test_parses() -> None:
    assert _trigger_pattern() == r"systemd\.run=/boot/firstrun\.sh"
    assert "sed -n -i '/rm.*firstrun\\.sh$/q;p' /run/imager_fixup/firstrun.sh" in _edits()
    assert _tail() == "rm -f /boot/firmware/firstrun.sh\nsed -i 's| systemd\\.[^ ]*||g' /boot/firmware/cmdline.txt\nexit 0\n"


@pytest.mark.parametrize(("name", "node"), CASES, ids=IDS)
def test_the_fixup_does_not_fire_on_piimg_cards(monkeypatch: pytest.MonkeyPatch, name: str, node: str) -> None:
    _, cmdline = render(monkeypatch, name, node)
    proc = subprocess.run(["grep", "-q", _trigger_pattern()], input=cmdline, capture_output=True)
    assert proc.returncode == 1, f"imager_fixup would rewrite this card: {cmdline!r}"
    assert b"systemd.run=/boot/firmware/firstrun.sh" in cmdline


@pytest.mark.parametrize(("name", "node"), CASES, ids=IDS)
def test_nothing_of_firstrun_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, node: str) -> None:
    script, cmdline = render(monkeypatch, name, node)
    (tmp_path / "firstrun.sh").write_bytes(script)
    (tmp_path / "cmdline.txt").write_bytes(cmdline)
    if shutil.which("shellcheck"):  # (in the Makefile's APT_PACKAGES: CI has it)
        proc = subprocess.run(["shellcheck", "-s", "sh", str(tmp_path / "firstrun.sh")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
    apply_fixup(tmp_path)
    after = (tmp_path / "firstrun.sh").read_bytes()
    assert after == script + _tail().encode(), "imager_fixup cut piimg's firstrun.sh short"
    subprocess.run(["sh", "-n", str(tmp_path / "firstrun.sh")], check=True)
    # the fixup's /boot/ -> /boot/firmware/ rewrite and its appended sed leave the cmdline usable
    words = (tmp_path / "cmdline.txt").read_text().split()
    assert "cgroup_memory=1" in words and "cgroup_enable=memory" in words
    assert piosfacts.cmdline("bookworm", "5e3da0c1").split()[0] in words


def test_the_check_catches_a_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: a line ending in the script's name (as an unquoted rm would) is where the fixup cuts."""
    script, cmdline = render(monkeypatch, "keys", "m1")
    lines = script.decode().splitlines(keepends=True)
    broken = "".join(lines[:20]) + "# then rm firstrun.sh\n" + "".join(lines[20:])
    (tmp_path / "firstrun.sh").write_text(broken)
    (tmp_path / "cmdline.txt").write_bytes(cmdline)
    apply_fixup(tmp_path)
    assert (tmp_path / "firstrun.sh").read_text() == "".join(lines[:20]) + _tail()
