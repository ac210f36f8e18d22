"""Jinja2 templates: cloud-init files, firstrun.sh, k3s config, MetalLB and ingress."""

from __future__ import annotations

from piimg.manifests.env import environment, render

__all__ = ["environment", "render"]
