from __future__ import annotations

from pathlib import Path

from piimg.spec import load as spec_load


def test_init_then_validate(project: Path, piimg) -> None:
    r = piimg("init")
    assert r.exit_code == 0, r
    assert (project / "piimg.yaml").exists()
    r = piimg("validate")
    assert r.exit_code == 0, r
    assert "k8s-master" in r.stdout and "10.0.2.10" in r.stdout
    assert "10.0.4.0/23" in r.stdout


def test_init_refuses_overwrite(project: Path, piimg) -> None:
    assert piimg("init").exit_code == 0
    r = piimg("init")
    assert r.exit_code != 0
    assert "already exists" in r.stderr
    assert piimg("init", "--force").exit_code == 0


def test_default_file_equals_builtin_defaults(project: Path, piimg) -> None:
    piimg("init")
    loaded = spec_load.load(project / "piimg.yaml")
    defaults = spec_load.parse({}, home=Path.home())
    assert loaded == defaults


def test_init_onto_a_directory(project: Path, piimg) -> None:
    (project / "piimg.yaml").mkdir()
    r = piimg("init", "--force")
    assert r.exit_code == 1 and r.stderr.startswith("error: piimg.yaml: is a directory"), r
    assert "internal error" not in r.stderr
    assert sorted(p.name for p in project.iterdir()) == ["piimg.yaml"]  # no temp file left
