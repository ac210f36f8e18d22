"""piimg init, piimg validate."""

from __future__ import annotations

from importlib import resources

import click

from piimg.cli.common import App, echo, echo_json, next_step, pass_app
from piimg.errors import FileError
from piimg.fsutil import write_atomic
from piimg.spec import load as spec_load


def default_spec_text() -> str:
    return resources.files("piimg").joinpath("default_spec.yaml").read_text(encoding="utf-8")


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing spec file.")
@pass_app
def init(app: App, force: bool) -> None:
    """Write a commented piimg.yaml with the defaults.

    The defaults describe one server node at 10.0.2.10 in the lab subnet
    10.0.2.0/23 behind a MikroTik at 10.0.2.1; edit the file, then run
    `piimg validate`.
    """
    path = app.paths.spec
    if path.is_dir():
        raise FileError(path, "is a directory", hint="give the spec file's path with -c FILE")
    if path.exists() and not force:
        raise FileError(path, "already exists", hint="use --force to overwrite it")
    write_atomic(path, default_spec_text(), mode=0o644)
    echo(f"wrote {path}")
    # the spec is written by now: a bad key file is a warning here and a refusal at validate
    found = spec_load.find_ssh_key_files()
    for key in found:
        if key.problem:
            app.reporter.warn(f"{key.path}: {key.problem}; `{app.cmd('validate')}` refuses it until you fix "
                              "or remove that file, or list your keys in access.ssh_authorized_keys")
    if not found:
        app.reporter.warn(
            "no ~/.ssh/id_*.pub found: put your public key into access.ssh_authorized_keys, "
            "or create one with: ssh-keygen -t ed25519"
        )
    next_step(f"edit {path} (nodes, network, router), then: {app.cmd('validate')}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the validated spec as JSON.")
@pass_app
def validate(app: App, as_json: bool) -> None:
    """Load and cross-check the spec; print a summary of the plan.

    Every rule (addresses inside the subnet, pools outside it, eBGP ASNs,
    unique hostnames, ...) is checked; the first problem is reported with
    the key that holds it.
    """
    spec = app.spec()
    if as_json:
        from dataclasses import asdict

        data = asdict(spec)
        data.pop("paths", None)
        data.pop("env_secrets", None)  # values, never printed; the *_env names stay
        echo_json(data)
        return
    echo(f"{app.paths.spec}: ok")
    for line in spec_load.summary(spec):
        echo(line)
    from piimg.manifests.addons import warnings

    for warning in warnings(spec):
        app.reporter.warn(warning)
    many = f"   (all {len(spec.nodes)} nodes; --node NAME for one)" if len(spec.nodes) > 1 else ""
    next_step(app.cmd("build") + many)


COMMANDS = [init, validate]
