"""piimg flash (one card, the device picker, the flash station), piimg devices."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from piimg.build import lastbuild
from piimg.cli.common import (
    App,
    as_root_command,
    choose,
    confirm,
    corrected_command,
    declined,
    echo,
    echo_json,
    next_step,
    pass_app,
)
from piimg.errors import LastBuildError, NeedsRoot, NoTarget, NotConfirmed, PartitionNotDisk
from piimg.flash import record, safety, verb
from piimg.flash.devices import Device, Devices, for_this_machine
from piimg.flash.write import FlashResult
from piimg.image import overlay
from piimg.units import human_size

_SIZE_RE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*")
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """``32GB``, ``32G``, ``29.7 GB``, ``16GiB`` or bytes."""
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 32GB, 64G, 16GiB)")
    unit = (m.group(2) or "").lower()
    factor = 1024 ** " kmgt".index(unit[0]) if "i" in unit else _UNITS[unit[:1]]
    return int(float(m.group(1)) * factor)


# --------------------------------------------------------------- last build


def _last_build(app: App) -> lastbuild.LastBuild:
    return lastbuild.load(app.paths.last_build)


def _node_names(ctx: click.Context) -> list[str]:
    """Node names of the last build, else of the spec (for completion; never fails)."""
    from piimg.paths import ProjectPaths

    config = ctx.find_root().params.get("config_file")
    paths = ProjectPaths.for_spec(config)
    try:
        return sorted(lastbuild.load(paths.last_build).nodes)
    except LastBuildError:
        pass
    try:
        from piimg.spec import load as spec_load

        return [n.hostname for n in spec_load.load(paths.spec).nodes]
    except Exception:  # completion must never print a traceback into the shell
        return []


def _complete_node(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [CompletionItem(prefix + n) for n in _node_names(ctx) if n.startswith(last)]


def _complete_args(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """DEVICE: the disks flash would accept; anything else: file names (IMAGE)."""
    if incomplete.startswith("/dev") or not incomplete:
        try:
            items = [CompletionItem(d.path, help=_short(d)) for d in _candidates(for_this_machine(), 0)[0]]
        except Exception:
            items = []
        if items or incomplete.startswith("/dev"):
            return [i for i in items if i.value.startswith(incomplete)]
    return [CompletionItem(incomplete, type="file")]


# --------------------------------------------------------------- the device picker


def _interactive() -> bool:
    return sys.stdin.isatty()


def _short(d: Device) -> str:
    return f"{d.label}, {human_size(d.size)}"


def _candidates(devices: Devices, image_size: int) -> tuple[list[Device], list[tuple[Device, str]]]:
    """Disks flash would accept for ``image_size`` bytes, and the others with the reason."""
    ok, refused = [], []
    for d in devices.disks():
        why = safety.refusal(d, image_size)
        if why is None:
            ok.append(d)
        else:
            refused.append((d, why.removeprefix(f"{d.path}: ")))
    return ok, refused


def _describe(d: Device) -> str:
    parts = [f"{d.path:<14} {d.label:<24} {human_size(d.size):>9}"]
    if d.removable:
        parts.append("removable")
    elif d.transport == "usb":
        parts.append("USB disk, not marked removable: check it is the card")
    if d.mounted:
        parts.append("mounted: " + ", ".join(m.mountpoint for m in d.mounted))
    return "  ".join(parts)


def pick_device(app: App, devices: Devices, image_size: int) -> str:
    """List the disks flash would accept (and why the others are refused); on a terminal let the user choose."""
    ok, refused = _candidates(devices, image_size)
    err = app.reporter
    if ok:
        err.info("disks piimg can write:")
        for i, d in enumerate(ok, 1):
            err.info(f"  {i}) {_describe(d)}")
    if refused:
        err.info("not offered:")
        for d, why in refused:
            err.info(f"     {d.path:<14} {_short(d)}: {why}")
    if not ok:
        raise NoTarget("no disk piimg could write is attached", hint="insert the card (in a reader) and run it again")
    if not _interactive():
        raise click.UsageError(f"no DEVICE given; name one of the disks listed above, e.g. piimg flash {ok[0].path}")
    return ok[choose("Which disk?", len(ok)) - 1].path


# --------------------------------------------------------------- one card


def _image_line(image: str) -> str:
    if overlay.is_overlay(image):
        header, _ = overlay.read_header(image)
        return (f"image:  {header.node or 'a node'}'s overlay on {Path(header.base.path).name} "
                f"({human_size(header.image_size)}; {image})")
    size = Path(image).stat().st_size
    packed = verb.compression_of(image)
    return f"image:  {image} ({human_size(size)}{f', {packed}-compressed' if packed else ''})"


def _image_size(image: str) -> int:
    if overlay.is_overlay(image):
        return overlay.read_header(image)[0].image_size
    return 0 if verb.compression_of(image) else os.path.getsize(image)


def _show_target(app: App, device: Device) -> None:
    app.reporter.info(f"target: {device.description}")
    if device.transport == "usb" and not device.removable and device.kind == "block":
        app.reporter.warn(f"{device.path} is a USB disk that does not say it is removable (an SSD or a hard disk?): "
                          "check the model and size")
    for mount in device.mounted:
        app.reporter.info(f"        {mount.device} mounted at {mount.mountpoint} (will be unmounted)")
    holds = _contents(device)
    if holds is not None:
        app.reporter.info(f"        it holds: {holds}")


def _contents(device: Device) -> str | None:
    """What is on the target now (its partitions: label, type, size), so the question says what will be lost;
    None when it cannot be read (or is a new file)."""
    from piimg.image.partitions import describe_contents

    try:
        with open(device.write_path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return "nothing (an empty file)"
            phrases = describe_contents(fh, size)
    except OSError:
        return None
    return ", ".join(phrases) if phrases else "no partition table (empty, or data piimg cannot name)"


def _result_json(node: str | None, image: str, result: FlashResult, device: str) -> dict[str, Any]:
    return {
        "node": node,
        "image": os.path.abspath(image),
        "kind": "overlay" if overlay.is_overlay(image) else "image",
        "target": result.target,
        "device": device,
        "bytes_written": result.bytes_written,
        "image_size": result.image_size,
        "write_seconds": round(result.write_seconds, 3),
        "verify_seconds": None if result.verify_seconds is None else round(result.verify_seconds, 3),
        "verified": result.verified,
    }


def _node_of(app: App, image: str) -> str | None:
    """Which node of the last build ``image`` is (None for any other image)."""
    try:
        nodes = _last_build(app).nodes
    except LastBuildError:
        return None
    for name, entry in nodes.items():
        if os.path.abspath(entry.image) == os.path.abspath(image):
            return str(name)
    return None


def _still_to_flash(app: App) -> list[str]:
    try:
        nodes = _last_build(app).nodes
    except LastBuildError:
        return []
    return [n for n, e in sorted(nodes.items()) if not record.flashed(app.paths.flashed, n, e.image)]


def _after(app: App, node: str | None, image: str, result: FlashResult, target: str) -> None:
    """S9: which node's card this was, whether it is safe to pull, what is left."""
    if node is None:
        return
    record.record(app.paths.flashed, node, image, target, verified=result.verified)
    app.reporter.info(f"{node}'s card is ready ({'verified' if result.verified else 'NOT verified'}); "
                      f"{target} can be removed")
    left = _still_to_flash(app)
    if left:
        app.reporter.info(f"still to flash: {', '.join(left)}")
        if len(left) == 1:
            next_step(app.cmd(f"flash --node {left[0]} DEVICE"))
        else:
            next_step(app.cmd(f"flash --nodes {','.join(left)}") + "   (one card after another)")
    else:
        next_step(app.cmd("router-setup") + "   (then boot the Pis; piimg status --watch follows them)")


