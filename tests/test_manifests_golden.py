"""Golden files for the seed network: one server k8s-master at 10.0.2.10, pool
10.0.4.0/23, ASNs 64500 (cluster) / 65530 (router) -- i.e. the spec defaults.

Regenerate after an intended change with ``PIIMG_UPDATE_GOLDEN=1 pytest
tests/test_manifests_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from piimg.manifests import render_addons, render_k3s_config
from piimg.manifests.bundle import render_bundle
from piimg.spec.secrets import Secrets
from tests.manifests_helpers import TEST_TOKEN, make_spec

GOLDEN = Path(__file__).parent / "golden" / "manifests"
UPDATE = os.environ.get("PIIMG_UPDATE_GOLDEN") == "1"


def rendered() -> dict[str, str]:
    spec = make_spec()
    secrets = Secrets(k3s_token=TEST_TOKEN)
    files = {"k3s-config.k8s-master.yaml": render_k3s_config(spec, spec.initial_server, secrets)}
    files.update(render_addons(spec))
    files["stream-masked.yaml"] = render_bundle(spec, Secrets(k3s_token="unused"), mask_secrets=True).stream()
    return files


@pytest.mark.parametrize("name", sorted(rendered()))
def test_golden(name: str) -> None:
    text = rendered()[name]
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with PIIMG_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from {path}; if intended, regenerate with PIIMG_UPDATE_GOLDEN=1"


def test_no_stray_golden_files() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(rendered())
