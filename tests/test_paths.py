"""One project layout (piimg/paths.py): the CLI's ``ProjectPaths`` and the loaded spec's
``spec.paths`` are the same object, whatever the current folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from piimg.errors import ConfigError
from piimg.paths import ProjectPaths
from piimg.spec import load as spec_load
from tests.conftest import TEST_KEY

SPEC = f'access:\n  ssh_authorized_keys: ["{TEST_KEY}"]\n'


def test_a_spec_file_in_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "lab"
    project.mkdir()
    (project / "lab.yaml").write_text(SPEC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    given = Path("..") / "lab" / "lab.yaml"
    spec = spec_load.load(given, env={})
    assert spec.paths == ProjectPaths.for_spec(given)
    assert spec.paths.spec == given and spec.paths.root == project
    assert spec.paths.build_dir == project / "build"
    assert spec.paths.last_build == project / "build" / "last.json"
    assert spec.paths.flashed == project / "build" / "flashed.json"
    assert spec.paths.secrets == project / ".piimg" / "secrets.yaml"


def test_spec_text_belongs_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = spec_load.loads(SPEC, env={})
    assert spec.paths.root == tmp_path and spec.paths.build_dir == tmp_path / "build"
    other = spec_load.loads(SPEC, env={}, paths=ProjectPaths.in_folder(tmp_path / "p"))
    assert other.paths.last_build == tmp_path / "p" / "build" / "last.json"


def test_a_relative_ca_file_is_relative_to_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "lab"
    project.mkdir()
    (project / "ca.pem").write_text("not checked here, only found\n")
    (project / "piimg.yaml").write_text(SPEC + "router:\n  ca_file: ca.pem\n")
    monkeypatch.chdir(tmp_path)
    assert spec_load.load(project / "piimg.yaml", env={}).router.ca_file == "ca.pem"  # found beside the spec
    (project / "ca.pem").unlink()
    with pytest.raises(ConfigError, match=r"router\.ca_file: ca\.pem: no such file"):
        spec_load.load(project / "piimg.yaml", env={})