def _with_root_hint(fn: Any) -> Any:
    try:
        return fn()
    except NeedsRoot as exc:
        if os.geteuid() == 0:
            raise
        raise NeedsRoot(exc.message, hint=f"run it as root: {as_root_command()}   (or add yourself to the disk group)") from None


# --------------------------------------------------------------- the command


@click.command()
@click.argument("args", nargs=-1, metavar="[IMAGE] [DEVICE]", shell_complete=_complete_args)
@click.option("--node", metavar="NAME", shell_complete=_complete_node,
              help="Which built node image to flash (when several were built).")
@click.option("--all", "all_nodes", is_flag=True, help="Flash every node of the last build, one card after another.")
@click.option("--nodes", metavar="A,B,...", shell_complete=_complete_node,
              help="Flash these nodes of the last build, one card after another.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (--all/--nodes: needs --expect-size or --expect-model).")
@click.option("--expect-size", metavar="SIZE", help="--all/--nodes: only use cards of this size (±10%%), e.g. 32GB.")
@click.option("--expect-model", metavar="TEXT", help="--all/--nodes: only use disks whose vendor/model contains TEXT.")
@click.option("--no-verify", is_flag=True, help="Skip the read-back verification.")
@click.option("--force", is_flag=True, help="Allow a regular file or a non-removable disk as target.")
@click.option("--no-eject", is_flag=True, help="Leave the card attached after writing (macOS; Linux with --all).")
@click.option(
    "--bmap",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Use this bmaptool .bmap file instead of computing the block map from the image.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (see README, JSON output).")
@pass_app
def flash(
    app: App,
    args: tuple[str, ...],
    node: str | None,
    all_nodes: bool,
    nodes: str | None,
    yes: bool,
    expect_size: str | None,
    expect_model: str | None,
    no_verify: bool,
    force: bool,
    no_eject: bool,
    bmap: Path | None,
    as_json: bool,
) -> None:
    """Write IMAGE (default: the last build) to DEVICE, safely and verified.

    Only the blocks that hold data are written (the block map comes from the
    image's own FAT and ext4 metadata), the partition table cleared first and
    written last, and every written block is read back from the device and
    compared. A node built as
    an overlay is composed with its base image while it is written.

    Without DEVICE, piimg lists the disks it would write (and why it refuses
    the others) and, on a terminal, lets you choose. With --all or --nodes it
    is a flash station: it waits for each new card, shows it with the node
    it will receive, asks, writes, verifies, ejects, and waits for the next.

    \b
    Examples:
      piimg flash /dev/sdb                 the last build (one node)
      piimg flash --node k8s-w1 /dev/rdisk4
      piimg flash --all                    every node, one card after another
      piimg flash raspios.img /dev/mmcblk0
    """
    devices = for_this_machine()
    if all_nodes or nodes:
        if args or node or bmap:
            raise click.UsageError("--all/--nodes take no IMAGE, DEVICE, --node or --bmap: the cards come one by one")
        _station(app, devices, all_nodes=all_nodes, nodes=nodes, yes=yes, expect_size=expect_size,
                 expect_model=expect_model, verify=not no_verify, eject=not no_eject, as_json=as_json)
        return
    if expect_size or expect_model:
        raise click.UsageError("--expect-size/--expect-model go with --all or --nodes")
    if len(args) == 2:
        if node:
            raise click.UsageError("give either IMAGE or --node, not both")
        image, target = args
        node = _node_of(app, image)
    elif len(args) <= 1:
        last = _last_build(app)
        try:
            image = last.image_for(node)
        except LastBuildError as exc:
            if node is None and len(last.nodes) > 1:  # the whole command, with the node to choose
                names = sorted(last.nodes)
                exc.hint = f"{corrected_command(add=('--node', names[0]))}   (nodes: {', '.join(names)})"
            raise
        if node is None:
            node = _node_of(app, image)
        target = args[0] if args else pick_device(app, devices, _image_size(image))
    else:
        raise click.UsageError("expected [IMAGE] [DEVICE]")

    answers: list[bool] = []

    def ask(device: Device) -> bool:
        app.reporter.info(_image_line(image) + (f" for node {node}" if node else ""))
        _show_target(app, device)
        if yes:
            return True
        answers.append(confirm(f"Overwrite {device.write_path}? Everything on it will be lost",
                               nothing_done="nothing was written"))
        return answers[-1]

    try:
        result = _with_root_hint(lambda: verb.flash(
            image, target, devices=devices, confirm=ask, verify=not no_verify, force=force, eject=not no_eject,
            bmap=bmap, reporter=app.reporter, allow_usb=not yes,
        ))
    except PartitionNotDisk as exc:
        exc.hint = corrected_command(replace=(target, exc.disk))
        raise
    except NotConfirmed:
        if answers != [False]:  # no answer at all (stdin not a terminal) stays an error
            raise
        declined(f"not flashed; nothing was written to {target}")  # a deliberate no is not an error
        return
    if as_json:
        echo_json({"schema": 1, "cards": [_result_json(node, image, result, target)]})
    else:
        echo(result.summary())
    _after(app, node, image, result, target)


def _station(app: App, devices: Devices, *, all_nodes: bool, nodes: str | None, yes: bool, expect_size: str | None,
             expect_model: str | None, verify: bool, eject: bool, as_json: bool) -> None:
    from piimg.flash import station

    size = parse_size(expect_size) if expect_size else None
    if yes and size is None and not expect_model:
        raise click.UsageError("--yes with --all/--nodes needs --expect-size or --expect-model, so that no other "
                               "disk that appears is written without asking")
    last = _last_build(app)
    if all_nodes:
        names = list(last.nodes)
    else:
        names = [n.strip() for n in (nodes or "").split(",") if n.strip()]
        unknown = [n for n in names if n not in last.nodes]
        if unknown:
            raise LastBuildError(f"--nodes: {', '.join(unknown)} not in the last build (built: {', '.join(sorted(last.nodes))})")
    # the server first: its card can boot while the agents' are written
    names.sort(key=lambda n: (last.nodes[n].role != "server", n))
    jobs = [station.Job(n, last.nodes[n].image, last.nodes[n].size, last.nodes[n].role) for n in names]
    for job in jobs:
        if overlay.is_overlay(job.image):
            from piimg.build.compose import open_composed

            open_composed(job.image, reporter=app.reporter).close()  # a missing base fails now, not at card 3
        elif not os.path.isfile(job.image):
            raise LastBuildError(f"{job.image}: no such file (node {job.node})", hint="run piimg build again")

    def accept(device: Device, job: station.Job) -> str | None:
        why = safety.refusal(device, job.image_size, allow_usb=not yes)
        return why or station.matches(device, size=size, model=expect_model)

    def ask(device: Device, job: station.Job) -> bool:
        app.reporter.info(f"new disk for {job.node}:")
        _show_target(app, device)
        if yes:
            return True
        return confirm(f"Write {job.node} to {device.write_path}? Everything on it will be lost",
                       nothing_done=f"nothing was written to {device.write_path}")

    def flash_one(job: station.Job, device: Device) -> FlashResult:
        result: FlashResult = _with_root_hint(lambda: verb.flash(
            job.image, device.path, devices=devices, confirm=lambda _d: True, verify=verify, eject=eject,
            reporter=app.reporter, allow_usb=not yes,
        ))
        record.record(app.paths.flashed, job.node, job.image, device.path, verified=result.verified)
        return result

    log = station.StationLog()
    try:
        station.run(jobs, devices=devices, watcher=station.DiskWatcher(devices), accept=accept, ask=ask,
                    flash_one=flash_one, log=log, reporter=app.reporter, eject=eject)
    except KeyboardInterrupt:
        left = [j.node for j in log.remaining(jobs)]
        done = [f.job.node for f in log.done]
        app.reporter.info(f"stopped: flashed {', '.join(done) or 'none'}; not flashed: {', '.join(left)}")
        if as_json:
            echo_json(_station_json(log))
        if left:
            next_step(app.cmd(f"flash --nodes {','.join(left)}"))
        raise
    if as_json:
        echo_json(_station_json(log))
    else:
        for f in log.done:
            echo(f"{f.job.node}: {f.result.summary()}")
    next_step(app.cmd("router-setup") + "   (then boot the Pis; piimg status --watch follows them)")


def _station_json(log: Any) -> dict[str, Any]:
    return {
        "schema": 1,
        "cards": [_result_json(f.job.node, f.job.image, f.result, f.device.path) for f in log.done],
        "failed": [{"node": j.node, "device": d.path, "error": why} for j, d, why in log.failed],
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def devices(app: App, as_json: bool) -> None:
    """List the disks piimg flash would write, and why it refuses the others."""
    ok, refused = _candidates(for_this_machine(), 0)
    if as_json:
        def one(d: Device, why: str | None) -> dict[str, Any]:
            return {"path": d.path, "write_path": d.write_path, "model": d.label, "size": d.size,
                    "removable": d.removable, "transport": d.transport or None,
                    "mounted": [m.mountpoint for m in d.mounted], "acceptable": why is None, "refused": why}

        echo_json({"schema": 1, "disks": [one(d, None) for d in ok] + [one(d, w) for d, w in refused]})
        return
    for d in ok:
        echo(_describe(d))
    for d, why in refused:
        app.reporter.info(f"{d.path:<14} {_short(d)}: not offered: {why}")
    if not ok:
        app.reporter.info("no disk piimg could write is attached")


COMMANDS = [flash, devices]
