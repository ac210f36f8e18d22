"""Flashing a node built as an overlay: base + overlay composed while writing.

The reference for what must land on the card is the node's full image as
``piimg export`` writes it (checked against plain file writes in
tests/test_overlay.py, and with fsck.vfat/mtools in tests/test_build.py).
Only files and loop devices these tests create are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from piimg.image import blockmap
from tests.conftest import run_ok
from tests.flashfixtures import (
    CARD,
    PATTERN,
    TWO_NODE_SPEC,
    Loop,
    assert_own_loop,
    make_loop,
    pattern_at,
    prefill,
    read_at,
)
from tests.imagegen import GeneratedImage, make_image, tools_available
from tests.releaseserver import Published

__all__ = ["make_loop"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs"),
]


@pytest.fixture(autouse=True)
def spec(k3s_release: Published) -> str:
    """k3s and the charts come from a generated release behind a mirror on 127.0.0.1."""
    return TWO_NODE_SPEC + k3s_release.cluster_yaml()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    return make_image(tmp_path_factory.mktemp("base") / "pi.img", boot_mib=64, root_mib=160, root_fill_mib=24)


@pytest.fixture()
def built(base: GeneratedImage, project: Path, piimg: Any, spec: str) -> Path:
    (project / "piimg.yaml").write_text(spec)
    r = piimg("build", "--image", str(base.path))
    assert r.exit_code == 0, r
    assert (project / "build" / "k8s-master.overlay").is_file()
    r = piimg("export", "k8s-master", "-o", str(project / "k8s-master.img"))
    assert r.exit_code == 0, r
    return project / "k8s-master.img"


def check_card(full: Path, base: GeneratedImage, target: str | Path, tmp_path: Path) -> None:
    bmap = blockmap.compute_for(full)
    for r in bmap.ranges:
        assert read_at(target, r.start, r.length) == read_at(full, r.start, r.length), f"range {r}"
    for r in bmap.free_ranges():
        assert read_at(target, r.start, r.length) == pattern_at(r.start, r.length), f"free range {r} was written"
    boot = tmp_path / "boot.part"
    boot.write_bytes(read_at(target, base.boot_offset, base.boot_size))
    run_ok(["fsck.vfat", "-n", str(boot)])
    node = json.loads(run_ok(["mtype", "-i", str(boot), "::piimg/node.json"]).stdout)
    assert node["hostname"] == "k8s-master"
    run_ok(["e2fsck", "-fn", f"{target}?offset={base.root_offset}"])


def test_overlay_to_a_file(built: Path, base: GeneratedImage, project: Path, piimg: Any, tmp_path: Path) -> None:
    target = tmp_path / "card.img"
    prefill(target, CARD)
    r = piimg("flash", "--node", "k8s-master", str(target), "--yes", "--force")
    assert r.exit_code == 0, r
    assert "(block map from image: base pi.img + overlay)" in r.stderr and "verified in" in r.stdout
    assert "image:  k8s-master's overlay on pi.img" in r.stderr, r.stderr
    check_card(built, base, target, tmp_path)


def test_overlay_to_a_loop_device(built: Path, base: GeneratedImage, project: Path, piimg: Any, tmp_path: Path,
                                  make_loop: Any) -> None:
    loop: Loop = make_loop(CARD)
    assert_own_loop(loop)
    r = piimg("flash", str(project / "build" / "k8s-master.overlay"), loop.device, "--yes", "--force")
    assert r.exit_code == 0, r
    check_card(built, base, loop.device, tmp_path)


def test_a_changed_base_is_refused_before_anything_is_written(base: GeneratedImage, project: Path, piimg: Any,
                                                              tmp_path: Path, spec: str) -> None:
    mine = tmp_path / "mine.img"
    mine.write_bytes(base.path.read_bytes())
    (project / "piimg.yaml").write_text(spec)
    assert piimg("build", "--image", str(mine), "--node", "k8s-master").exit_code == 0
    with open(mine, "r+b") as fh:  # the user edits their base image after the build
        fh.seek(base.root_offset + 4096)
        fh.write(b"something else")
    target = tmp_path / "card.img"
    prefill(target, CARD)
    r = piimg("flash", "--node", "k8s-master", str(target), "--yes", "--force")
    assert r.exit_code == 1, r
    assert "is gone or changed" in r.stderr and "hint: run piimg build again" in r.stderr
    assert read_at(target, 0, 4096) == PATTERN
    r = piimg("flash", "--bmap", str(tmp_path / "card.img"), str(project / "build" / "k8s-master.overlay"),
              str(target), "--yes", "--force")
    assert r.exit_code == 1 and "piimg overlay" in r.stderr, r


def test_the_overlay_or_its_base_as_target_is_refused(built: Path, base: GeneratedImage, project: Path, piimg: Any) -> None:
    ovl = project / "build" / "k8s-master.overlay"
    before = ovl.read_bytes()
    r = piimg("flash", str(ovl), str(ovl), "--yes", "--force")
    assert r.exit_code == 3 and "overlay itself" in r.stderr, r
    r = piimg("flash", str(ovl), str(base.path), "--yes", "--force")
    assert r.exit_code == 3 and "base image itself" in r.stderr, r
    assert ovl.read_bytes() == before
