"""The flash verb: check the image and the target, ask, unmount, write, verify, eject."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from piimg.errors import ImageError, ImageTruncated, NeedsRoot, NotConfirmed, UnsafeTarget
from piimg.flash import safety
from piimg.flash.devices import Device, Devices
from piimg.flash.write import FlashResult, write_image
from piimg.fsutil import temp_dir
from piimg.image import blockmap, decompress, overlay, partitions
from piimg.image.overlay import ComposedImage
from piimg.paths import user_cache_dir
from piimg.progress import QUIET, Reporter
from piimg.units import human_size


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """The compression format of ``path`` from its magic bytes, or None for a raw image."""
    fmt = decompress.detect_format(path)
    return None if fmt is decompress.Format.RAW else fmt.value


def check_image(path: str | ComposedImage, *, name: str | None = None) -> None:
    """Refuse an empty image, or one whose partition table reaches past its end
    (a truncated download: the card would not boot). Images without a partition
    table are written as they are, like bmaptool does."""
    if isinstance(path, ComposedImage):
        name, size = name or path.name, path.size
    else:
        name, size = name or path, os.path.getsize(path)
    if size == 0:
        raise ImageError(f"{name}: is empty; nothing to write")
    with path.fileobj() if isinstance(path, ComposedImage) else open(path, "rb") as fh:
        try:
            partitions.read_table(fh)
        except ImageTruncated as exc:
            raise ImageTruncated(f"{name}: {exc.message}", hint=exc.hint) from None
        except ImageError:
            pass  # no (readable) partition table: written as it is


def check_writable(device: Device) -> None:
    """Refuse before the prompt, not after it, when this user may not write the target."""
    if device.kind in ("block", "file") and not os.access(device.write_path, os.W_OK):
        what = "writing a disk needs root, or membership of its group" if device.kind == "block" else "not writable"
        raise NeedsRoot(f"{device.path}: permission denied ({what})")
    if device.kind == "missing" and not os.access(os.path.dirname(os.path.abspath(device.path)), os.W_OK):
        raise NeedsRoot(f"{device.path}: permission denied (its folder is not writable)")


def flash(
    image: str | os.PathLike[str],
    target: str,
    *,
    devices: Devices,
    confirm: Callable[[Device], bool],
    verify: bool = True,
    force: bool = False,
    eject: bool = True,
    bmap: str | os.PathLike[str] | None = None,
    reporter: Reporter = QUIET,
    allow_usb: bool = False,
) -> FlashResult:
    """Check the target, ask, unmount, write only the mapped blocks, verify, eject.

    ``confirm`` gets the device as found and returns whether to go on (the
    CLI asks the user, or answers yes for ``--yes``). A compressed image is
    decompressed into the cache after the confirmation (the block map needs
    random access) and the target is checked again against its real size.
    """
    image = os.fspath(image)
    if not os.path.isfile(image):
        raise ImageError(f"{image}: no such image file")
    if overlay.is_overlay(image):
        if bmap:
            raise ImageError(f"--bmap: {image} is a piimg overlay; its block map is computed from base + overlay")
        from piimg.build.compose import open_composed

        with open_composed(image, reporter=reporter) as composed:  # the base is checked before anything is asked
            check_image(composed)
            return _flash_source(
                composed, target, devices=devices, confirm=confirm, verify=verify, force=force, eject=eject,
                reporter=reporter, allow_usb=allow_usb,
            )
    compressed = compression_of(image)
    if not compressed:
        check_image(image)
    image_size = os.path.getsize(image)
    device = devices.discover(target)
    # The size of a compressed image is known only after decompressing; checked again then.
    safety.check(device, 0 if compressed else image_size, force=force, dev_root=devices.dev_root, allow_usb=allow_usb)
    if device.kind == "file" and os.path.samefile(device.write_path, image):
        raise UnsafeTarget(f"{target}: is the image itself")
    check_writable(device)
    if not confirm(device):
        raise NotConfirmed(f"{target}: not confirmed; nothing was written")
    if not compressed:
        return _flash_checked(
            image, device, devices, verify=verify, force=force, eject=eject, bmap=bmap, reporter=reporter,
            allow_usb=allow_usb,
        )
    # claimed (piimg.fsutil): the copy of a killed flash is removed by the next one
    with temp_dir(user_cache_dir(), "flash-") as tmp:
        raw = os.path.join(tmp, "image.img")
        # no checksum here: the read-back compares the card with this very file
        decompress.decompress_to(image, raw, reporter, checksum=False)
        check_image(raw, name=image)
        return _flash_checked(
            raw, device, devices, verify=verify, force=force, eject=eject, bmap=bmap, reporter=reporter,
            allow_usb=allow_usb,
        )


def _flash_source(
    composed: ComposedImage,
    target: str,
    *,
    devices: Devices,
    confirm: Callable[[Device], bool],
    verify: bool,
    force: bool,
    eject: bool,
    reporter: Reporter,
    allow_usb: bool,
) -> FlashResult:
    device = devices.discover(target)
    safety.check(device, composed.size, force=force, dev_root=devices.dev_root, allow_usb=allow_usb)
    if device.kind == "file":
        for path, what in zip(composed.inputs, ("overlay", "base image", "shared layer"), strict=False):
            if os.path.samefile(device.write_path, path):
                raise UnsafeTarget(f"{target}: is the {what} itself")
    check_writable(device)
    if not confirm(device):
        raise NotConfirmed(f"{target}: not confirmed; nothing was written")
    return _flash_checked(
        composed, device, devices, verify=verify, force=force, eject=eject, bmap=None, reporter=reporter,
        allow_usb=allow_usb,
    )


def _flash_checked(
    image: str | ComposedImage,
    device: Device,
    devices: Devices,
    *,
    verify: bool,
    force: bool,
    eject: bool,
    bmap: str | os.PathLike[str] | None,
    reporter: Reporter,
    allow_usb: bool,
) -> FlashResult:
    if isinstance(image, ComposedImage):
        image_size = image.size
        device = safety.prepare(devices, device, image_size, force=force, allow_usb=allow_usb)
        with image.fileobj() as fh:
            block_map = blockmap.compute(fh, image_size)  # type: ignore[arg-type]
        source = f"{block_map.source}: base {Path(image.base_path).name} + overlay"
    else:
        image_size = os.path.getsize(image)
        device = safety.prepare(devices, device, image_size, force=force, allow_usb=allow_usb)
        block_map = blockmap.parse_bmap(bmap, image_size) if bmap else blockmap.compute_for(image)
        source = block_map.source
    reporter.info(
        f"writing {human_size(block_map.mapped_bytes)} of {human_size(image_size)} "
        f"(block map from {source}) to {device.write_path}"
    )
    result = write_image(image, device.write_path, block_map, verify=verify, reporter=reporter)
    if eject and device.kind == "block" and device.platform == "darwin":
        devices.eject(device)
    return result
