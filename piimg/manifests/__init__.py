"""Jinja2 templates: cloud-init files, firstrun.sh, k3s config, MetalLB and ingress."""

from __future__ import annotations

from piimg.manifests.addons import ingress_service, render_addons
from piimg.manifests.env import environment, render
from piimg.manifests.k3s import bgp_password, k3s_server_url, render_k3s_config

__all__ = [
    "bgp_password",
    "environment",
    "ingress_service",
    "k3s_server_url",
    "render",
    "render_addons",
    "render_k3s_config",
]
