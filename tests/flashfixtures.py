"""Loop devices that the tests create themselves, and checks that they are ours.

SAFETY: the only devices tests ever write to are loop devices set up here on
a file under the test's tmp_path, detached in teardown. Before any write the
test calls :func:`assert_own_loop`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

PATTERN = bytes(range(256)) * 16  # 4 KiB of a recognisable pre-fill

#: The size of the loop-device "cards" the flash tests write to.
CARD = 256 * 1024 * 1024

#: A two-node spec for the flash, overlay and station tests; last.json lists nodes by
#: name (k8s-agent-1 first), so the station test also sees that it starts with the server.
TWO_NODE_SPEC = f"""\
access:
  ssh_authorized_keys: ["{TEST_KEY}"]
image:
  arch: arm64
nodes:
  - {{hostname: k8s-master, role: server, address: 10.0.2.10}}
  - {{hostname: k8s-agent-1, role: agent, address: 10.0.2.11}}
"""


@dataclass(frozen=True)
class Loop:
    device: str
    backing: Path



def read_at(path: str | Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def pattern_at(offset: int, length: int) -> bytes:
    """What :func:`prefill` left at ``offset``: the pre-fill a flash must not touch outside the block map."""
    start = offset % len(PATTERN)
    reps = (start + length) // len(PATTERN) + 1
    return (PATTERN * reps)[start : start + length]

def assert_own_loop(loop: Loop) -> None:
    """The device is a loop device and backed by the test's own file; anything else aborts the test."""
    assert re.fullmatch(r"/dev/loop\d+", loop.device), loop.device
    name = loop.device.removeprefix("/dev/")
    backing = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    assert backing == str(loop.backing.resolve()), (backing, loop.backing)


def prefill(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        for _ in range(size // len(PATTERN)):
            fh.write(PATTERN)


def loop_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "loop devices need root"
    if not shutil.which("losetup"):
        return "losetup is not installed (util-linux)"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control on this machine"
    return None


@pytest.fixture()
def make_loop(tmp_path: Path) -> Iterator[object]:
    """``make_loop(size)`` -> Loop on a pattern-filled file of its own; all detached afterwards."""
    why = loop_unavailable()
    if why:
        pytest.skip(why)
    made: list[Loop] = []

    def make(size: int, name: str = "card.bin") -> Loop:
        backing = tmp_path / name
        prefill(backing, size)
        proc = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"losetup -f failed here: {proc.stderr.strip()}")
        loop = Loop(proc.stdout.strip(), backing)
        made.append(loop)
        assert_own_loop(loop)
        return loop

    try:
        yield make
    finally:
        for loop in made:
            subprocess.run(["losetup", "-d", loop.device], capture_output=True)
