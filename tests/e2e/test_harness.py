"""Self-test of the e2e harness, without piimg: base image, boots, log capture, guestfwd.

A hand-made rpi-imager-style ``systemd.run=`` hook installs a stand-in
``piimg-firstboot.service`` that fetches the stand-in k3s installer through the
guestfwd rule and runs it. If this fails, the harness is broken, not piimg.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import imgfs, qemu, standin
from tests.e2e.baseimage import SYS_MODS_INIT, BaseImage
from tests.e2e.conftest import copy_image

INSTALL_HOST = "10.0.2.100"

HOOK = """\
#!/bin/sh
# hand-made first-run hook (the shape rpi-imager's firstrun.sh has)
set -eu
echo "harness-hook: ran as $(id -u) on $(hostname)" > /var/lib/harness-hook
cat > /etc/systemd/system/piimg-firstboot.service <<'EOF'
[Unit]
Description=harness stand-in first-boot service
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'curl -fsS --retry 5 --retry-connrefused -o /root/install.sh http://{host}/install.sh && INSTALL_K3S_VERSION=v9.9.9+k3s1 sh /root/install.sh server --flag'
ExecStartPost=/bin/systemctl disable piimg-firstboot.service

[Install]
WantedBy=multi-user.target
EOF
systemctl enable piimg-firstboot.service
sed -i 's| systemd.run.*||g' /boot/firmware/cmdline.txt
rm -f /boot/firmware/firstrun.sh
exit 0
"""


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_harness_boots_hook_then_service(tmp_path: Path, base_image: Callable[[str], BaseImage]) -> None:
    base = base_image("systemd")
    image = copy_image(base.path, tmp_path / "harness.img")
    fat = imgfs.Fat(image, base.boot_offset)
    ext = imgfs.Ext4(image, base.root_offset)
    fat.write_text("firstrun.sh", HOOK.format(host=INSTALL_HOST))
    # (the sys-mods resize boot stand-in is left out here: test_e2e covers it)
    line = fat.read_text("cmdline.txt").strip().replace(" " + SYS_MODS_INIT, "")
    fat.write_text(
        "cmdline.txt",
        line + " systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n",
    )

    with standin.http_server({"/install.sh": standin.INSTALL_SH.encode()}) as server:
        fwd = [qemu.Forward(INSTALL_HOST, 80, server.port)]
        first = qemu.boot(image, number=1, workdir=tmp_path, forwards=fwd, timeout=240, boot_offset=base.boot_offset)
        print(f"boot 1: {first.seconds:.1f}s rc={first.returncode}")
        assert not first.timed_out, "boot 1 timed out:\n" + first.tail()
        assert ext.read_text("/var/lib/harness-hook").startswith("harness-hook: ran as 0"), first.tail()
        assert "systemd.run" not in fat.read_text("cmdline.txt")
        assert not fat.exists("firstrun.sh")

        second = qemu.boot(image, number=2, workdir=tmp_path, forwards=fwd, timeout=240, boot_offset=base.boot_offset)
        print(f"boot 2: {second.seconds:.1f}s rc={second.returncode}")
        assert not second.timed_out, "boot 2 timed out:\n" + second.tail()
        assert "PIIMG-E2E-PROBE:" in second.log, second.tail()
        assert [r.path for r in server.requests] == ["/install.sh"], second.tail()

    record = json.loads(ext.read_text("/var/lib/piimg-e2e/install.json"))
    assert record["argv"] == ["server", "--flag"]
    assert record["env"]["INSTALL_K3S_VERSION"] == "v9.9.9+k3s1"
    assert record["uid"] == 0
    # the service disabled itself
    assert "piimg-firstboot.service" not in ext.names("/etc/systemd/system/multi-user.target.wants")
