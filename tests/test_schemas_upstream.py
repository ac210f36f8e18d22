"""The extracted upstream schemas: complete, from the versions piimg pins, and extracted faithfully."""

from __future__ import annotations

import json
from pathlib import Path

from piimg import versions as v
from tests.manifests_helpers import CHART_VALUES, CRD_SCHEMAS
from tests.schemas import extract

SCHEMAS = Path(__file__).parent / "schemas"
SOURCES = json.loads((SCHEMAS / "SOURCES.json").read_text())


def test_every_extracted_file_is_present_and_recorded() -> None:
    expected = set(extract.CRDS) | set(extract.VALUES_SCHEMAS) | set(extract.VALUES_DEFAULTS)
    assert set(SOURCES["files"]) == expected
    for name, prov in SOURCES["files"].items():
        assert (SCHEMAS / name).is_file(), name
        assert len(prov["commit"]) == 40 and len(prov["blob"]) == 40, name
    # the tests use exactly these files
    assert set(CRD_SCHEMAS.values()) == set(extract.CRDS)
    used = {f for pair in CHART_VALUES.values() for f in pair if f}
    assert used == set(extract.VALUES_SCHEMAS) | set(extract.VALUES_DEFAULTS)


def test_crd_files_match_their_kind() -> None:
    for (api_version, kind), name in CRD_SCHEMAS.items():
        data = json.loads((SCHEMAS / name).read_text())
        assert f"{data['group']}/{data['version']}" == api_version
        assert data["kind"] == kind
        assert data["openAPIV3Schema"]["type"] == "object"


def test_schemas_belong_to_the_pinned_charts() -> None:
    """Bumping a chart pin without re-extracting fails here."""
    charts = SOURCES["charts"]
    assert charts["metallb"]["version"] == v.metallb_chart_version(v.METALLB_VERSION)
    assert charts["ingress-nginx"]["version"] == v.INGRESS_NGINX_CHART_VERSION
    assert charts["nginx-ingress"]["version"] == v.NGINX_INGRESS_CHART_VERSION == v.NGINX_INGRESS_CHART_PIN.version


def test_structure_drops_annotations_not_fields() -> None:
    """A property that happens to be called "description" stays; the annotation goes."""
    schema = {
        "description": "doc",
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": "a field named description"},
            "items": {"type": "array", "items": {"title": "t", "type": "integer", "examples": [1]}},
        },
        "anyOf": [{"$comment": "c", "required": ["description"]}],
    }
    assert extract.structure(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "items": {"type": "array", "items": {"type": "integer"}},
        },
        "anyOf": [{"required": ["description"]}],
    }
