"""Entry point: ``python3 -m firstboot run --config /opt/piimg/node.json``.

Runs the steps in order, skipping those state.json records as done, so a
power cut or a kill resumes where it stopped. Exit codes: 0 done, 1 a step
failed (the service stays enabled: the next boot retries), 2 bad usage or
node.json, 75 a reboot was requested (the run continues after it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .bgp import step_bgp
from .cluster import step_cluster
from .context import DEFAULT_TIMEOUTS, Context, RebootRequested, StepError, detect_boot_dir
from .finish import step_finish
from .identity import step_identity
from .k3s import step_k3s
from .log import Log
from .nodeconf import NodeConfig
from .runner import Runner
from .scrub import step_scrub
from .store import Store
from .system import step_address, step_cgroup, step_hostname, step_network

STATE_PATH = "/var/lib/piimg/state.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REBOOT = 0, 1, 2, 75

Step = Callable[[Context], None]
Hook = Callable[[str, str], None]


def steps_for(config: NodeConfig) -> List[Tuple[str, Step]]:
    steps: List[Tuple[str, Step]] = [
        ("scrub", step_scrub),  # first: the secrets leave the boot partition before any wait
        ("hostname", step_hostname),
        # SSH host key (so `piimg status` can log in early), node password and
        # CA files: all before k3s first starts.
        ("identity", step_identity),
        ("address", step_address),
        ("network", step_network),
        ("cgroup", step_cgroup),
        ("k3s", step_k3s),
    ]
    if config.role == "server":
        steps.append(("cluster", step_cluster))  # checks the BGP password first
    elif config.secrets.get("bgp_password"):
        steps.append(("bgp", step_bgp))
    steps.append(("finish", step_finish))
    return steps


class Interrupted(Exception):
    pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted("stopped by signal %d (systemctl stop, shutdown?)" % signum)


def parse_timeouts(config: NodeConfig, overrides: Sequence[str]) -> Dict[str, float]:
    timeouts = dict(DEFAULT_TIMEOUTS)
    pairs = [(k, str(v)) for k, v in (config.timeouts or {}).items()]
    for item in overrides:
        if "=" not in item:
            raise ValueError("--timeout %r: expected NAME=SECONDS" % item)
        pairs.append(tuple(item.split("=", 1)))  # type: ignore[arg-type]
    for name, value in pairs:
        if name not in DEFAULT_TIMEOUTS:
            raise ValueError("unknown timeout %r (known: %s)" % (name, ", ".join(sorted(DEFAULT_TIMEOUTS))))
        try:
            timeouts[name] = float(value)
        except ValueError:
            raise ValueError("timeout %s=%r is not a number of seconds" % (name, value)) from None
        if timeouts[name] < 0:
            raise ValueError("timeout %s must not be negative" % name)
    return timeouts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m firstboot", description="piimg first boot on the Pi")
    sub = p.add_subparsers(dest="command")
    for name in ("run", "status"):
        sp = sub.add_parser(name, help="run the first-boot steps" if name == "run" else "print status.json")
        sp.add_argument("--root", default=os.environ.get("PIIMG_FIRSTBOOT_ROOT", "/"),
                        help="file system root (tests: a fake root); env PIIMG_FIRSTBOOT_ROOT")
        sp.add_argument("--boot", default=None, help="boot partition (default: ROOT/boot/firmware or ROOT/boot)")
        if name == "run":
            sp.add_argument("--config", default="/opt/piimg/node.json", help="node.json (default %(default)s)")
            sp.add_argument("--timeout", action="append", default=[], metavar="NAME=SECONDS",
                            help="override a wait limit: %s" % ", ".join(sorted(DEFAULT_TIMEOUTS)))
    return p


def main(argv: Optional[Sequence[str]] = None, *, runner: Optional[Runner] = None, hook: Optional[Hook] = None) -> int:
    args = build_parser().parse_args(argv)
    root = os.path.abspath(args.root)
    boot_dir = os.path.abspath(args.boot) if args.boot else detect_boot_dir(root)
    boot_payload = os.path.join(boot_dir, "piimg")
    if args.command == "status":
        try:
            with open(os.path.join(boot_payload, "status.json"), encoding="utf-8") as fh:
                sys.stdout.write(fh.read())
        except OSError as exc:
            sys.stderr.write("error: no status: %s\n" % exc)
            return EXIT_FAILED
        return EXIT_OK
    if args.command != "run":
        build_parser().print_help(sys.stderr)
        return EXIT_USAGE

    log = Log(os.path.join(boot_payload, "firstboot.log") if os.path.isdir(boot_payload) else None)
    state_path = os.path.join(root, STATE_PATH.lstrip("/"))
    status_path = os.path.join(boot_payload, "status.json")
    try:
        with open(args.config, encoding="utf-8") as fh:
            config = NodeConfig.from_dict(json.load(fh))
        timeouts = parse_timeouts(config, args.timeout)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        msg = "cannot use %s: %s" % (args.config, exc)
        log.error(msg)
        Store(state_path, status_path, "").fail(msg)
        return EXIT_USAGE
    for secret in config.secrets.values():
        if isinstance(secret, str):
            log.add_secret(secret)
    store = Store(state_path, status_path, config.hostname)
    ctx = Context(
        root=root,
        boot_dir=boot_dir,
        payload_dir=os.path.dirname(os.path.abspath(args.config)),
        config=config,
        runner=runner or Runner(),
        log=log,
        store=store,
        timeouts=timeouts,
    )
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run_steps(ctx, hook)
    finally:
        signal.signal(signal.SIGTERM, previous)
        log.flush()


def run_steps(ctx: Context, hook: Optional[Hook] = None) -> int:
    store, log = ctx.store, ctx.log
    steps = steps_for(ctx.config)
    store.begin([name for name, _ in steps])
    log.step = "-"
    log.info("piimg first boot for %s (%s), root %s" % (ctx.config.hostname, ctx.config.role, ctx.root))
    for name, func in steps:
        if store.is_done(name):
            continue
        log.step = name
        store.step_start(name)
        if hook:
            hook(name, "start")
        try:
            func(ctx)
        except RebootRequested as exc:
            store.step_end(name, "waiting", str(exc))
            log.info(str(exc))
            log.flush()
            return EXIT_REBOOT
        except (StepError, Interrupted) as exc:
            msg = log.mask(str(exc))
            store.step_end(name, "failed", msg)
            log.error(msg)
            return EXIT_FAILED
        except Exception as exc:
            msg = log.mask("unexpected %s: %s" % (type(exc).__name__, exc))
            store.step_end(name, "failed", msg)
            log.error(msg)
            log.info(traceback.format_exc())
            return EXIT_FAILED
        store.step_end(name, "done")
        log.info("step %s done" % name)
        log.flush()
        if hook:
            hook(name, "done")
    log.step = "-"
    store.finish()
    log.info("first boot complete")
    log.flush()
    return EXIT_OK
