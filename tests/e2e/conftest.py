"""Fixtures for the end-to-end tests: a real Debian root filesystem and Pi-OS-like base images.

The e2e tests boot images under qemu (minutes, root needed for debootstrap);
they run with ``make e2e`` (``pytest -m e2e tests/e2e``) or ``PIIMG_E2E=1`` and are
skipped by a plain ``pytest``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e import baseimage

TOOLS = {
    "debootstrap": "debootstrap",
    "qemu-system-x86_64": "qemu-system-x86",
    "mcopy": "mtools",
    "debugfs": "e2fsprogs",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "sfdisk": "fdisk",
    "timeout": "coreutils",
    "ssh-keygen": "openssh-client",
}


def _wanted(config: pytest.Config) -> bool:
    return os.environ.get("PIIMG_E2E") == "1" or "e2e" in (config.getoption("-m") or "").replace("not e2e", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _wanted(config):
        return
    skip = pytest.mark.skip(reason="boots qemu for minutes: run with `make e2e` (or PIIMG_E2E=1, or -m e2e)")
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can explain a failed test."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _check_machine() -> None:
    missing = [f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail("e2e needs: " + ", ".join(missing) + " -- `make e2e` installs them")
    if os.geteuid() != 0:
        pytest.skip("e2e needs root (debootstrap, chroot)")


@pytest.fixture(scope="session")
def login_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh ed25519 key pair per e2e session: (private key file, public key line).

    The e2e spec authorises the public half; the private half goes only into
    the test base image's root file system (baseimage.install_login_key), where
    the guest probe logs in with it. tests.conftest.TEST_KEY has no private half.
    """
    folder = tmp_path_factory.mktemp("login-key")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "piimg-e2e-login", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory, login_keypair: tuple[Path, str]) -> Callable[[str], baseimage.BaseImage]:
    """``base_image("systemd" | "cloudinit")``: a Pi-OS-like base image, built once per session.

    systemd: Debian bookworm as Raspberry Pi OS Bookworm; cloudinit: trixie.
    """
    _check_machine()
    roots: dict[str, Path] = {}
    built: dict[str, baseimage.BaseImage] = {}
    folder = tmp_path_factory.mktemp("base")

    def get(flavour: str) -> baseimage.BaseImage:
        suite = baseimage.FLAVOUR_SUITES[flavour]
        if suite not in roots:
            log: list[str] = []
            roots[suite] = baseimage.rootfs(tmp_path_factory.mktemp(f"rootfs-{suite}") / "root", suite, log=log)
            baseimage.install_login_key(roots[suite], login_keypair[0])
            print("e2e rootfs:", "; ".join(log))
        if flavour not in built:
            built[flavour] = baseimage.build_image(folder / f"base-{flavour}.img", flavour, root=roots[suite])
        return built[flavour]

    return get


def copy_image(src: Path, dest: Path) -> Path:
    """A sparse copy (the base image stays pristine for other tests)."""
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
    return dest
