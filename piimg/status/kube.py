"""Kubernetes-side checks: gather the facts, then judge them with pure functions.

:func:`gather` is the only code that talks to the API (through the official
``kubernetes`` client). It turns every answer into the plain JSON the API
server sent (``sanitize_for_serialization``: camelCase keys, as in
``kubectl get -o json``) or the one-line reason the read failed, and returns
them as :class:`KubeFacts`. The ``judge_*`` functions take a spec and those
facts and return a :class:`~piimg.status.model.Check`; they never do I/O, so
``tests/data/status/kube/*.json`` drives them with recorded-style API
answers (pyinfra's facts: a gathering command plus a pure ``process``).

To add a check: read what it needs in :func:`gather` (a new
:class:`Reading` field), write a pure ``judge_x(spec, facts) -> Check``,
append it to :data:`JUDGES`, and add JSON cases.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from piimg.spec.model import Spec
from piimg.status import metallbchk
from piimg.status.kubeaccess import KubeAccess
from piimg.status.model import Check, State
from piimg.versions import METALLB_NAMESPACE

Json = dict[str, Any]


@dataclass(frozen=True)
class Reading:
    """One API read: the JSON body the server sent, or why there is none."""

    body: Json | None = None
    error: str | None = None

    def items(self) -> list[Json]:
        return list((self.body or {}).get("items") or [])


@dataclass(frozen=True)
class KubeFacts:
    """Everything the Kubernetes checks look at, as plain JSON."""

    #: ``{"host": ..., "gitVersion": ...}``; error: why the API is not usable
    api: Reading
    nodes: Reading = Reading()
    metallb_pods: Reading = Reading()
    pools: Reading = Reading()
    services: Reading = Reading()
    #: MetalLB's ConfigurationState list (metallb.io/v1beta1, MetalLB >= v0.15.3)
    config_states: Reading = Reading()
    #: ``{"logs": {node: recent speaker log}}``, read only when a BGP password is configured
    speaker_logs: Reading = Reading()

    @classmethod
    def from_json(cls, data: Json) -> KubeFacts:
        """Facts as written in the test cases: ``{"api": {"body": ...} | {"error": ...}, ...}``."""
        return cls(**{name: Reading(**data.get(name, {})) for name in cls.__dataclass_fields__})


@dataclass
class ClusterFacts:
    """What the checks learned about the cluster, for the later router/HTTP checks."""

    lb_services: list[tuple[str, str, int]] = field(default_factory=list)  # (ns/name, ip, port)
    lb_ips: list[str] = field(default_factory=list)


# -- gathering ---------------------------------------------------------------------


def _short(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', None) or ''}".strip()
    # urllib3's MaxRetryError / NewConnectionError: the reason, not the whole repr
    reason = getattr(exc, "reason", None)
    if isinstance(reason, Exception):
        exc = reason
    text = str(exc).strip()
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).strip().lower()
    if "CERTIFICATE_VERIFY_FAILED" in text:
        why = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text.split("certificate verify failed:")[-1]).strip(" )'\"")
        return f"the server's certificate is not signed by the kubeconfig's CA ({why})"
    lines = text.splitlines()
    return lines[0][:160] if lines else type(exc).__name__


#: How much of each speaker's log to read for the TCP-MD5 check.
SPEAKER_LOG_LINES: Final = 300


def gather(kubeconfig: Path | KubeAccess, *, timeout: float, speaker_logs: bool = False) -> KubeFacts:
    """Read every object the checks need; a read that fails is recorded, not raised.

    ``speaker_logs``: also read the tail of every speaker's log (when a BGP
    password is configured: a failed TCP-MD5 setsockopt shows only there).
    """
    access = kubeconfig if isinstance(kubeconfig, KubeAccess) else KubeAccess.from_file(kubeconfig)
    if access.problem:
        return KubeFacts(api=Reading(error=access.problem))
    server = ""
    try:
        from kubernetes import client

        api_client = access.api_client()
        api_client.configuration.retries = 0
        server = api_client.configuration.host
        core = client.CoreV1Api(api_client)
        version = client.VersionApi(api_client).get_code(_request_timeout=timeout)
        api = Reading(body={"host": api_client.configuration.host, "gitVersion": version.git_version})
    except Exception as exc:  # any failure here means the API is not usable
        reason = _short(exc)
        if not server:
            return KubeFacts(api=Reading(error=f"{access.source}: {reason}"))
        where = f"{server}: {reason}" if reason.startswith(("the server's", "HTTP")) else f"{server} unreachable ({reason})"
        return KubeFacts(api=Reading(error=f"{where}; kubeconfig: {access.source}"))

    def read(call: Callable[[], Any]) -> Reading:
        try:
            found = call()
        except Exception as exc:  # the client raises ApiException, urllib3 and OSError errors
            return Reading(error=_short(exc))
        body = found if isinstance(found, dict) else api_client.sanitize_for_serialization(found)
        return Reading(body=body)

    custom = client.CustomObjectsApi(api_client)
    pods = read(lambda: core.list_namespaced_pod(METALLB_NAMESPACE, _request_timeout=timeout))
    logs = Reading()
    if speaker_logs:
        texts: dict[str, str] = {}
        failures: list[str] = []
        for pod in pods.items():
            if _component(pod) != "speaker":
                continue
            name = str(_get(pod, "metadata", "name"))
            node = str(_get(pod, "spec", "nodeName") or name)
            try:
                texts[node] = str(core.read_namespaced_pod_log(
                    name, METALLB_NAMESPACE, container="speaker", tail_lines=SPEAKER_LOG_LINES, _request_timeout=timeout
                ))
            except Exception as exc:  # ApiException, urllib3 and OSError errors, as in read()
                failures.append(f"{name}: {_short(exc)}")
        logs = Reading(body={"logs": texts}) if texts or not failures else Reading(error="; ".join(failures))
    return KubeFacts(
        api=api,
        nodes=read(lambda: core.list_node(_request_timeout=timeout)),
        metallb_pods=pods,
        pools=read(lambda: custom.list_namespaced_custom_object(
            "metallb.io", "v1beta1", METALLB_NAMESPACE, "ipaddresspools", _request_timeout=timeout
        )),
        services=read(lambda: core.list_service_for_all_namespaces(_request_timeout=timeout)),
        config_states=read(lambda: custom.list_namespaced_custom_object(
            "metallb.io", "v1beta1", METALLB_NAMESPACE, "configurationstates", _request_timeout=timeout
        )),
        speaker_logs=logs,
    )


# -- judging (pure) ------------------------------------------------------------------


def _get(obj: Json, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)  # type: ignore[assignment]
    return obj


def _pod_ready(pod: Json) -> bool:
    if _get(pod, "status", "phase") != "Running":
        return False
    return all(cs.get("ready") for cs in (_get(pod, "status", "containerStatuses") or []))


def in_pools(spec: Spec, ip: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return any(addr in rng for pool in spec.cluster.pools for rng in pool.addresses)


def judge_api(spec: Spec, facts: KubeFacts) -> Check:
    if facts.api.body is None:
        return Check("kubernetes api", State.FAIL, facts.api.error or "no answer")
    return Check("kubernetes api", State.OK, f"{facts.api.body.get('host')} answers, {facts.api.body.get('gitVersion')}")


def judge_nodes(spec: Spec, facts: KubeFacts) -> Check:
    """Every spec node registered, Ready, with the expected InternalIP."""
    if facts.nodes.error is not None:
        return Check("nodes ready", State.FAIL, facts.nodes.error)
    items = {_get(n, "metadata", "name"): n for n in facts.nodes.items()}
    problems = []
    for node in spec.nodes:
        kn = items.get(node.hostname)
        if kn is None:
            problems.append(f"{node.hostname} not registered")
            continue
        conditions = _get(kn, "status", "conditions") or []
        ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "Unknown")
        addrs = [a.get("address") for a in _get(kn, "status", "addresses") or [] if a.get("type") == "InternalIP"]
        if ready != "True":
            problems.append(f"{node.hostname} not Ready ({ready})")
        elif str(node.address) not in addrs:
            problems.append(f"{node.hostname} has address {', '.join(addrs) or 'none'}, expected {node.address}")
    if problems:
        return Check("nodes ready", State.FAIL, "; ".join(problems))
    return Check("nodes ready", State.OK, f"{len(spec.nodes)}/{len(spec.nodes)} Ready at their addresses")


def _component(pod: Json) -> str:
    labels = _get(pod, "metadata", "labels") or {}
    return str(labels.get("app.kubernetes.io/component") or labels.get("component") or "")


def judge_metallb(spec: Spec, facts: KubeFacts) -> Check:
    """The controller and one speaker per node, Running and ready."""
    if facts.metallb_pods.error is not None:
        return Check("metallb", State.FAIL, facts.metallb_pods.error)
    pods = facts.metallb_pods.items()
    controllers = [p for p in pods if _component(p) == "controller"]
    speakers = [p for p in pods if _component(p) == "speaker"]
    ready_c = sum(_pod_ready(p) for p in controllers)
    ready_s = sum(_pod_ready(p) for p in speakers)
    detail = f"controller {ready_c}/{len(controllers)} ready, speakers {ready_s}/{len(spec.nodes)} ready"
    if not pods:
        return Check("metallb", State.FAIL, f"no pods in {METALLB_NAMESPACE}: MetalLB is not deployed")
    if ready_c >= 1 and ready_s >= len(spec.nodes):
        return Check("metallb", State.OK, detail)
    bad = [f"{_get(p, 'metadata', 'name')} {_get(p, 'status', 'phase') or '?'}" for p in controllers + speakers if not _pod_ready(p)]
    return Check("metallb", State.FAIL, detail + (f" ({', '.join(bad[:3])})" if bad else ""))


def judge_pools(spec: Spec, facts: KubeFacts) -> Check:
    """An IPAddressPool for every ``cluster.pools`` entry."""
    if facts.pools.error is not None:
        return Check("metallb pools", State.FAIL, facts.pools.error)
    names = {_get(item, "metadata", "name") for item in facts.pools.items()}
    wanted = [p.name for p in spec.cluster.pools]
    missing = [n for n in wanted if n not in names]
    if missing:
        return Check("metallb pools", State.FAIL, f"IPAddressPool missing: {', '.join(missing)}")
    return Check("metallb pools", State.OK, f"IPAddressPools present: {', '.join(wanted)}")


def judge_metallb_config(spec: Spec, facts: KubeFacts) -> Check:
    """What MetalLB says of its configuration, and (with a BGP password) whether a speaker failed TCP-MD5.

    So a configuration MetalLB refused, or a key the kernel cannot use, is
    named here instead of showing up later only as "no BGP session".
    """
    states = facts.config_states
    config = metallbchk.judge_configuration(None if states.body is None else states.items(), states.error)
    if spec.cluster.bgp.password_env is None:
        return config
    if facts.speaker_logs.body is None:
        logs_note = f"speaker logs unreadable ({facts.speaker_logs.error or 'not read'})"
        return Check(config.name, config.state, f"{config.detail}; {logs_note}")
    md5 = metallbchk.judge_md5(spec, facts.speaker_logs.body.get("logs") or {})
    if md5 is None or md5.state is State.OK:
        return config
    if md5.state is State.FAIL:
        detail = md5.detail if config.state is not State.FAIL else f"{md5.detail}; {config.detail}"
        return Check(config.name, State.FAIL, detail)
    return Check(config.name, config.state, f"{config.detail}; {md5.detail}")


def load_balancers(spec: Spec, facts: KubeFacts) -> ClusterFacts:
    """The LoadBalancer services whose external IP lies in a pool: what router and HTTP checks ask."""
    found = ClusterFacts()
    for svc in facts.services.items():
        if _get(svc, "spec", "type") != "LoadBalancer":
            continue
        name = f"{_get(svc, 'metadata', 'namespace')}/{_get(svc, 'metadata', 'name')}"
        port = next((p.get("port") for p in _get(svc, "spec", "ports") or [] if p.get("port")), 80)
        for ingress in _get(svc, "status", "loadBalancer", "ingress") or []:
            ip = ingress.get("ip")
            if ip and in_pools(spec, ip):
                found.lb_services.append((name, ip, int(port)))
                found.lb_ips.append(ip)
    return found


def judge_loadbalancers(spec: Spec, facts: KubeFacts) -> Check:
    """Each LoadBalancer service has an external IP inside a pool.

    An IP outside every pool means k3s's ServiceLB answered instead of
    MetalLB; no IP yet (``<pending>``) is PENDING, not a failure.
    """
    if facts.services.error is not None:
        return Check("loadbalancers", State.FAIL, facts.services.error)
    lbs = [s for s in facts.services.items() if _get(s, "spec", "type") == "LoadBalancer"]
    pending: list[str] = []
    outside: list[str] = []
    good: list[str] = []
    for svc in lbs:
        name = f"{_get(svc, 'metadata', 'namespace')}/{_get(svc, 'metadata', 'name')}"
        ips = [i.get("ip") for i in _get(svc, "status", "loadBalancer", "ingress") or [] if i.get("ip")]
        if not ips:
            pending.append(name)
            continue
        for ip in ips:
            (good if in_pools(spec, ip) else outside).append(f"{name} {ip}")
    if not lbs:
        return Check("loadbalancers", State.FAIL, "no Service of type LoadBalancer (is the ingress deployed?)")
    if outside:
        return Check(
            "loadbalancers", State.FAIL,
            f"external IP outside the MetalLB pools: {', '.join(outside)} (is k3s's servicelb still enabled?)",
        )
    if pending:
        return Check("loadbalancers", State.PENDING, f"<pending> external IP: {', '.join(pending)}")
    return Check("loadbalancers", State.OK, ", ".join(good))


Judge = Callable[[Spec, KubeFacts], Check]
#: The checks after ``kubernetes api``, in the order they are reported.
JUDGES: Final[tuple[Judge, ...]] = (judge_nodes, judge_metallb, judge_metallb_config, judge_pools, judge_loadbalancers)
#: Their names, for the ``skipped`` lines when the API is not usable.
JUDGED: Final = ("nodes ready", "metallb", metallbchk.CONFIG_CHECK, "metallb pools", "loadbalancers")


def judge(spec: Spec, facts: KubeFacts) -> tuple[list[Check], ClusterFacts]:
    """Every Kubernetes check from gathered facts (pure)."""
    api = judge_api(spec, facts)
    if api.state is not State.OK:
        return [api, *(Check(name, State.SKIPPED, "needs the Kubernetes API") for name in JUDGED)], ClusterFacts()
    return [api, *(j(spec, facts) for j in JUDGES)], load_balancers(spec, facts)


def check_cluster(spec: Spec, kubeconfig: Path | KubeAccess, *, timeout: float = 10) -> tuple[list[Check], ClusterFacts]:
    """Gather, then judge."""
    return judge(spec, gather(kubeconfig, timeout=timeout, speaker_logs=spec.cluster.bgp.password_env is not None))
