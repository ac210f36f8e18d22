"""piimg: Raspberry Pi images, flashing, first boot, MikroTik BGP and k3s."""

__version__ = "0.1.0"
