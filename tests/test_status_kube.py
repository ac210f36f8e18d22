"""The Kubernetes status checks as data: recorded-style API answers in, checks out.

Each ``tests/data/status/kube/*.json`` case holds spec overrides, the facts
:func:`piimg.status.kube.gather` would return (the API's JSON per read, or
the error), the checks that must not be ok (state and words of the detail;
every other check must be ok) and the LoadBalancer IPs handed on to the
router and HTTP checks.

Where the JSON comes from: every body is checked here against the upstream
schemas, so a case cannot hold a shape the API server never sends: core
objects (NodeList, PodList, ServiceList) against the Kubernetes OpenAPI
schema of the pinned release (kubernetes-validate, ``KUBERNETES_SCHEMA_VERSION``),
IPAddressPools against MetalLB's CRD (tests/schemas, see SOURCES.json there).
:func:`test_gather_returns_the_api_json` checks that ``gather`` hands the
judges exactly the JSON the server sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from piimg.spec import load as spec_load
from piimg.status import kube
from piimg.status.model import State
from piimg.versions import KUBERNETES_SCHEMA_VERSION
from tests.fake_k8s import FakeKube, healthy
from tests.manifests_helpers import validate_object

CASES = sorted((Path(__file__).parent / "data" / "status" / "kube").glob("*.json"))
SPEC_DOC: dict[str, Any] = {
    "network": {"subnet": "127.0.2.0/23", "gateway": "127.0.2.1", "dhcp_pool": "127.0.3.1-127.0.3.254"},
    "cluster": {"pools": [{"name": "default", "addresses": ["127.0.4.0/23"]}]},
    "nodes": [{"hostname": "k8s-master", "role": "server", "address": "127.0.2.10"}],
}


def _case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _validate_bodies(facts: dict[str, Any]) -> None:
    for name in ("nodes", "metallb_pods", "services"):
        body = facts.get(name, {}).get("body")
        if body is not None:
            kubernetes_validate.validate(body, KUBERNETES_SCHEMA_VERSION, strict=True)
    pools = facts.get("pools", {}).get("body")
    if pools is not None:
        assert pools["kind"] == "IPAddressPoolList"
        for item in pools["items"]:
            validate_object(item)
    states = facts.get("config_states", {}).get("body")
    if states is not None:
        assert states["kind"] == "ConfigurationStateList"
        for item in states["items"]:
            validate_object(item)  # against MetalLB v0.16.1's ConfigurationState CRD


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_kube_case(path: Path, home: Path) -> None:
    case = _case(path)
    _validate_bodies(case["facts"])
    spec = spec_load.parse({**SPEC_DOC, **case["spec"]}, env=case.get("env", {}))
    checks, found = kube.judge(spec, kube.KubeFacts.from_json(case["facts"]))
    assert [c.name for c in checks] == ["kubernetes api", *kube.JUDGED]
    for check in checks:
        want = case["expect"].get(check.name)
        if want is None:
            assert check.state is State.OK, check
        else:
            assert check.state is State(want[0]), check
            assert want[1] in check.detail, check
    assert found.lb_ips == case["lb_ips"]


def test_the_cases_cover_every_judge() -> None:
    broken = {name for path in CASES for name in _case(path)["expect"]}
    assert set(kube.JUDGED) | {"kubernetes api"} <= broken
    assert any(not _case(p)["expect"] for p in CASES), "at least one healthy case"


@pytest.mark.integration
def test_gather_returns_the_api_json(tmp_path: Path) -> None:
    responses = healthy([("k8s-master", "127.0.2.10")], "127.0.4.1", 80)
    fk = FakeKube(tmp_path, responses)
    try:
        facts = kube.gather(fk.kubeconfig(tmp_path / "kc"), timeout=5)
    finally:
        fk.close()
    assert facts.api.body is not None and facts.api.body["gitVersion"] == "v1.36.3+k3s1"
    assert facts.nodes.body is not None
    assert facts.nodes.body["items"] == responses["/api/v1/nodes"]["items"]
    assert facts.metallb_pods.items() == responses["/api/v1/namespaces/metallb-system/pods"]["items"]
    assert facts.services.items() == responses["/api/v1/services"]["items"]
    assert facts.pools.items() == responses["/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"]["items"]
    states = responses["/apis/metallb.io/v1beta1/namespaces/metallb-system/configurationstates"]
    assert facts.config_states.items() == states["items"]
    for item in states["items"]:
        validate_object(item)
    assert facts.speaker_logs.body is None  # read only when a BGP password is configured


@pytest.mark.integration
def test_gather_reads_speaker_logs_for_the_md5_check(tmp_path: Path, home: Path) -> None:
    """With a password, the tail of each speaker's log is read (GET .../pods/NAME/log?container=speaker)."""
    responses = healthy([("k8s-master", "127.0.2.10"), ("k8s-worker1", "127.0.2.11")], "127.0.4.1", 80)
    # the native speaker's dial failure on a kernel without CONFIG_TCP_MD5SIG
    # (metallb@v0.16.1:internal/bgp/native/native.go:115, :231; metallb/metallb#1125)
    failure = json.dumps({"caller": "native.go:115", "error": 'dial "127.0.2.1": setsockopt: protocol not available',
                          "level": "error", "msg": "failed to connect to peer", "op": "connect", "ts": "2026-11-02T10:00:00Z"})
    responses["/api/v1/namespaces/metallb-system/pods/metallb-speaker-0/log"] = failure + "\n"
    responses["/api/v1/namespaces/metallb-system/pods/metallb-speaker-1/log"] = "started\n"
    fk = FakeKube(tmp_path, responses)
    try:
        facts = kube.gather(fk.kubeconfig(tmp_path / "kc"), timeout=5, speaker_logs=True)
    finally:
        fk.close()
    assert facts.speaker_logs.body == {"logs": {"k8s-master": failure + "\n", "k8s-worker1": "started\n"}}
    spec = spec_load.parse({**SPEC_DOC, "nodes": [*SPEC_DOC["nodes"], {"hostname": "k8s-worker1", "role": "agent",
                                                                        "address": "127.0.2.11"}],
                            "cluster": {**SPEC_DOC["cluster"], "bgp": {"password_env": "K"}}}, env={"K": "key"})
    check = kube.judge_metallb_config(spec, facts)
    assert check.state is State.FAIL and "speaker on k8s-master cannot sign BGP" in check.detail
