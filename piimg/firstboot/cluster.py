"""Step 6 (servers): deploy the manifests, wait for node, MetalLB and the ingress IP.

k3s applies every file in its server manifests folder (the deploy controller,
https://docs.k3s.io/installation/packaged-components), so "deploying" is
placing files; the waits ask ``k3s kubectl`` until the cluster shows the result.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

from .bgp import check_bgp_password
from .context import Context, StepError
from .runner import CommandError

MANIFESTS_DIR = "/var/lib/rancher/k3s/server/manifests"


def place_manifests(ctx: Context) -> None:
    src_dir = os.path.join(ctx.payload_dir, "manifests")
    dst_dir = ctx.path(MANIFESTS_DIR)
    os.makedirs(dst_dir, mode=0o700, exist_ok=True)
    for name in ctx.config.manifests:
        if os.path.basename(name) != name or not name:
            raise StepError("node.json: manifest name %r must be a plain file name" % name)
        src = os.path.join(src_dir, name)
        dst = os.path.join(dst_dir, name)
        if not os.path.isfile(src):
            if os.path.isfile(dst):
                continue  # placed by an earlier attempt, payload already scrubbed
            raise StepError("manifest %s listed in node.json is missing from %s" % (name, src_dir))
        tmp = dst + ".piimg-tmp"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o600)  # may hold the BGP password
        os.replace(tmp, dst)
        ctx.log.info("placed %s/%s" % (MANIFESTS_DIR, name))


def kubectl_json(ctx: Context, args: List[str]) -> Tuple[Optional[Dict[str, Any]], str]:
    try:
        res = ctx.runner.run(["k3s", "kubectl", *args, "-o", "json"], timeout=ctx.timeouts["command"], check=True)
    except CommandError as exc:
        return None, str(exc)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        return None, "k3s kubectl %s: output is not JSON" % " ".join(args)
    if not isinstance(data, dict):
        return None, "k3s kubectl %s: unexpected output" % " ".join(args)
    return data, ""


def node_ready(ctx: Context) -> Tuple[bool, str]:
    name = ctx.config.hostname
    data, err = kubectl_json(ctx, ["get", "node", name])
    if data is None:
        return False, err
    for cond in data.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return True, "node %s is Ready" % name
            return False, "node %s not Ready: %s" % (name, cond.get("message") or cond.get("reason"))
    return False, "node %s has no Ready condition yet" % name


def _component(pod: Dict[str, Any]) -> str:
    labels = pod.get("metadata", {}).get("labels", {}) or {}
    return str(labels.get("app.kubernetes.io/component") or labels.get("component") or "")


def metallb_running(ctx: Context) -> Tuple[bool, str]:
    ns = ctx.config.metallb_namespace
    data, err = kubectl_json(ctx, ["-n", ns, "get", "pods"])
    if data is None:
        return False, err
    running = {"controller": 0, "speaker": 0}
    for pod in data.get("items", []):
        comp = _component(pod)
        if comp in running and pod.get("status", {}).get("phase") == "Running":
            running[comp] += 1
    missing = [c for c, n in sorted(running.items()) if n == 0]
    if missing:
        return False, "MetalLB in %s: no Running %s pod yet" % (ns, " or ".join(missing))
    return True, "MetalLB controller and speaker Running"


def ingress_ip(ctx: Context) -> Tuple[bool, str]:
    ref = ctx.config.ingress
    assert ref is not None
    data, err = kubectl_json(ctx, ["-n", ref.namespace, "get", "service", ref.service])
    if data is None:
        return False, err
    for entry in data.get("status", {}).get("loadBalancer", {}).get("ingress", []) or []:
        addr = entry.get("ip") or entry.get("hostname")
        if addr:
            return True, str(addr)
    return False, "Service %s/%s has no external IP yet (MetalLB pool, BGP config?)" % (ref.namespace, ref.service)


def step_cluster(ctx: Context) -> None:
    # Before the BGPPeer and its password Secret are deployed: a password the
    # kernel cannot use means no BGP session at all, so say so now.
    check_bgp_password(ctx)
    place_manifests(ctx)
    ctx.log.info(ctx.wait_for("node Ready", lambda: node_ready(ctx), "node"))
    ctx.log.info(ctx.wait_for("MetalLB", lambda: metallb_running(ctx), "metallb"))
    if not ctx.config.initial_server:
        ctx.log.info("the ingress controller and its external IP are checked by the initial server")
        return
    if ctx.config.ingress is None:
        ctx.log.info("no ingress controller configured")
        return
    ip = ctx.wait_for("the ingress external IP", lambda: ingress_ip(ctx), "ingress")
    ctx.store.set("ingress_ip", ip)
    ctx.log.info("ingress %s/%s has external IP %s" % (ctx.config.ingress.namespace, ctx.config.ingress.service, ip))
