"""Kubernetes-side checks through the official ``kubernetes`` client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piimg.spec.model import Spec
from piimg.status.model import Check, State

METALLB_NS = "metallb-system"


@dataclass
class ClusterFacts:
    """What the checks learned about the cluster, for the later router/HTTP checks."""

    lb_services: list[tuple[str, str, int]] = field(default_factory=list)  # (ns/name, ip, port)
    lb_ips: list[str] = field(default_factory=list)


def _client(kubeconfig: Path, request_timeout: float) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    api_client.configuration.retries = 0
    return client, api_client


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return text[0][:160] if text else type(exc).__name__


def _pod_ready(pod: Any) -> bool:
    if pod.status is None or pod.status.phase != "Running":
        return False
    return all(cs.ready for cs in (pod.status.container_statuses or []))


def in_pools(spec: Spec, ip: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return any(addr in rng for pool in spec.cluster.pools for rng in pool.addresses)


def check_cluster(spec: Spec, kubeconfig: Path, *, timeout: float = 10) -> tuple[list[Check], ClusterFacts]:
    facts = ClusterFacts()
    checks: list[Check] = []
    if not kubeconfig.exists():
        checks.append(Check("kubernetes api", State.FAIL, f"no kubeconfig at {kubeconfig}: run `piimg kubeconfig` first"))
        for name in ("nodes ready", "metallb", "metallb pools", "loadbalancers"):
            checks.append(Check(name, State.SKIPPED, "needs the Kubernetes API"))
        return checks, facts
    try:
        client, api_client = _client(kubeconfig, timeout)
        core = client.CoreV1Api(api_client)
        version = client.VersionApi(api_client).get_code(_request_timeout=timeout)
        checks.append(Check("kubernetes api", State.OK, f"{api_client.configuration.host} answers, {version.git_version}"))
    except Exception as exc:  # any failure here means the API is not usable
        checks.append(Check("kubernetes api", State.FAIL, f"{kubeconfig}: {_short(exc)}"))
        for name in ("nodes ready", "metallb", "metallb pools", "loadbalancers"):
            checks.append(Check(name, State.SKIPPED, "needs the Kubernetes API"))
        return checks, facts

    # nodes: every spec node registered, Ready, with the expected InternalIP
    try:
        items = {n.metadata.name: n for n in core.list_node(_request_timeout=timeout).items}
        problems = []
        for node in spec.nodes:
            kn = items.get(node.hostname)
            if kn is None:
                problems.append(f"{node.hostname} not registered")
                continue
            ready = next((c.status for c in kn.status.conditions or [] if c.type == "Ready"), "Unknown")
            addrs = [a.address for a in kn.status.addresses or [] if a.type == "InternalIP"]
            if ready != "True":
                problems.append(f"{node.hostname} not Ready ({ready})")
            elif str(node.address) not in addrs:
                problems.append(f"{node.hostname} has address {', '.join(addrs) or 'none'}, expected {node.address}")
        if problems:
            checks.append(Check("nodes ready", State.FAIL, "; ".join(problems)))
        else:
            checks.append(Check("nodes ready", State.OK, f"{len(spec.nodes)}/{len(spec.nodes)} Ready at their addresses"))
    except Exception as exc:
        checks.append(Check("nodes ready", State.FAIL, _short(exc)))

    # MetalLB: controller and one speaker per node, Running and ready
    try:
        pods = core.list_namespaced_pod(METALLB_NS, _request_timeout=timeout).items
        def component(pod: Any) -> str:
            labels = pod.metadata.labels or {}
            return str(labels.get("app.kubernetes.io/component") or labels.get("component") or "")
        controllers = [p for p in pods if component(p) == "controller"]
        speakers = [p for p in pods if component(p) == "speaker"]
        ready_c = sum(_pod_ready(p) for p in controllers)
        ready_s = sum(_pod_ready(p) for p in speakers)
        detail = f"controller {ready_c}/{len(controllers)} ready, speakers {ready_s}/{len(spec.nodes)} ready"
        if not pods:
            checks.append(Check("metallb", State.FAIL, f"no pods in {METALLB_NS}: MetalLB is not deployed"))
        elif ready_c >= 1 and ready_s >= len(spec.nodes):
            checks.append(Check("metallb", State.OK, detail))
        else:
            bad = [f"{p.metadata.name} {p.status.phase if p.status else '?'}" for p in controllers + speakers if not _pod_ready(p)]
            checks.append(Check("metallb", State.FAIL, detail + (f" ({', '.join(bad[:3])})" if bad else "")))
    except Exception as exc:
        checks.append(Check("metallb", State.FAIL, _short(exc)))

    try:
        custom = client.CustomObjectsApi(api_client)
        found = custom.list_namespaced_custom_object(
            "metallb.io", "v1beta1", METALLB_NS, "ipaddresspools", _request_timeout=timeout
        )
        names = {item["metadata"]["name"] for item in found.get("items", [])}
        wanted = [p.name for p in spec.cluster.pools]
        missing = [n for n in wanted if n not in names]
        if missing:
            checks.append(Check("metallb pools", State.FAIL, f"IPAddressPool missing: {', '.join(missing)}"))
        else:
            checks.append(Check("metallb pools", State.OK, f"IPAddressPools present: {', '.join(wanted)}"))
    except Exception as exc:
        checks.append(Check("metallb pools", State.FAIL, _short(exc)))

    # LoadBalancer services: each has an external IP inside a configured pool
    try:
        services = core.list_service_for_all_namespaces(_request_timeout=timeout).items
        lbs = [s for s in services if s.spec and s.spec.type == "LoadBalancer"]
        pending, outside, good = [], [], []
        for svc in lbs:
            name = f"{svc.metadata.namespace}/{svc.metadata.name}"
            ingress = (svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None) or []
            ips = [i.ip for i in ingress if i.ip]
            if not ips:
                pending.append(name)
                continue
            port = next((p.port for p in svc.spec.ports or [] if p.port), 80)
            for ip in ips:
                if in_pools(spec, ip):
                    good.append(f"{name} {ip}")
                    facts.lb_services.append((name, ip, int(port)))
                    facts.lb_ips.append(ip)
                else:
                    outside.append(f"{name} {ip}")
        if not lbs:
            checks.append(Check("loadbalancers", State.FAIL, "no Service of type LoadBalancer (is the ingress deployed?)"))
        elif outside:
            checks.append(Check(
                "loadbalancers", State.FAIL,
                f"external IP outside the MetalLB pools: {', '.join(outside)} (is k3s's servicelb still enabled?)",
            ))
        elif pending:
            checks.append(Check("loadbalancers", State.PENDING, f"<pending> external IP: {', '.join(pending)}"))
        else:
            checks.append(Check("loadbalancers", State.OK, ", ".join(good)))
    except Exception as exc:
        checks.append(Check("loadbalancers", State.FAIL, _short(exc)))
    return checks, facts
