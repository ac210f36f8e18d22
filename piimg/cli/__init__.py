"""The piimg command line: click commands only; the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import click

from piimg import __version__
from piimg.cli.common import App, PiimgGroup, StdoutClosed
from piimg.errors import EXIT_ERROR, EXIT_USAGE, Interrupted, PiimgError, from_os_error
from piimg.paths import ProjectPaths

log = logging.getLogger("piimg")

EXIT_STATUS_HELP: Final = """\b
Exit status:
  0    success (for status: every check passed)
  1    error (the message says what and where; status: a check failed)
  2    usage error: an unknown command or option, a missing argument
  3    unsafe target: flash refused to write to the device or file
  130  interrupted by Ctrl-C (SIGTERM: 143, SIGHUP: 129)"""


@click.group(cls=PiimgGroup, epilog=EXIT_STATUS_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Cluster spec to use (default: ./piimg.yaml).",
)
@click.option("--debug", is_flag=True, help="Log every step and external command; show tracebacks.")
@click.option("--color/--no-color", "color", default=None,
              help="Colour ok/FAIL in status and +/~/- in the router plan (default: on a terminal, unless NO_COLOR is set).")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show piimg's version and the versions it pins (k3s, MetalLB, ingress charts), then exit.",
)
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, debug: bool, color: bool | None) -> None:
    """Flash-and-forget Kubernetes on Raspberry Pis, announced to a MikroTik router over BGP.

    \b
    Typical session:
      piimg init                 write piimg.yaml with the defaults, then edit it
      piimg validate             check it and show the plan
      piimg build                one customised Raspberry Pi OS image per node
      piimg flash /dev/sdX       write an image to an SD card, verified
      piimg router-setup         configure the MikroTik (bridge, DHCP, BGP peers)
      piimg status --watch       wait until the cluster answers end to end
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="debug: %(name)s: %(message)s" if debug else "%(message)s",
        stream=sys.stderr,
    )
    from piimg.cli import common

    common.color_choice = color
    ctx.obj = App(paths=ProjectPaths.for_spec(config_file), debug=debug)


def version_lines() -> list[str]:
    """``piimg --version``: what a bug report needs (the pins come from :mod:`piimg.versions`)."""
    import platform

    from piimg import versions as v

    return [
        f"piimg, version {__version__}",
        f"k3s {v.K3S_VERSION} (default cluster.k3s_version)",
        f"MetalLB {v.METALLB_VERSION} (default cluster.metallb_version; chart "
        f"{v.metallb_chart_version(v.METALLB_VERSION)})",
        f"NGINX Ingress Controller chart {v.NGINX_INGRESS_CHART_VERSION} ({v.NGINX_INGRESS_CHART})",
        f"ingress-nginx chart {v.INGRESS_NGINX_CHART_VERSION} (retired; cluster.ingress: ingress-nginx)",
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}",
    ]


def _print_version(ctx: click.Context) -> None:
    click.echo("\n".join(version_lines()))
    ctx.exit(0)


def _register() -> None:
    from piimg.cli import (
        build_cmd,
        completion_cmd,
        flash_cmd,
        image_cmds,
        manifests_cmd,
        router_cmd,
        spec_cmds,
        status_cmds,
    )

    for module in (spec_cmds, image_cmds, build_cmd, flash_cmd, router_cmd, manifests_cmd, status_cmds,
                   completion_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _report(exc: PiimgError) -> int:
    click.echo(f"error: {exc.message}", err=True)
    if exc.context:
        click.echo(exc.context, err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    return exc.exit_code


#: Signals that stop piimg the way Ctrl-C does: clean-up runs, temporaries go.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Interrupted` (a KeyboardInterrupt)
    while a command runs, so `kill`, a closed terminal or a service manager
    stop piimg as cleanly as Ctrl-C; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:  # the first one is being handled: let its clean-up finish
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _report_interrupt(exc: BaseException | None) -> int:
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    word = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    state = exc.state if isinstance(exc, Interrupted) else ""
    click.echo(f"{word}: {state}" if state else word, err=True)
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``piimg`` console script."""
    from piimg.cli import common

    common.invocation[:] = list(argv if argv is not None else sys.argv[1:])
    common.color_choice = None
    debug = "--debug" in common.invocation
    try:
        with _stop_signals_interrupt():
            rv = cli.main(args=argv, prog_name="piimg", standalone_mode=False)
    except PiimgError as exc:
        if debug:
            traceback.print_exc()
        return _report(exc)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C during a command into Abort (from KeyboardInterrupt)
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return _report_interrupt(exc.__cause__)
        # a click prompt (the router password) took Ctrl-C or Ctrl-D: end its line first
        click.echo(err=True)
        return _report_interrupt(None)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return _report_interrupt(exc)
    except (BrokenPipeError, StdoutClosed):
        # the reader of stdout has what it wanted; nothing more to say (and no
        # "Exception ignored" from flushing stdout at exit: it now goes nowhere)
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # permission denied, disk full, ...: the file and the cause, not "internal error"
        if debug:
            traceback.print_exc()
        return _report(from_os_error(exc))
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: run again with --debug for the traceback, and report it", err=True)
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0


def run() -> None:
    sys.exit(main())
