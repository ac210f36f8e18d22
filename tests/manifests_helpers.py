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
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


CRD_SCHEMAS = {
    ("metallb.io/v1beta1", "IPAddressPool"): "metallb.io_v1beta1_ipaddresspool.json",
    ("metallb.io/v1beta2", "BGPPeer"): "metallb.io_v1beta2_bgppeer.json",
    ("metallb.io/v1beta1", "BGPAdvertisement"): "metallb.io_v1beta1_bgpadvertisement.json",
    ("helm.cattle.io/v1", "HelmChart"): "helm.cattle.io_v1_helmchart.json",
}


def validate_object(obj: dict[str, Any]) -> None:
    """Core objects against the Kubernetes OpenAPI schema, custom resources against tests/schemas."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        jsonschema.Draft202012Validator(_schema(CRD_SCHEMAS[key])).validate(obj)  # type: ignore[index]
        return
    # Anything else must be a core Kubernetes object: kubernetes-validate
    # raises SchemaNotFoundError for a kind it does not know.
    kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)
