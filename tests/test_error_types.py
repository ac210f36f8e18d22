"""Each failure comes as its own type (piimg/errors.py), raised by the real situation, so
callers decide on the type and never on the words of a message or hint."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import click
import jinja2
import pytest
from click.testing import CliRunner

from piimg.build import lastbuild
from piimg.build.images import build_timestamp
from piimg.cli import common
from piimg.cli.common import App
from piimg.cli.flash_cmd import pick_device
from piimg.errors import ConfigError, FileError, LastBuildError, NoTarget, NotConfirmed, RenderError, from_os_error
from piimg.flash.devices import LinuxDevices
from piimg.manifests import env
from piimg.manifests.addons import check_addon_names, render_addons
from piimg.paths import ProjectPaths
from piimg.router.setup import export_frr, export_script
from piimg.spec import load as spec_load
from piimg.spec.model import Spec
from tests.conftest import TEST_KEY
from tests.devicefakes import DATA, FakeUmount, build_sysfs

# ------------------------------------------------------------------ FileError


def test_an_os_error_becomes_a_file_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(OSError) as info:
        missing.read_text()
    err = from_os_error(info.value)
    assert isinstance(err, FileError) and err.path == str(missing)
    assert err.message == f"{missing}: No such file or directory"


@pytest.mark.parametrize("export", [export_frr, export_script])
def test_export_into_a_missing_folder(tmp_path: Path, export: Any) -> None:
    dest = tmp_path / "missing" / "router.conf"
    with pytest.raises(FileError) as info:
        if export is export_frr:
            export(Spec(), dest)
        else:
            export(Spec(), dest, password=lambda: pytest.fail("no router is asked before the folder is checked"))
    assert info.value.path == str(dest.parent) and "--export" in info.value.message
    assert not dest.parent.exists()


def test_init_onto_an_existing_spec(project: Path, piimg: Any) -> None:
    (project / "piimg.yaml").write_text("# mine\n")
    r = piimg("init")
    assert r.exit_code == 1 and r.stderr.startswith("error: piimg.yaml: already exists\n"), r
    assert (project / "piimg.yaml").read_text() == "# mine\n"


# ------------------------------------------------------------------ RenderError


def test_a_template_without_its_values() -> None:
    with pytest.raises(RenderError, match=r"^template firstrun\.sh\.j2: 'hostname' is undefined"):
        env.render("firstrun.sh.j2")


@pytest.mark.parametrize("template", ["meta-data.j2", "metallb-config.yaml.j2"])
def test_an_undefined_value_through_to_yaml_is_a_render_error(template: str) -> None:
    """StrictUndefined holds inside the filters too: not yaml's RepresenterError (an internal error)."""
    with pytest.raises(RenderError, match=rf"^template {re.escape(template)}: '\w+' is undefined$"):
        env.render(template)
    with pytest.raises(RenderError, match=r"^template meta-data\.j2: 'hostname' is undefined$"):
        env.render("meta-data.j2", instance_id="i-1")


def test_an_undefined_value_inside_a_list_or_mapping_fails_in_the_filters_too() -> None:
    """user-data.j2 builds argv lists in the template (``[..., keymap] | to_json``)."""
    filters = env.environment().filters
    missing = env.environment().undefined(name="keymap")
    for name, value in (("to_json", ["sh", "-c", missing]), ("to_yaml", {"key": missing}), ("to_yaml", missing)):
        with pytest.raises(jinja2.UndefinedError, match=r"^'keymap' is undefined$"):
            filters[name](value)
    assert filters["to_json"](["sh", "-c", "x"]) == '["sh", "-c", "x"]'


def test_addon_names_k3s_would_refuse() -> None:
    with pytest.raises(RenderError, match=r"manifest traefik\.yaml: 'traefik' is the name of a k3s packaged component"):
        check_addon_names(["traefik.yaml"])


def test_manifests_with_a_chart_that_was_not_fetched() -> None:
    spec = spec_load.loads(f"access:\n  ssh_authorized_keys: [\"{TEST_KEY}\"]\n", env={})
    with pytest.raises(RenderError, match=r"^chart metallb: not among the fetched chart archives"):
        render_addons(spec, charts={})


