"""Judging what MetalLB says about its own configuration (pure functions, no I/O).

``piimg status`` takes the BGP session state from the router: MetalLB's native
speaker publishes no session object (``BGPSessionState`` exists only in
FRR-K8s mode; metallb v0.16.1 website/content/faq). Without these checks, a
configuration MetalLB refused would show up only as "no BGP session".

* **ConfigurationState** (``metallb.io/v1beta1``, from MetalLB v0.15.3): one
  object per component, ``controller`` and ``speaker-<node>``, labelled
  ``metallb.io/component-type`` (and ``metallb.io/node-name`` for speakers),
  with ``status.result`` Valid | Invalid | Unknown and ``status.errorSummary``
  (metallb@v0.16.1: api/v1beta1/configurationstate_types.go,
  e2etest/configurationstatetests/configurationstate.go).
* **The speaker's log**, when a BGP password is configured: the TCP-MD5 dial
  failure is not a configuration error, so it never reaches
  ConfigurationState. The native speaker logs ``"msg":"failed to connect to
  peer"`` with ``"error":"dial \\"<peer>\\": setsockopt: protocol not available"``
  (internal/bgp/native/native.go: the ``connect`` log, ``dial %q: %s`` around
  ``dialMD5``'s ``os.NewSyscallError("setsockopt", ...)``; metallb/metallb#1125).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from piimg.spec.model import Spec
from piimg.status.model import Check, State

Json = dict[str, Any]

CONFIG_CHECK: Final = "metallb config"
MD5_CHECK: Final = "metallb bgp password"
#: What Go prints for ENOPROTOOPT after ``os.NewSyscallError("setsockopt", ...)``.
NO_MD5SIG_ERROR: Final = "setsockopt: protocol not available"
COMPONENT_LABEL: Final = "metallb.io/component-type"
NODE_LABEL: Final = "metallb.io/node-name"


def _labels(obj: Json) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _who(state: Json) -> str:
    labels = _labels(state)
    if labels.get(COMPONENT_LABEL) == "speaker" and labels.get(NODE_LABEL):
        return f"speaker on {labels[NODE_LABEL]}"
    return str(labels.get(COMPONENT_LABEL) or (state.get("metadata") or {}).get("name") or "?")


def judge_configuration(states: list[Json] | None, error: str | None = None) -> Check:
    """``configurationstates`` in MetalLB's namespace -> one check.

    ``error`` is why the list could not be read (HTTP 404: the CRD is not
    installed, i.e. MetalLB before v0.15.3 or not deployed yet).
    """
    if states is None:
        if error and "404" in error:
            return Check(CONFIG_CHECK, State.SKIPPED, "no ConfigurationState kind (MetalLB older than v0.15.3, or not installed yet)")
        return Check(CONFIG_CHECK, State.FAIL, f"cannot read MetalLB's ConfigurationState: {error}")
    if not states:
        return Check(CONFIG_CHECK, State.PENDING, "MetalLB has not reported on its configuration yet")
    invalid, unknown, valid = [], [], []
    for state in states:
        status = state.get("status") or {}
        result = status.get("result") or "Unknown"
        if result == "Invalid":
            summary = " ".join(str(status.get("errorSummary") or "no error summary").split())
            invalid.append(f"{_who(state)}: {summary}")
        elif result == "Valid":
            valid.append(_who(state))
        else:
            unknown.append(_who(state))
    if invalid:
        return Check(CONFIG_CHECK, State.FAIL, "MetalLB rejected its configuration: " + "; ".join(sorted(invalid)))
    if unknown:
        return Check(CONFIG_CHECK, State.PENDING, "not validated yet by " + ", ".join(sorted(unknown)))
    return Check(CONFIG_CHECK, State.OK, "Valid for " + ", ".join(sorted(valid)))


def judge_md5(spec: Spec, speaker_logs: Mapping[str, str]) -> Check | None:
    """With a BGP password: did a speaker fail to set TCP_MD5SIG? ``speaker_logs``: node name -> recent log.

    None without a password (nothing to judge).
    """
    if spec.cluster.bgp.password_env is None:
        return None
    if not speaker_logs:
        return Check(MD5_CHECK, State.SKIPPED, "no speaker log to read")
    failing = sorted(node for node, text in speaker_logs.items() if NO_MD5SIG_ERROR in text)
    if failing:
        return Check(
            MD5_CHECK,
            State.FAIL,
            f"the speaker on {', '.join(failing)} cannot sign BGP with the TCP-MD5 key ({NO_MD5SIG_ERROR}): the "
            "kernel has no CONFIG_TCP_MD5SIG, as stock Raspberry Pi OS kernels; remove cluster.bgp.password_env "
            "and the router's key, or boot a kernel built with CONFIG_TCP_MD5SIG=y",
        )
    return Check(MD5_CHECK, State.OK, f"no TCP-MD5 failure in the speaker logs of {', '.join(sorted(speaker_logs))}")
