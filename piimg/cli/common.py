"""What every command shares: the app object, spec loading, output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from piimg.errors import PiimgError
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


pass_app = click.make_pass_decorator(App)


def echo(message: str = "") -> None:
    """Results go to stdout; progress and warnings go to stderr (the reporter)."""
    click.echo(message)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def is_tty() -> bool:
    return sys.stdout.isatty()


def confirm(question: str, *, nothing_done: str) -> bool:
    """Ask on the terminal; with no answer on a non-terminal stdin (a script,
    cron, a pipe) fail with one line that says how to confirm, not "aborted"."""
    try:
        return click.confirm(question, default=False, err=True)
    except click.exceptions.Abort:
        if sys.stdin.isatty():
            raise
        click.echo(err=True)  # end the prompt line
        raise PiimgError(f"no answer to {question!r} (stdin is not a terminal); {nothing_done}",
                         hint="add --yes to confirm without asking") from None