# ------------------------------------------------------------------ NoTarget, NotConfirmed


def _fake_laptop(root: Path) -> LinuxDevices:
    """The fake laptop of tests/devicefakes.py (a recorded /sys and /dev tree)."""
    sysfs, dev = build_sysfs(root)
    mountinfo = root / "mountinfo"
    shutil.copy(DATA / "linux" / "mountinfo", mountinfo)
    return LinuxDevices(sysfs_root=sysfs, mountinfo=mountinfo, dev_root=dev, swaps=DATA / "linux" / "swaps",
                        runner=FakeUmount(mountinfo))


def test_no_disk_to_offer(tmp_path: Path, project: Path) -> None:
    """An image larger than any disk of the fake laptop."""
    devices = _fake_laptop(tmp_path / "machine")
    assert devices.disks()  # the laptop has disks: each is refused, none is missing
    with pytest.raises(NoTarget, match="no disk piimg could write is attached"):
        pick_device(App(paths=ProjectPaths.for_spec(None)), devices, 1 << 50)


def test_no_answer_on_a_pipe_is_not_confirmed() -> None:
    @click.command()
    def ask() -> None:
        common.confirm("apply?", nothing_done="nothing was changed")

    result = CliRunner().invoke(ask, [], input="")  # stdin is a pipe at its end, not a terminal
    assert isinstance(result.exception, NotConfirmed), result.exception
    assert "no answer to 'apply?' (stdin is not a terminal); nothing was changed" in str(result.exception)


# ------------------------------------------------------------------ LastBuildError


def _save_last_build(project: Path, image: Path) -> None:
    base = lastbuild.BaseRef(path="/b.img", sha256="0" * 64, name="b", init_format="systemd")
    node = lastbuild.NodeImage(image=str(image), size=1, role="server", address="127.0.2.10", init_format="systemd",
                               kind="image")
    lastbuild.save(ProjectPaths.for_spec(None).last_build,
                   lastbuild.LastBuild(built_at="2026-12-03T10:00:00Z", spec=str(project / "piimg.yaml"), base=base,
                                       nodes={"m1": node}))


def test_flash_nodes_not_in_the_last_build(project: Path, piimg: Any, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    laptop = _fake_laptop(tmp_path / "machine")
    monkeypatch.setattr("piimg.cli.flash_cmd.for_this_machine", lambda: laptop)
    _save_last_build(project, project / "build" / "m1.img")
    r = piimg("flash", "--nodes", "x1")
    assert r.exit_code == 1 and r.stderr.startswith("error: --nodes: x1 not in the last build (built: m1)"), r
    r = piimg("flash", "--nodes", "m1")  # listed, but its file is gone
    assert r.exit_code == 1 and f"{project / 'build' / 'm1.img'}: no such file (node m1)" in r.stderr, r


def test_export_of_a_node_the_last_build_does_not_have(project: Path, piimg: Any) -> None:
    image = project / "build" / "m1.img"
    _save_last_build(project, image)
    r = piimg("export", "x1", "-o", "out.img")
    assert r.exit_code == 1 and r.stderr.startswith("error: x1: not in the last build (built: m1)"), r
    r = piimg("export", "m1", "-o", "out.img")
    assert r.exit_code == 1 and r.stderr.startswith(f"error: m1: was built as a full image already: {image}"), r
    assert not os.path.exists("out.img")


def test_a_damaged_last_build_is_a_last_build_error(project: Path) -> None:
    path = ProjectPaths.for_spec(None).last_build
    path.parent.mkdir()
    path.write_text("{")
    with pytest.raises(LastBuildError):
        lastbuild.load(path)


# ------------------------------------------------------------------ ConfigError outside the spec


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5"])
def test_a_source_date_epoch_that_is_not_seconds(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(ConfigError) as info:
        build_timestamp()
    assert info.value.key == "SOURCE_DATE_EPOCH"
    assert info.value.message == f"SOURCE_DATE_EPOCH: {value!r} is not a number of seconds since 1970"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764720000")  # reproducible-builds.org: a decimal count of seconds
    assert build_timestamp() == 1764720000.0
