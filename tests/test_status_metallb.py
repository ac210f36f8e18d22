"""MetalLB's own view of its configuration, judged by piimg.status.metallbchk (pure functions).

Fixtures follow upstream, not our code:
* ConfigurationState objects as MetalLB v0.16.1 writes them: names ``controller``
  and ``speaker-<node>``, label ``metallb.io/component-type`` (+ ``metallb.io/node-name``),
  ``status.result`` and ``status.errorSummary``; the Invalid summary is the one
  metallb@v0.16.1:e2etest/configurationstatetests/configurationstate.go:85 expects for a
  password Secret of the wrong type. Each fixture validates against the extracted CRD schema.
* The speaker log line of a TCP-MD5 dial on a kernel without CONFIG_TCP_MD5SIG:
  metallb@v0.16.1:internal/bgp/native/native.go:115 logs op=connect, msg "failed to connect
  to peer" with the error ``dial %q: %s`` (:231) around ``os.NewSyscallError("setsockopt", ...)``
  (:636), and Go's text for ENOPROTOOPT is "protocol not available" (metallb/metallb#1125 shows
  the same line from v0.11).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from piimg.status.metallbchk import judge_configuration, judge_md5
from piimg.status.model import State
from tests.manifests_helpers import make_spec, validate_object

WRONG_SECRET_TYPE = (
    'configuration error: parsing peer peer1 secret type mismatch on "metallb-system"/"bgp-password", '
    'type "kubernetes.io/basic-auth" is expected \nfailed to parse peer peer1 password secret'
)


def state(name: str, result: str, summary: str = "", node: str | None = None) -> dict[str, Any]:
    labels = {"metallb.io/component-type": "speaker" if node else "controller"}
    if node:
        labels["metallb.io/node-name"] = node
    obj: dict[str, Any] = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "ConfigurationState",
        "metadata": {"name": name, "namespace": "metallb-system", "labels": labels},
        "status": {"result": result},
    }
    if summary:
        obj["status"]["errorSummary"] = summary
    validate_object(obj)
    return obj


CONTROLLER_OK = state("controller", "Valid")


@pytest.mark.parametrize(
    ("states", "error", "expected", "words"),
    [
        ([CONTROLLER_OK, state("speaker-k8s-master", "Valid", node="k8s-master")], None, State.OK,
         "Valid for controller, speaker on k8s-master"),
        ([CONTROLLER_OK, state("speaker-k8s-master", "Invalid", WRONG_SECRET_TYPE, node="k8s-master")], None, State.FAIL,
         "MetalLB rejected its configuration: speaker on k8s-master: configuration error: parsing peer peer1 secret type"),
        ([CONTROLLER_OK, state("speaker-k8s-master", "Unknown", node="k8s-master")], None, State.PENDING,
         "not validated yet by speaker on k8s-master"),
        ([], None, State.PENDING, "has not reported"),
        (None, "HTTP 404 Not Found", State.SKIPPED, "older than v0.15.3"),
        (None, "HTTP 403 Forbidden", State.FAIL, "HTTP 403"),
    ],
    ids=["valid", "invalid", "unknown", "none-yet", "no-crd", "forbidden"],
)
def test_configuration_state(states: list[dict[str, Any]] | None, error: str | None, expected: State, words: str) -> None:
    check = judge_configuration(states, error)
    assert check.state is expected, check
    assert words in check.detail
    assert "\n" not in check.detail


def log_line(peer: str, error: str) -> str:
    return json.dumps({"caller": "native.go:115", "error": f"dial {json.dumps(peer)}: {error}", "level": "error",
                       "localASN": 64500, "msg": "failed to connect to peer", "op": "connect",
                       "peer": f"{peer}:179", "peerASN": 65530, "ts": "2026-11-02T10:00:00Z"})


def test_md5_failure_in_speaker_log_is_named() -> None:
    spec = make_spec(cluster={"bgp": {"password_env": "K"}}, env={"K": "key"})
    logs = {
        "k8s-master": log_line("10.0.2.1", "setsockopt: protocol not available") + "\n",
        "k8s-worker1": log_line("10.0.2.1", "connect: connection refused") + "\n",
    }
    check = judge_md5(spec, logs)
    assert check is not None and check.state is State.FAIL
    assert "k8s-master" in check.detail and "k8s-worker1" not in check.detail
    assert "CONFIG_TCP_MD5SIG" in check.detail and "cluster.bgp.password_env" in check.detail
    ok = judge_md5(spec, {"k8s-worker1": logs["k8s-worker1"]})
    assert ok is not None and ok.state is State.OK
    skipped = judge_md5(spec, {})
    assert skipped is not None and skipped.state is State.SKIPPED
    # no password: nothing to judge, whatever the logs say
    assert judge_md5(make_spec(), logs) is None
