"""``python3 -m firstboot run --config /opt/piimg/node.json`` (PYTHONPATH=/opt/piimg)."""

import sys

from .main import main

sys.exit(main())
