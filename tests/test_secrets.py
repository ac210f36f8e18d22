from __future__ import annotations

import stat
from pathlib import Path

import pytest

from piimg.errors import FileError
from piimg.spec.secrets import load_or_create


def test_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / ".piimg" / "secrets.yaml"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first.k3s_token) == 64
    assert load_or_create(path) == first


def test_world_readable_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(FileError, match="readable by other users"):
        load_or_create(path)


def test_damaged_file_is_an_error_not_a_new_token(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("other: 1\n")
    path.chmod(0o600)
    with pytest.raises(FileError, match="k3s_token is missing"):
        load_or_create(path)


def test_broken_yaml_is_one_line_with_the_position(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("k3s_token: [\n")
    path.chmod(0o600)
    with pytest.raises(FileError) as info:
        load_or_create(path)
    assert "\n" not in info.value.message
    assert info.value.message.startswith(f"{path}:2:1: not valid YAML: ")
    assert path.read_text() == "k3s_token: [\n"  # never replaced by a new token


def test_a_file_that_is_not_utf8_is_named_not_an_internal_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_bytes(b"k3s_token: ab\xffcd\n")
    path.chmod(0o600)
    with pytest.raises(FileError) as info:
        load_or_create(path)
    assert info.value.message == f"{path}: not UTF-8 text (byte 13: b'\\xff')"
    assert path.read_bytes() == b"k3s_token: ab\xffcd\n"  # never replaced by a new token
