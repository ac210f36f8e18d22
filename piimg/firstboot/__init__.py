"""piimg first boot: runs ON THE PI with the system Python (3.9+), stdlib only.

Shipped onto the boot partition as ``piimg/firstboot/`` and copied to
``/opt/piimg/firstboot`` by the first-run hook. Only relative imports inside
this package: it is imported as ``firstboot`` on the Pi and as
``piimg.firstboot`` on the host.
"""

VERSION = "0.1.0"
