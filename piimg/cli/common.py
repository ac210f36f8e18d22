"""What every command shares: the app object, spec loading, output helpers."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from piimg.errors import NotConfirmed
from piimg.identity.store import NodeName
from piimg.paths import ProjectPaths
from piimg.progress import ConsoleReporter
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from piimg.spec.secrets import Secrets, load_or_create


@dataclass
class App:
    """State shared by the commands of one invocation."""

    paths: ProjectPaths
    debug: bool = False
    reporter: ConsoleReporter = field(default_factory=ConsoleReporter)
    _spec: spec_model.Spec | None = None

    def spec(self) -> spec_model.Spec:
        """The loaded, validated spec (loaded once)."""
        if self._spec is None:
            self._spec = spec_load.load(self.paths.spec)
        return self._spec

    def secrets(self) -> Secrets:
        """secrets.yaml plus the cluster identity (CA, host keys, node passwords), made once."""
        spec = self.spec()
        nodes = [NodeName(n.hostname, str(n.address)) for n in spec.nodes]
        return load_or_create(self.paths.secrets).with_identity(self.paths.state_dir, nodes)

    def cmd(self, rest: str = "") -> str:
        """``piimg [-c FILE] REST``: a command line to suggest, with the spec this run used."""
        from piimg.paths import SPEC_NAME

        spec = "" if self.paths.spec == Path(SPEC_NAME) else f" -c {shlex.quote(str(self.paths.spec))}"
        return f"piimg{spec}" + (f" {rest}" if rest else "")


pass_app = click.make_pass_decorator(App)


class StdoutClosed(Exception):
    """stdout's reader went away (``piimg validate | head -3``): not an error."""


class PiimgGroup(click.Group):
    """Command summaries in full (click cuts them at ~45 characters with "..."),
    and a closed stdout kept away from click, which would exit 1 for it."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise StdoutClosed() from None


#: --color/--no-color; None: colour when stdout is a terminal and NO_COLOR is unset or empty (https://no-color.org)
color_choice: bool | None = None


def use_color() -> bool:
    if color_choice is not None:
        return color_choice
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def paint(text: str, **style: Any) -> str:
    """``text`` in colour (click.style) when colour is on, else as it is."""
    return click.style(text, **style) if use_color() else text


def echo(message: str = "") -> None:
    """Results go to stdout; progress and warnings go to stderr (the reporter)."""
    click.echo(message, color=True if use_color() else None)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def next_step(text: str) -> None:
    """The command to run next, on stderr (stdout stays the command's result, e.g. JSON)."""
    click.echo(f"next: {text}", err=True)


#: The argv of this invocation (set by :func:`piimg.cli.main`), for hints that repeat the command.
invocation: list[str] = []


def self_command() -> str:
    """How to run this very piimg by absolute path.

    ``sudo piimg`` fails for pipx and venv installs: sudo's ``secure_path``
    does not contain ``~/.local/bin`` or ``.venv/bin``.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "piimg" and os.path.isfile(argv0):
        return shlex.quote(os.path.abspath(argv0))
    return f"{shlex.quote(sys.executable)} -m piimg"


def corrected_command(*, replace: tuple[str, str] | None = None, add: tuple[str, ...] = ()) -> str:
    """This command again, fixed: ``replace`` one argument (old, new), ``add`` options after the
    command name (``flash --node NAME``); for hints that print the whole command, not ``...``."""
    args = list(invocation)
    if replace is not None:
        args = [replace[1] if a == replace[0] else a for a in args]
    if add:
        # after the first word that is a command (not an option or its value: -c FILE)
        at = next((i + 1 for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in
                                                                                  ("-c", "--config"))), len(args))
        args[at:at] = add
    return shlex.join(["piimg", *args])


def as_root_command() -> str:
    """This command again under sudo, with piimg named by absolute path."""
    args = " ".join(shlex.quote(a) for a in invocation)
    return f"sudo {self_command()}" + (f" {args}" if args else "")


def _answer(prompt: str) -> str | None:
    """One line typed after ``prompt`` (on stderr); None at end of input.

    Ctrl-C propagates as KeyboardInterrupt: click ends the prompt line and
    :func:`piimg.cli.main` says "interrupted" (exit 130).
    """
    try:
        # click.termui's reader (input(), or the test runner's), writing to stderr the way click's own prompts do
        with contextlib.redirect_stdout(sys.stderr):
            return str(click.termui.visible_prompt_func(prompt))
    except EOFError:
        click.echo(err=True)  # end the prompt line
        return None


def confirm(question: str, *, nothing_done: str) -> bool:
    """``QUESTION [y/N]: ``, asked until the answer is y/yes or n/no/empty (no).

    Every prompt of piimg reads the same: a capitalised question, ``[y/N]``,
    a re-ask in our words for anything else. With no answer on a non-terminal
    stdin (a script, cron, a pipe) it fails with one line that says how to
    confirm; Ctrl-D on a terminal is a no.
    """
    while True:
        line = _answer(f"{question} [y/N]: ")
        if line is None:
            if sys.stdin.isatty():
                return False
            raise NotConfirmed(f"no answer to {question!r} (stdin is not a terminal); {nothing_done}",
                               hint="add --yes to confirm without asking")
        word = line.strip().lower()
        if word in ("y", "yes"):
            return True
        if word in ("", "n", "no"):
            return False
        click.echo(f"please answer y or n (not {line.strip()!r})", err=True)


def choose(question: str, count: int) -> int:
    """``QUESTION [1-N]: ``, asked until the answer is a number from 1 to ``count``."""
    while True:
        line = _answer(f"{question} [1-{count}]: ")
        if line is None:
            raise NotConfirmed("no disk chosen (end of input); nothing was written", hint="name the disk: piimg flash DEVICE")
        text = line.strip()
        if text.isdigit() and 1 <= int(text) <= count:
            return int(text)
        click.echo(f"please answer with a number from 1 to {count} (not {text!r})", err=True)


def declined(what: str) -> None:
    """A deliberate no is not an error: say what was not done, exit 0."""
    click.echo(what, err=True)
