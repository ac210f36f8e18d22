"""``piimg status``: every check in the order a person would debug.

1. nodes reachable (TCP 22) and their first-boot status (status.json over SSH)
2. Kubernetes API and nodes Ready
3. MetalLB controller/speakers, address pools
4. LoadBalancer services with external IPs inside the pools
5. router: BGP sessions with every node, BGP routes for the LB IPs
6. HTTP answer from each LoadBalancer IP

A failing check never stops the others; what cannot be checked is ``skipped``.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

from piimg.errors import PiimgError
from piimg.spec.model import RouterKind, Spec
from piimg.status import seedrace
from piimg.status.kube import ClusterFacts, check_cluster
from piimg.status.kubeaccess import KubeAccess
from piimg.status.model import Check, State
from piimg.status.routerchk import RouterOpener, check_router
from piimg.status.ssh import SshFailed, SshTarget, read_remote_file

STATUS_FILE = "/boot/firmware/piimg/status.json"

@dataclass
class Options:
    kubeconfig: Path | KubeAccess
    #: .piimg/known_hosts when piimg generated the nodes' host keys (looked up by hostname)
    known_hosts: Path | None = None
    ssh_port: int = 22
    timeout: float = 5.0
    status_file: str = STATUS_FILE
    router: RouterOpener | None = None
    #: node hostname -> the init format its image was built with (build/last.json), where known
    init_formats: dict[str, str] = field(default_factory=dict)


def _tcp_open(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def judge_firstboot(hostname: str, status: dict[str, object]) -> Check:
    """The first-boot check from the node's ``status.json`` (written by :mod:`piimg.firstboot.main`)."""
    state, step, error = status.get("state"), status.get("step"), status.get("error")
    detail = f"step {step}, {state}" + (f": {error}" if error else "")
    if state == "done":
        return Check(f"firstboot {hostname}", State.OK, detail)
    if state == "failed":
        return Check(f"firstboot {hostname}", State.FAIL, detail)
    return Check(f"firstboot {hostname}", State.PENDING, detail)


def check_nodes(spec: Spec, opts: Options) -> list[Check]:
    checks = []
    for node in spec.nodes:
        host, port = str(node.address), opts.ssh_port
        err = _tcp_open(host, port, opts.timeout)
        if err:
            detail = f"{node.address}:{opts.ssh_port} unreachable ({err})"
            hint = seedrace.unreachable_hint(opts.init_formats.get(node.hostname))
            checks.append(Check(f"node {node.hostname}", State.FAIL, f"{detail}; {hint}" if hint else detail))
            checks.append(Check(f"firstboot {node.hostname}", State.SKIPPED, "node unreachable"))
            continue
        checks.append(Check(f"node {node.hostname}", State.OK, f"{node.address}:{opts.ssh_port} answers"))
        target = SshTarget(host=host, user=spec.access.user, port=port, connect_timeout=int(max(opts.timeout, 1)),
                           known_hosts=str(opts.known_hosts) if opts.known_hosts else None,
                           host_key_alias=node.hostname if opts.known_hosts else None)
        try:
            status = json.loads(read_remote_file(target, opts.status_file, sudo=False, timeout=opts.timeout * 4))
        except SshFailed as exc:
            access = seedrace.NodeAccess(node.hostname, opts.init_formats.get(node.hostname), exc.kind)
            checks.append(seedrace.judge(access) or Check(f"firstboot {node.hostname}", State.FAIL, exc.message))
            continue
        except PiimgError as exc:
            checks.append(Check(f"firstboot {node.hostname}", State.FAIL, exc.message))
            continue
        except ValueError:
            checks.append(Check(f"firstboot {node.hostname}", State.FAIL, f"{opts.status_file} is not JSON"))
            continue
        if not isinstance(status, dict):
            checks.append(Check(f"firstboot {node.hostname}", State.FAIL, f"{opts.status_file} is not a JSON object"))
            continue
        checks.append(judge_firstboot(node.hostname, status))
    return checks


def check_http(facts: ClusterFacts, timeout: float) -> list[Check]:
    if not facts.lb_services:
        return [Check("http", State.SKIPPED, "no LoadBalancer IP to ask")]
    checks = []
    for name, ip, port in facts.lb_services:
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"User-Agent": "piimg-status"})
            resp = conn.getresponse()
            resp.read(65536)
            server = resp.getheader("Server") or "no Server header"
            checks.append(Check(f"http {ip}", State.OK, f"{name}: HTTP {resp.status} {resp.reason}, Server: {server}"))
        except (OSError, http.client.HTTPException) as exc:
            checks.append(Check(f"http {ip}", State.FAIL, f"{name}: no HTTP answer on {ip}:{port} ({exc})"))
        finally:
            conn.close()
    return checks


def run_checks(spec: Spec, opts: Options) -> list[Check]:
    checks = check_nodes(spec, opts)
    kube_checks, facts = check_cluster(spec, opts.kubeconfig, timeout=opts.timeout)
    checks += kube_checks
    if opts.router is None:
        checks.append(Check("router bgp", State.SKIPPED, "router checks switched off (--no-router)"))
    elif spec.router.kind is RouterKind.FRR:
        # piimg reads RouterOS over its API only; an FRR router is checked on the router itself
        checks.append(Check("router bgp", State.SKIPPED,
                            "router.kind is frr: on the router, vtysh -c 'show bgp summary' and 'show bgp ipv4 unicast'"))
    else:
        try:
            read, dialect = opts.router()
            checks += check_router(spec, read, dialect, facts.lb_ips)
        except PiimgError as exc:
            checks.append(Check("router bgp", State.FAIL, exc.message))
            checks.append(Check("router routes", State.SKIPPED, "needs the router connection"))
    checks += check_http(facts, opts.timeout)
    return checks
