"""A build's shared layer: written once, composed under every node, refused when gone or changed.

The reference for a node's image is the full image ``piimg build
--full-images`` writes for it (SOURCE_DATE_EPOCH makes both builds use the
same FAT timestamps); the composed boot partitions are judged by fsck.vfat and
mtools, and the k3s binary read back by mtools is compared with the bytes the
test's release server published, never with what piimg read.
Only files and loop devices these tests create are written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from piimg import versions
from piimg.image import blockmap
from tests.conftest import run_ok
from tests.flashfixtures import PATTERN, Loop, assert_own_loop, make_loop, pattern_at, prefill, read_at
from tests.flashfixtures import TWO_NODE_SPEC as TWO_NODES
from tests.imagegen import GeneratedImage, MiB, extract_partition, make_image, tools_available
from tests.releaseserver import Published

__all__ = ["make_loop"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tools_available(), reason="needs dosfstools, mtools, e2fsprogs"),
]

NODES = ("k8s-master", "k8s-agent-1", "k8s-agent-2")
SPEC = TWO_NODES + "  - {hostname: k8s-agent-2, role: agent, address: 10.0.2.12}\n"
CARD = 256 * MiB


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    return make_image(tmp_path_factory.mktemp("base") / "pi.img", boot_mib=64, root_mib=120, root_fill_mib=16)


@pytest.fixture()
def release(k3s_release: Published, project: Path, monkeypatch: pytest.MonkeyPatch) -> Published:
    (project / "piimg.yaml").write_text(SPEC + k3s_release.cluster_yaml())
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764720000")  # 2025-12-03: both builds stamp the same FAT times
    return k3s_release


def _k3s_binary(release: Published) -> bytes:
    return release.rel.files[release.rel.url(versions.K3S_ARCHES["arm64"].binary)]


def _shared(project: Path, out: str = "build") -> list[Path]:
    return sorted((project / out).glob("shared-*.layer"))


def _ok(r: Any) -> Any:
    assert r.exit_code == 0, r
    return r


def test_composed_nodes_equal_the_full_images(base: GeneratedImage, project: Path, piimg: Any, release: Published,
                                              tmp_path: Path) -> None:
    _ok(piimg("build", "--image", str(base.path)))
    _ok(piimg("build", "--image", str(base.path), "--full-images", "-o", "full"))
    (shared,) = _shared(project)
    k3s = _k3s_binary(release)
    # the k3s binary is in the shared layer once, and in no node's layer
    assert shared.read_bytes().count(k3s) == 1
    last = json.loads((project / "build" / "last.json").read_text())
    for node in NODES:
        layer = (project / "build" / f"{node}.overlay").read_bytes()
        assert k3s not in layer and len(layer) < shared.stat().st_size
        assert last["nodes"][node]["image"] == str(project / "full" / f"{node}.img")  # the later build
    for node in NODES:
        composed = tmp_path / f"{node}.img"
        r = _ok(piimg("export", str(project / "build" / f"{node}.overlay"), "-o", str(composed)))
        assert f"wrote {composed}" in r.stdout
        assert composed.read_bytes() == (project / "full" / f"{node}.img").read_bytes(), node
        boot = extract_partition(composed, base.boot_offset, base.boot_size, tmp_path / f"{node}.boot")
        run_ok(["fsck.vfat", "-n", str(boot)])
        assert json.loads(run_ok(["mtype", "-i", str(boot), "::piimg/node.json"]).stdout)["hostname"] == node
        out = tmp_path / f"{node}-k3s"
        run_ok(["mcopy", "-n", "-i", str(boot), "::piimg/k3s/k3s", str(out)])
        assert out.read_bytes() == k3s
        manifests = run_ok(["mdir", "-b", "-i", str(boot), "::piimg"]).stdout
        assert ("manifests" in manifests) is (node == "k8s-master")


def test_a_missing_or_changed_shared_layer_is_refused_before_writing(base: GeneratedImage, project: Path, piimg: Any,
                                                                    release: Published, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _ok(piimg("build", "--image", str(base.path)))
    (shared,) = _shared(project)
    node = project / "build" / "k8s-agent-1.overlay"
    target = tmp_path / "card.img"
    prefill(target, CARD)
    kept = tmp_path / "kept.layer"
    shared.rename(kept)
    server = project / "build" / "k8s-master.overlay"  # flash --all checks every node first, the server first
    for args, named in ((("flash", str(node), str(target), "--yes", "--force"), node),
                        (("export", str(node), "-o", str(tmp_path / "x.img")), node),
                        (("flash", "--all", "--yes", "--expect-size", "256M"), server)):
        r = piimg(*args)
        assert r.exit_code != 0, (args, r)
        assert r.stderr.splitlines()[0] == f"error: {named}: its shared layer {shared} is missing", (args, r.stderr)
    # a damaged copy, and a valid shared layer of another build under its name
    data = bytearray(kept.read_bytes())
    data[-1] ^= 1
    shared.write_bytes(bytes(data))
    r = piimg("flash", str(node), str(target), "--yes", "--force")
    assert r.exit_code != 0 and r.stderr.startswith(f"error: {shared}: not a usable piimg overlay"), r.stderr
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764806400")  # another day: another shared layer
    _ok(piimg("build", "--image", str(base.path), "--node", "k8s-master", "-o", "other"))
    (other,) = _shared(project, "other")
    shared.write_bytes(other.read_bytes())
    r = piimg("flash", str(node), str(target), "--yes", "--force")
    assert r.exit_code != 0, r
    assert r.stderr.splitlines()[0] == f"error: {shared}: not the shared layer {node} was built on (SHA-256 differs)"
    assert read_at(target, 0, 4096) == PATTERN and not (tmp_path / "x.img").exists()
    # the shared layer on its own is no node's image
    kept.rename(shared)
    r = piimg("flash", str(shared), str(target), "--yes", "--force")
    assert r.exit_code != 0 and "is the layer shared by the nodes of a build" in r.stderr, r
    assert read_at(target, 0, 4096) == PATTERN
    # a build folder moved as a whole: the shared layer is found beside the node layer
    moved = tmp_path / "moved"
    (project / "build").rename(moved)
    exported = tmp_path / "moved.img"
    _ok(piimg("export", str(moved / "k8s-agent-1.overlay"), "-o", str(exported)))
    boot = extract_partition(exported, base.boot_offset, base.boot_size, tmp_path / "moved.boot")
    run_ok(["fsck.vfat", "-n", str(boot)])


def test_unused_shared_layers_are_removed_only_when_nothing_names_them(base: GeneratedImage, project: Path, piimg: Any,
                                                                      release: Published,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _ok(piimg("build", "--image", str(base.path)))
    (first,) = _shared(project)
    # the same inputs and time: the same shared layer, kept as it is
    before = first.stat().st_mtime_ns
    _ok(piimg("build", "--image", str(base.path), "--node", "k8s-agent-2"))
    assert _shared(project) == [first] and first.stat().st_mtime_ns == before
    # a later build of one node: the other nodes still need the first layer
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764806400")
    _ok(piimg("build", "--image", str(base.path), "--node", "k8s-master"))
    second = [p for p in _shared(project) if p != first]
    assert len(second) == 1 and first.exists()
    last = json.loads((project / "build" / "last.json").read_text())
    assert last["nodes"]["k8s-master"]["shared"] == str(second[0])
    assert last["nodes"]["k8s-agent-1"]["shared"] == str(first)
    # every node rebuilt: neither older layer is named any more
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764892800")
    r = _ok(piimg("build", "--image", str(base.path)))
    (third,) = _shared(project)
    assert third not in (first, *second)
    assert f"removed {first.name}" in r.stderr and f"removed {second[0].name}" in r.stderr
    # full images name no shared layer; the overlays still in build/ keep theirs
    _ok(piimg("build", "--image", str(base.path), "--full-images"))
    assert _shared(project) == [third]


def test_flash_all_composed_nodes_to_loop_devices(base: GeneratedImage, project: Path, piimg: Any, release: Published,
                                                  tmp_path: Path, make_loop: Any) -> None:
    """Each node, composed from base + shared + its layer, read back from a loop device the test made."""
    _ok(piimg("build", "--image", str(base.path)))
    _ok(piimg("build", "--image", str(base.path), "--full-images", "-o", "full"))
    _ok(piimg("build", "--image", str(base.path)))  # last.json names the overlays again
    for node in ("k8s-master", "k8s-agent-2"):
        loop: Loop = make_loop(CARD)
        assert_own_loop(loop)
        r = _ok(piimg("flash", "--node", node, loop.device, "--yes", "--force"))
        assert "verified in" in r.stdout
        full = project / "full" / f"{node}.img"
        bmap = blockmap.compute_for(full)
        for rng in bmap.ranges:
            assert read_at(loop.device, rng.start, rng.length) == read_at(full, rng.start, rng.length), rng
        for rng in bmap.free_ranges():
            assert read_at(loop.device, rng.start, rng.length) == pattern_at(rng.start, rng.length), rng
        boot = extract_partition(Path(loop.device), base.boot_offset, base.boot_size, tmp_path / f"{node}.boot")
        run_ok(["fsck.vfat", "-n", str(boot)])
        out = tmp_path / f"{node}-k3s"
        run_ok(["mcopy", "-n", "-i", str(boot), "::piimg/k3s/k3s", str(out)])
        assert out.read_bytes() == _k3s_binary(release)



def test_a_rebuild_with_the_same_inputs_keeps_the_shared_layer(base: GeneratedImage, project: Path, piimg: Any,
                                                               release: Published,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SOURCE_DATE_EPOCH the node files carry the build's time, the shared files their sources' times."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    _ok(piimg("build", "--image", str(base.path)))
    (shared,) = _shared(project)
    before = (shared.stat().st_mtime_ns, (project / "build" / "k8s-agent-1.overlay").read_bytes())
    later = time.time() + 7 * 86400
    monkeypatch.setattr(time, "time", lambda: later)  # a week later: other FAT times for the node files
    _ok(piimg("build", "--image", str(base.path), "--node", "k8s-agent-1"))
    assert _shared(project) == [shared] and shared.stat().st_mtime_ns == before[0]
    assert (project / "build" / "k8s-agent-1.overlay").read_bytes() != before[1]
