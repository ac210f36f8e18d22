"""Shared helpers for the manifests tests: specs, parsing, schema validation."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from piimg.spec import load as spec_load
from piimg.spec import model as spec_model
from piimg.versions import KUBERNETES_SCHEMA_VERSION
from tests.conftest import TEST_KEY

SCHEMAS = Path(__file__).parent / "schemas"
TEST_TOKEN = "K10piimg-test-token-0123456789abcdef"

SERVER_1 = [{"hostname": "k8s-master", "role": "server", "address": "10.0.2.10"}]
SERVER_1_AGENTS_2 = [
    *SERVER_1,
    {"hostname": "k8s-worker1", "role": "agent", "address": "10.0.2.11"},
    {"hostname": "k8s-worker2", "role": "agent", "address": "10.0.2.12"},
]
SERVERS_3 = [
    *SERVER_1,
    {"hostname": "k8s-master2", "role": "server", "address": "10.0.2.11"},
    {"hostname": "k8s-master3", "role": "server", "address": "10.0.2.12"},
]
TOPOLOGIES = {"1-server": SERVER_1, "1-server-2-agents": SERVER_1_AGENTS_2, "3-servers": SERVERS_3}
INGRESSES = ["nginx", "ingress-nginx", "traefik", "none"]


def make_spec(
    *,
    nodes: list[dict[str, Any]] | None = None,
    cluster: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    **top: Any,
) -> spec_model.Spec:
    """A validated spec: the defaults plus what is given."""
    raw: dict[str, Any] = {"access": {"ssh_authorized_keys": [TEST_KEY]}, **top}
    if nodes is not None:
        raw["nodes"] = nodes
    cluster = dict(cluster or {})
    if cluster.get("ingress") == "traefik" and "disable" not in cluster:
        cluster["disable"] = ["servicelb"]
    if cluster:
        raw["cluster"] = cluster
    return spec_load.parse(raw, env=env or {}, home=Path("/nonexistent"))


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a (multi-document) text."""
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for d in docs:
        assert isinstance(d, dict), d
    return docs


@cache
def _schema(name: str) -> Any:
    return json.loads((SCHEMAS / name).read_text())


#: (apiVersion, kind) -> file written by tests/schemas/extract.py from the
#: upstream CRD (repo@commit:path of each in tests/schemas/SOURCES.json).
CRD_SCHEMAS = {
    ("metallb.io/v1beta1", "IPAddressPool"): "metallb.io_v1beta1_ipaddresspool.json",
    ("metallb.io/v1beta2", "BGPPeer"): "metallb.io_v1beta2_bgppeer.json",
    ("metallb.io/v1beta1", "BGPAdvertisement"): "metallb.io_v1beta1_bgpadvertisement.json",
    ("metallb.io/v1beta1", "ConfigurationState"): "metallb.io_v1beta1_configurationstate.json",
    ("helm.cattle.io/v1", "HelmChart"): "helm.cattle.io_v1_helmchart.json",
}


def strict(node: Any) -> Any:
    """A CRD schema that rejects unknown fields, as ``kubectl apply --validate=strict`` does.

    Without it the API server prunes an unknown (misspelt) field silently;
    the tests want to hear about it. Objects marked
    ``x-kubernetes-preserve-unknown-fields`` or with their own
    ``additionalProperties`` keep what they have.
    """
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def _crd_validator(name: str) -> jsonschema.Draft7Validator:
    # openAPIV3Schema is OpenAPI 3.0's JSON Schema subset; Draft 7 reads every
    # keyword these CRDs use (x-kubernetes-* extensions are ignored).
    return jsonschema.Draft7Validator(strict(_schema(name)["openAPIV3Schema"]))


def validate_object(obj: dict[str, Any]) -> None:
    """Core objects against the Kubernetes OpenAPI schema, custom resources against their upstream CRD."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        _crd_validator(CRD_SCHEMAS[key]).validate(obj)  # type: ignore[index]
        return
    # Anything else must be a core Kubernetes object: kubernetes-validate
    # raises SchemaNotFoundError for a kind it does not know.
    kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)


# -- chart values -----------------------------------------------------------------

#: chart name -> (values schema file or None, chart defaults file); from tests/schemas/SOURCES.json.
CHART_VALUES = {
    "metallb": ("metallb.values.schema.json", "metallb.values.json"),
    "nginx-ingress": ("nginx-ingress.values.schema.json", "nginx-ingress.values.json"),
    "ingress-nginx": (None, "ingress-nginx.values.json"),
}


def coalesce(defaults: Any, values: Any) -> Any:
    """Helm's merge of user values over the chart's values.yaml (null deletes a default)."""
    if not isinstance(defaults, dict) or not isinstance(values, dict):
        return values
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = coalesce(defaults.get(key), value)
    return merged


def unknown_keys(defaults: Any, values: Any, prefix: str = "") -> list[str]:
    """Keys set in ``values`` that the chart's values.yaml does not have (typos, for charts without a schema)."""
    if not isinstance(values, dict):
        return []
    if not isinstance(defaults, dict):
        return [] if defaults is None else [prefix]
    out = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in defaults:
            out.append(path)
        elif defaults[key] not in (None, {}):
            out += unknown_keys(defaults[key], value, path)
    return out


def _kubernetes_definitions() -> Any:
    """kubernetes-validate's bundled Kubernetes JSON schema definitions."""
    import referencing
    import referencing.jsonschema

    path = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES_SCHEMA_VERSION}-local" / "_definitions.json"
    return referencing.Resource.from_contents(json.loads(path.read_text()), default_specification=referencing.jsonschema.DRAFT7)


@cache
def _values_validator(schema_name: str) -> Any:
    import referencing
    import referencing.jsonschema

    # the chart refers to "#/definitions/..."; the bundle keeps them under "$defs"
    schema = _rewrite_refs(_schema(schema_name))
    definitions = _kubernetes_definitions()

    def retrieve(uri: str) -> referencing.Resource:
        # The NGINX chart points at nginxinc/kubernetes-json-schema's
        # _definitions.json for Kubernetes types; tests are offline, so the
        # same definitions come from kubernetes-validate's bundle.
        if uri.endswith("/_definitions.json"):
            return definitions
        raise referencing.exceptions.NoSuchResource(ref=uri)

    registry: referencing.Registry = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]
    # Helm accepts MetalLB's "https://json-schema.org/draft-07/schema#" (the
    # official id is http://); jsonschema would fall back to the latest draft.
    cls = jsonschema.Draft201909Validator if "2019-09" in schema.get("$schema", "") else jsonschema.Draft7Validator
    return cls(schema, registry=registry)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/definitions/", "#/$defs/") if k == "$ref" and "_definitions.json" in v else _rewrite_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(n) for n in node]
    return node


def validate_values(chart: str, values: dict[str, Any]) -> None:
    """``valuesContent`` merged over the chart defaults, checked against the chart's values.schema.json.

    Every key set must also exist in the chart's values.yaml: Helm ignores an
    unknown (misspelt) key silently where the schema does not close the object,
    and ingress-nginx ships no schema at all.
    """
    schema_name, defaults_name = CHART_VALUES[chart]
    defaults = _schema(defaults_name)
    unknown = unknown_keys(defaults, values)
    assert not unknown, f"{chart}: keys not in the chart's values.yaml: {unknown}"
    if schema_name is not None:
        _values_validator(schema_name).validate(coalesce(defaults, values))
