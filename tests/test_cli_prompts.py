"""Questions and refusals read the same everywhere (usability audit S15).

A deliberate no is not an error (exit 0, what was not done), anything else
than y/n is asked again in piimg's words, Ctrl-C at a question ends the line
and exits 130, and the flash question says what the card holds now: its
partitions with label, file system and size, read from the card itself.

The cards are files the tests create, holding images made by the real mkfs
tools (tests/imagegen.py: ``mkfs.vfat -n bootfs``, ``mkfs.ext4 -L rootfs``);
the prompts run on a real pseudo-terminal where it matters (tests/ptyrun.py).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import have
from tests.imagegen import GeneratedImage, MiB, make_image, tools_available
from tests.ptyrun import PtyProcess, piimg_argv

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (tools_available() and have("sfdisk")), reason="needs dosfstools, mtools, e2fsprogs, fdisk"),
]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    return make_image(tmp_path_factory.mktemp("img") / "pi.img", boot_mib=48, root_mib=64)


@pytest.fixture(scope="module")
def old_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A card flashed before: Raspberry Pi OS's layout, bootfs 64 MiB, rootfs 96 MiB."""
    return make_image(tmp_path_factory.mktemp("card") / "old.img", boot_mib=64, root_mib=96, seed=2).path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _card(old_card: Path, tmp_path: Path) -> Path:
    card = tmp_path / "card.img"
    card.write_bytes(old_card.read_bytes())
    return card


def test_flash_question_says_what_is_lost_asks_again_and_a_no_is_not_an_error(
        image: GeneratedImage, old_card: Path, tmp_path: Path, project: Path) -> None:
    card = _card(old_card, tmp_path)
    before = _digest(card)
    with PtyProcess(piimg_argv("flash", str(image.path), str(card), "--force"), cwd=project) as p:
        question = f"Overwrite {card}? Everything on it will be lost [y/N]: "
        p.expect(question)
        p.send(b"yes please\r")
        p.expect("please answer y or n")
        p.send(b"n\r")
        rc, screen = p.finish()
    assert rc == 0, screen
    assert "it holds: bootfs (FAT32, 64.0 MiB), rootfs (ext4, 96.0 MiB)" in screen, screen
    assert screen.count(question) == 2, screen
    assert "please answer y or n (not 'yes please')" in screen
    assert f"not flashed; nothing was written to {card}" in screen
    assert "Error" not in screen and "error:" not in screen
    assert _digest(card) == before


def test_ctrl_c_at_the_flash_question_ends_the_line_and_exits_130(
        image: GeneratedImage, old_card: Path, tmp_path: Path, project: Path) -> None:
    card = _card(old_card, tmp_path)
    before = _digest(card)
    with PtyProcess(piimg_argv("flash", str(image.path), str(card), "--force"), cwd=project) as p:
        p.expect("[y/N]: ")
        p.wait_reading()
        p.send(b"\x03")  # the terminal turns it into SIGINT, as the keyboard does
        rc, screen = p.finish()
    assert rc == 130, screen
    after = screen.split("[y/N]: ", 1)[1]
    # the terminal echoes ^C; piimg starts a new line before it says anything
    assert re.fullmatch(r"(\^C)?\r\n(\r\n)?interrupted\r\n", after), repr(after)
    assert _digest(card) == before


def test_an_empty_card_is_said_to_hold_no_partition_table(image: GeneratedImage, tmp_path: Path, project: Path,
                                                           piimg: Any) -> None:
    card = tmp_path / "blank.img"
    with open(card, "wb") as fh:
        fh.truncate(256 * MiB)
    r = piimg("flash", str(image.path), str(card), "--force", input="\n")  # Enter: the default, no
    assert r.exit_code == 0, r
    assert "it holds: no partition table (empty, or data piimg cannot name)" in r.stderr
    assert f"not flashed; nothing was written to {card}" in r.stderr
    assert os.path.getsize(card) == 256 * MiB and card.read_bytes()[:512] == bytes(512)


def test_ctrl_c_at_the_router_password_prompt_ends_the_line_and_exits_130(project: Path) -> None:
    from tests.conftest import TEST_KEY

    (project / "piimg.yaml").write_text(
        f'access:\n  ssh_authorized_keys: ["{TEST_KEY}"]\nrouter:\n  host: 127.0.0.1\n  port: 1\n  tls: false\n')
    env = {k: v for k, v in os.environ.items() if k != "PIIMG_ROUTER_PASSWORD"}
    with PtyProcess(piimg_argv("router-setup", "--dry-run"), cwd=project, env=env) as p:
        p.expect("RouterOS password for admin@127.0.0.1: ")
        p.wait_reading()
        p.send(b"\x03")
        rc, screen = p.finish()
    assert rc == 130, screen
    after = screen.split("RouterOS password for admin@127.0.0.1: ", 1)[1]
    assert re.fullmatch(r"(\^C)?\r\n(\r\n)?interrupted\r\n", after), repr(after)
