"""Every YAML file piimg reads reports a syntax error the same way: ``file:line:column``
and the problem in words (:func:`piimg.spec.yamlload.describe`). The spec also quotes the
offending line with a caret; the files that hold secrets (secrets.yaml,
node-passwords.yaml, kubeconfigs) never do, so a broken one cannot print a token or key.

The broken texts and the positions are PyYAML's: the scanner refuses a second
``: `` on one line ("mapping values are not allowed here") at the second
colon; an unclosed quote is reported where the quote starts (the context
mark) when the scanner reaches the end of the stream; a key indented less than
its mapping's keys ends the block there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from piimg.errors import ConfigError, FileError
from piimg.identity import store
from piimg.identity.store import NodeName
from piimg.spec import load as spec_load
from piimg.spec import secrets
from piimg.spec.yamlload import describe
from piimg.status import kubeconfig as kcfg
from piimg.status.ssh import SshTarget
from tests.conftest import TEST_KEY
from tests.sshd import start_sshd

BROKEN = [
    # (text, line, column (1-based), words of the sentence)
    ("k3s_token: a: b\n", 1, 13, "a second ': ' on one line"),
    ("k8s-master: \"abc\n", 1, 13, "a quote that is never closed"),
    ("a:\n  b: 1\n c: 2\n", 3, 2, "this line is indented 1 spaces"),
]


def _secrets(path: Path) -> None:
    secrets.load_or_create(path)


def _node_passwords(path: Path) -> None:
    store.load_or_create(path.parent, [NodeName("k8s-master", "127.0.2.10")])


def _kubeconfig(path: Path) -> None:
    kcfg.write({"clusters": [], "users": [], "contexts": [], "current-context": "x"}, path, merge_into_existing=True)


READERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "secrets.yaml": ("secrets.yaml", _secrets),
    "node-passwords.yaml": (store.NODE_PASSWORDS, _node_passwords),
    "kubeconfig (merge)": ("config", _kubeconfig),
}


@pytest.mark.parametrize(("text", "line", "column", "words"), BROKEN)
@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_names_the_position_and_never_quotes_the_line(tmp_path: Path, reader: str, text: str, line: int,
                                                             column: int, words: str) -> None:
    name, read = READERS[reader]
    state = tmp_path / ".piimg"
    if reader == "node-passwords.yaml":
        store.load_or_create(state, [NodeName("k8s-master", "127.0.2.10")])  # a complete store, then break one file
    state.mkdir(mode=0o700, exist_ok=True)
    path = state / name
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(FileError) as info:
        read(path)
    err = info.value
    assert err.path == f"{path}:{line}:{column}"
    assert err.message.startswith(f"{path}:{line}:{column}: not valid YAML"), err.message
    assert words in err.message and "\n" not in err.message
    # the same position and words as a spec with this text gets; the spec alone quotes the line
    with pytest.raises(ConfigError) as spec_err:
        spec_load.loads(text, file="piimg.yaml")
    assert spec_err.value.message.startswith(f"piimg.yaml:{line}:{column}: YAML syntax error: {words}")
    quoted = spec_err.value.context
    assert quoted is not None and quoted.splitlines()[-1].endswith(" " * (column - 1) + "^")
    assert err.context is None
    offending = text.splitlines()[line - 1].strip()
    assert offending not in err.message and offending not in (err.hint or ""), err
    assert path.read_text() == text  # never replaced


def test_an_error_without_a_position_names_the_file() -> None:
    # PyYAML's reader refuses a NUL character before the scanner gives any position
    with pytest.raises(yaml.YAMLError) as info:
        yaml.safe_load("a: \x00\n")
    problem = describe(info.value, "a: \x00\n", "f.yaml")
    assert problem.where == "f.yaml" and "special characters are not allowed" in problem.sentence
    assert problem.quoted is None


@pytest.mark.integration
def test_a_fetched_kubeconfig_names_host_path_and_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's k3s.yaml, read over SSH (a real sshd on 127.0.0.1, tests/sshd.py)."""
    sshd = start_sshd(tmp_path / "sshd")
    try:
        monkeypatch.setenv("PIIMG_SSH_CONFIG", str(sshd.client_config))
        remote = tmp_path / "k3s.yaml"
        remote.write_text('apiVersion: v1\nclusters: [\n  {name: "default}\n')
        spec = spec_load.loads(f'access:\n  ssh_authorized_keys: ["{TEST_KEY}"]\n', env={})
        with pytest.raises(FileError) as info:
            kcfg.fetch(spec, SshTarget("127.0.0.1", "root", sshd.port), remote_path=str(remote))
    finally:
        sshd.stop()
    where = f"127.0.0.1:{remote}:3:10"
    assert info.value.path == where
    assert info.value.message == f"{where}: not valid YAML (a quote that is never closed)"
    assert info.value.context is None and "default" not in info.value.message
