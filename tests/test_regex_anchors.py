"""Every pattern check matches the whole value (issue 16, item 1), enforced on the source.

``re.match(r"^...$", value)`` accepts ``value + "\\n"``: ``$`` also matches before a
final newline (Python ``re`` docs, "$"). That is how ``hostname: "k8s-master\\n"``
once reached a file name and a shell script. The rule here, for all of piimg/:

* no regular expression ends in ``$``: check a whole value with ``fullmatch``,
  an end of text with ``\\Z``;
* a module-level compiled pattern without a leading ``^`` is never used with
  ``.match`` (a prefix test that reads like a whole-value check): use ``fullmatch``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import piimg

ROOT = Path(piimg.__file__).parent
RE_FUNCS = {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


def _sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _pattern_literal(call: ast.Call) -> str | None:
    func = call.func
    if (isinstance(func, ast.Attribute) and func.attr in RE_FUNCS and isinstance(func.value, ast.Name)
            and func.value.id == "re" and call.args and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str)):
        return call.args[0].value
    return None


def _ends_with_dollar(pattern: str) -> bool:
    if not pattern.endswith("$"):
        return False
    backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    return backslashes % 2 == 0  # an escaped \$ is a literal dollar sign


def violations(source: str, name: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    unanchored: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            pattern = _pattern_literal(node.value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if pattern is not None and not pattern.startswith("^"):
                unanchored |= {t.id for t in targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        pattern = _pattern_literal(node)
        if pattern is not None and _ends_with_dollar(pattern):
            found.append(f"{name}:{node.lineno}: pattern ends in $ (matches before a final newline): {pattern!r}")
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "match" and isinstance(func.value, ast.Name)
                and func.value.id in unanchored):
            found.append(f"{name}:{node.lineno}: {func.value.id}.match() of an unanchored pattern: use fullmatch")
    return found


def test_the_checker_finds_both_mistakes() -> None:
    bad = (
        "import re\n_A = re.compile(r'[a-z]+')\n"
        "def f(v):\n    return re.match(r'^[a-z]+$', v) or _A.match(v) or re.search(r'x\\$', v)\n"
    )
    assert [v.split(": ", 1)[1] for v in violations(bad, "m.py")] == [
        "pattern ends in $ (matches before a final newline): '^[a-z]+$'",
        "_A.match() of an unanchored pattern: use fullmatch",
    ]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_patterns_match_whole_values(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))) == []
