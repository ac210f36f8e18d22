"""What ``piimg manifests`` shows or writes for one node.

A node gets its k3s config; the initial server also gets the addons. As one
stream, every file is a YAML document headed by a comment with the path it
takes on the node, so the whole output parses as multi-document YAML.
With ``-o DIR`` the addons land in DIR, one file each, exactly as the server
drops them into its auto-deploy folder, and the k3s config goes to
``DIR/k3s/<hostname>/config.yaml`` (a subfolder, so copying ``DIR/*.yaml``
into the manifests folder never picks it up as an addon).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from piimg.fsutil import write_atomic
from piimg.manifests.addons import render_addons, warnings
from piimg.manifests.k3s import render_k3s_config
from piimg.spec.model import NodeSpec, Spec
from piimg.spec.secrets import Secrets
from piimg.versions import K3S_MANIFESTS_DIR

if TYPE_CHECKING:
    from piimg.fetch.artifacts import ChartArchive

K3S_CONFIG_PATH: Final = "/etc/rancher/k3s/config.yaml"


@dataclass(frozen=True)
class Bundle:
    node: NodeSpec
    k3s_config: str
    addons: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    masked: bool = True

    def stream(self) -> str:
        """All files as one multi-document YAML text."""
        parts = [f"# {K3S_CONFIG_PATH} on {self.node.hostname}\n{self.k3s_config}"]
        for name, text in self.addons.items():
            parts.append(f"# {K3S_MANIFESTS_DIR}/{name} on {self.node.hostname}\n{text}")
        return "---\n".join(_ending_newline(p) for p in parts)

    def write(self, out_dir: Path) -> list[Path]:
        """Write every file atomically below ``out_dir``; return the paths written.

        Files holding real secrets are 0600; masked output is 0644.
        """
        mode = 0o644 if self.masked else 0o600
        written = []
        for name, text in self.addons.items():
            path = out_dir / name
            write_atomic(path, _ending_newline(text), mode=mode)
            written.append(path)
        path = out_dir / "k3s" / self.node.hostname / "config.yaml"
        write_atomic(path, _ending_newline(self.k3s_config), mode=mode)
        written.append(path)
        return written


def _ending_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def render_bundle(
    spec: Spec,
    secrets: Secrets,
    node_name: str | None = None,
    *,
    mask_secrets: bool = True,
    charts: Mapping[str, ChartArchive] | None = None,
) -> Bundle:
    """The files first boot deploys on ``node_name`` (default: the initial server).

    ``charts``: the fetched chart archives, embedded as the build does; without
    them the HelmCharts name repository and version.
    """
    node = spec.initial_server if node_name is None else spec.node(node_name)
    addons: dict[str, str] = {}
    if node.hostname == spec.initial_server.hostname:
        addons = render_addons(spec, mask_secrets=mask_secrets, charts=charts)
    return Bundle(
        node=node,
        k3s_config=render_k3s_config(spec, node, secrets, mask_secrets=mask_secrets),
        addons=addons,
        warnings=tuple(warnings(spec)),
        masked=mask_secrets,
    )
