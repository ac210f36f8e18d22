"""Reading spec YAML safely: bounded, strict about duplicate keys, and with errors a person can act on.

A spec is a few kilobytes written by hand. What a hostile or broken one could
otherwise do, and the bound that stops it:

* a huge file (tens of MB take PyYAML's pure-Python parser many seconds):
  :data:`MAX_BYTES`, checked before the text is parsed;
* an alias bomb (a few hundred bytes of ``&a [*b, *b, ...]`` that expands to
  billions of values for anything that walks the result, or prints it): at
  most :data:`MAX_ALIASES` aliases, and at most :data:`MAX_VALUES` values with
  every alias expanded;
* deep nesting (``[[[[...]]]]``: PyYAML's composer recurses, and a
  RecursionError would surface as an internal error): at most
  :data:`MAX_DEPTH` levels;
* a key given twice in one mapping (PyYAML keeps the last one silently, so a
  second ``nodes:`` would drop the first list): an error naming the key and
  both lines.

YAML syntax errors quote the line with a caret under the column and say in
plain words what is wrong; the parser's own wording stays in the hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node

from piimg.errors import ConfigError

MAX_BYTES: Final = 256 * 1024
MAX_ALIASES: Final = 64
MAX_DEPTH: Final = 24
MAX_VALUES: Final = 20_000

_INT_TAG: Final = "tag:yaml.org,2002:int"


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with the bounds above, and without YAML 1.1 base-60 integers:
    PyYAML reads an unquoted, all-digit MAC such as ``12:34:56:12:34:56`` (or a
    time like ``11:22``) as a number."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._weight: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded

    def compose_node(self, parent: Node | None, index: int) -> Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(mark, f"more than {MAX_ALIASES} aliases (*name)",
                               "a spec needs few or none; a document built of nested aliases is refused")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(mark, f"nested more than {MAX_DEPTH} levels deep", "a spec is only a few levels deep")
            start = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            node: Node | None = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1
        if node is not None:
            self._weigh(node, start)
        return node

    def _weigh(self, node: Node, mark: yaml.Mark) -> None:
        """Count what ``node`` expands to (an alias counts as all it refers to), so that
        a few aliases nested in each other cannot stand for billions of values."""
        if id(node) in self._weight:  # an alias: the anchored node, weighed already
            return
        weight = 1
        if isinstance(node.value, list):
            for item in node.value:
                for child in item if isinstance(item, tuple) else (item,):
                    w = self._weight.get(id(child))
                    if w is None:
                        raise _Refused(mark, "an alias (*name) inside the value it refers to",
                                       "a value cannot contain itself")
                    weight += w
        if weight > MAX_VALUES:
            raise _Refused(mark, f"with its aliases (*name) expanded, this stands for more than {MAX_VALUES} values",
                           "a spec has a few hundred values; write them out instead of nesting aliases")
        self._weight[id(node)] = weight

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise _Refused(
                    key_node.start_mark,
                    f"the key {_short(key)!r} is given twice in one mapping (lines {first} and {line})",
                    "YAML keeps only the last one, silently: merge the two into one",
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _INT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)\Z"),
    list("-+0123456789"),
)


class _Refused(yaml.MarkedYAMLError):
    def __init__(self, mark: yaml.Mark, problem: str, hint: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


def _short(value: object, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_text(text: str, *, file: str | None = None) -> object:
    """Parse spec ``text`` into plain Python objects, within the bounds above."""
    name = file or "<string>"
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise ConfigError("", f"{name}: {size} bytes: a spec is at most {MAX_BYTES // 1024} KiB",
                          hint="is this the right file?", file=file)
    loader = _SpecLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise syntax_error(exc, text, file) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops this first
        raise ConfigError("", f"{name}: nested too deeply", file=file) from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{name}: YAML error: {_short(exc, 200)}", file=file) from None
    finally:
        loader.dispose()


# ---------------------------------------------------------------- syntax errors in words


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _previous(lines: list[str], index: int) -> str | None:
    for i in range(index - 1, -1, -1):
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            return lines[i]
    return None


def _key_column(line: str) -> int:
    """Where the key of ``line`` starts: after its indentation and any ``- ``."""
    col = _indent(line)
    while line[col : col + 2] == "- ":
        col += 2
        while line[col : col + 1] == " ":
            col += 1
    return col


def _explain(problem: str, context: str, lines: list[str], index: int, column: int) -> tuple[str, str | None]:
    """(plain sentence, what to do) for a PyYAML problem at ``lines[index]``."""
    line = lines[index] if 0 <= index < len(lines) else ""
    if "'\\t'" in problem or ("\t" in line[: max(column, 0) + 1] and "cannot start any token" in problem):
        return "a tab character: YAML indents with spaces only", "replace the tab with spaces"
    key_here = re.match(r" *[^\s:#'\"-][^:]*:", line)
    if problem.startswith(("expected <block end>", "could not find expected ':'")) or (
        "mapping values are not allowed" in problem and key_here and column == key_here.end() - 1
    ):
        above = _previous(lines, index)
        here = _indent(line)
        if above is not None and here != _key_column(above):
            return (f"this line is indented {here} spaces; the key on the line above starts at {_key_column(above)}",
                    "keys of one mapping start in the same column; list items under a key are indented further")
    if "mapping values are not allowed" in problem:
        return ("a second ': ' on one line (a value that contains ': ', or two keys on one line)",
                "quote a value that contains ': ' (like \"a: b\"), or put each key on its own line")
    if "expected ',' or '}'" in problem or "expected ',' or ']'" in problem:
        return ("a value inside {...} or [...] that contains ':' or ',' is not quoted, or a bracket is not closed",
                "quote such values, e.g. {name: \"a:b\"}, and close every { and [")
    if "found undefined alias" in problem:
        return "an alias (*name) with no anchor (&name) before it", "define &name first, or write the value out"
    if "found unexpected end of stream" in problem or "while scanning a quoted scalar" in context:
        return "a quote that is never closed", "close the quote on the same line"
    if "found character '@'" in problem or "found character '`'" in problem:
        return "a value starts with a character YAML reserves (@ or `)", "quote the value"
    if "while scanning an alias" in context or "while scanning an anchor" in context:
        return "a value starting with * or & is read as an alias or anchor", "quote the value"
    if "did not find expected '-' indicator" in problem or "expected <block end>" in problem:
        return ("a line that does not fit the list or mapping around it",
                "line up list items ('- ') with each other and keys with keys")
    return problem, None


@dataclass(frozen=True)
class YamlProblem:
    """A YAML error of one file in words, for whichever error its reader raises."""

    #: ``file:line:column`` (1-based), or the file alone when the parser gave no position
    where: str
    #: what is wrong, in plain words
    sentence: str
    #: what to do, with the parser's own words in brackets (None: nothing to say)
    hint: str | None = None
    #: the offending line and, under it, a caret at the column (None without a position)
    quoted: str | None = None


def describe(exc: yaml.YAMLError, text: str, name: str) -> YamlProblem:
    """Where ``exc`` (raised while parsing ``text``, the file ``name``) is, what is wrong in
    words, and the offending line with a caret under the column: every YAML file piimg reads
    (the spec, secrets.yaml, node-passwords.yaml, a kubeconfig) reports errors through this.
    Readers of files that hold secrets show ``where`` and ``sentence`` only, never ``quoted``."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return YamlProblem(name, _short(exc, 200))
    problem = exc.problem or ""
    mark = exc.problem_mark or exc.context_mark
    if "quoted scalar" in (exc.context or "") and exc.context_mark is not None:
        mark = exc.context_mark  # where the unclosed quote starts, not the end of the file
    if mark is None:
        return YamlProblem(name, _short(problem, 200))
    lines = text.splitlines()
    index, column = mark.line, mark.column
    todo: str | None
    if isinstance(exc, _Refused):
        sentence, todo = problem, exc.hint
    else:
        sentence, todo = _explain(problem, exc.context or "", lines, index, column)
        if sentence.startswith("this line is indented") and 0 <= index < len(lines):
            column = _indent(lines[index])  # the caret under where the line starts
    where = f"{name}:{index + 1}:{column + 1}"
    quoted = None
    if 0 <= index < len(lines):
        shown = lines[index].replace("\t", "→")
        if len(shown) > 120:  # keep the caret in view on a very long line
            start = max(0, column - 60)
            shown, column = shown[start : start + 120], column - start
        number = str(index + 1)
        quoted = f"  {number} | {shown}\n  {' ' * len(number)} | {' ' * column}^"
    parser = "" if isinstance(exc, _Refused) else f" (YAML parser: {_short(problem, 120)})"
    return YamlProblem(where, sentence, f"{todo}{parser}" if todo else None, quoted)


def syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str | None) -> ConfigError:
    """One error line (file:line:column: what is wrong, in words), the offending line
    with a caret under the column, and a hint that keeps the parser's own words."""
    problem = describe(exc, text, file or "<string>")
    what = "" if isinstance(exc, _Refused) else "YAML syntax error: "
    return ConfigError("", f"{problem.where}: {what}{problem.sentence}", hint=problem.hint, file=file,
                       context=problem.quoted)
