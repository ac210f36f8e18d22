"""Run first boot in a child process the way the unit does, with a recording runner.

Usage: python -I driver.py run --config ... --root ...; environment:
FB_PAYLOAD (the directory holding ``firstboot/``, like /opt/piimg), FB_CTL
(recorder control dir), FB_KILL="STEP:start|done" to SIGKILL itself there.
"""

import os
import signal
import sys

sys.path[:0] = [os.environ["FB_PAYLOAD"], os.path.dirname(os.path.abspath(__file__))]

from firstboot.main import main  # noqa: E402
from recorder import Recorder  # noqa: E402

KILL = os.environ.get("FB_KILL", "")


def hook(step, phase):
    if f"{step}:{phase}" == KILL:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], runner=Recorder(os.environ["FB_CTL"]), hook=hook))
