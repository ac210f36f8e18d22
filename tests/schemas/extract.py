"""Extract the test schemas from upstream git checkouts (run by hand, not by the tests).

The tests validate every rendered custom resource against the CRD's real
``openAPIV3Schema`` and every HelmChart ``valuesContent`` (merged over the
chart's defaults, as Helm does) against the chart's ``values.schema.json``.
This script writes those files from the upstream repositories at the exact
revisions listed in :data:`SOURCES`, so nobody types a schema by hand.

Only structure is kept: annotation keywords (``description``, ``examples``,
``title``, ``$comment``) are dropped from every schema node, and a chart's
``values.yaml`` is stored as the parsed mapping (its comments dropped).
``SOURCES.json`` records repo, ref, resolved commit, path and blob of each
input.

Usage (each argument is a git directory holding that repository, e.g. from
the search tool's ``fetch``)::

    python tests/schemas/extract.py --metallb DIR --helm-controller DIR \\
        --nginx-ingress DIR --ingress-nginx DIR [--out tests/schemas]

It reads with ``git show REF:PATH`` only: no checkout, no build, no network.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent

#: Schema keywords whose value is one sub-schema.
_ONE = ("items", "additionalProperties", "additionalItems", "not", "if", "then", "else", "contains",
        "propertyNames", "unevaluatedProperties", "unevaluatedItems")
#: Keywords whose value is a list of sub-schemas.
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
#: Keywords whose value maps names to sub-schemas.
_NAMED = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")
#: Annotations: documentation only, no effect on validation.
_ANNOTATIONS = ("description", "examples", "title", "$comment")


@dataclass(frozen=True)
class Source:
    key: str  # which --option gives the git directory
    repo: str
    ref: str
    path: str


METALLB = "metallb/metallb"
HELM_CONTROLLER = "k3s-io/helm-controller"
NIC = "nginx/kubernetes-ingress"
INGRESS_NGINX = "kubernetes/ingress-nginx"

#: MetalLB v0.16.1 is piimg's default (piimg/versions.py). The helm-controller
#: version is the one k3s v1.36 vendors (k3s-io/k3s go.mod:
#: github.com/k3s-io/helm-controller v0.17.7). The NGINX Ingress Controller
#: chart piimg pins (2.6.4) is tag v5.5.4's charts/nginx-ingress/ (its
#: values.yaml and values.schema.json are byte-identical to those in the
#: pinned archive, nginxinc/helm-charts@37e48ed9:stable/nginx-ingress-2.6.4.tgz).
#: ingress-nginx 4.15.1 is its final release and ships no values schema.
CRDS: dict[str, tuple[Source, str, str]] = {
    # output file: (source, CRD version, kind)
    "metallb.io_v1beta1_ipaddresspool.json": (
        Source("metallb", METALLB, "v0.16.1", "config/crd/bases/metallb.io_ipaddresspools.yaml"), "v1beta1", "IPAddressPool"),
    "metallb.io_v1beta2_bgppeer.json": (
        Source("metallb", METALLB, "v0.16.1", "config/crd/bases/metallb.io_bgppeers.yaml"), "v1beta2", "BGPPeer"),
    "metallb.io_v1beta1_bgpadvertisement.json": (
        Source("metallb", METALLB, "v0.16.1", "config/crd/bases/metallb.io_bgpadvertisements.yaml"), "v1beta1", "BGPAdvertisement"),
    "metallb.io_v1beta1_configurationstate.json": (
        Source("metallb", METALLB, "v0.16.1", "config/crd/bases/metallb.io_configurationstates.yaml"), "v1beta1", "ConfigurationState"),
    "helm.cattle.io_v1_helmchart.json": (
        Source("helm_controller", HELM_CONTROLLER, "v0.17.7", "pkg/crds/yaml/generated/helm.cattle.io_helmcharts.yaml"), "v1", "HelmChart"),
}
VALUES_SCHEMAS: dict[str, Source] = {
    "metallb.values.schema.json": Source("metallb", METALLB, "v0.16.1", "charts/metallb/values.schema.json"),
    "nginx-ingress.values.schema.json": Source(
        "nginx_ingress", NIC, "v5.5.4", "charts/nginx-ingress/values.schema.json"),
}
VALUES_DEFAULTS: dict[str, Source] = {
    "metallb.values.json": Source("metallb", METALLB, "v0.16.1", "charts/metallb/values.yaml"),
    "nginx-ingress.values.json": Source(
        "nginx_ingress", NIC, "v5.5.4", "charts/nginx-ingress/values.yaml"),
    "ingress-nginx.values.json": Source("ingress_nginx", INGRESS_NGINX, "helm-chart-4.15.1", "charts/ingress-nginx/values.yaml"),
}
#: Chart.yaml of each chart: the version the extracted files belong to.
CHART_FILES: dict[str, Source] = {
    "metallb": Source("metallb", METALLB, "v0.16.1", "charts/metallb/Chart.yaml"),
    "nginx-ingress": Source("nginx_ingress", NIC, "v5.5.4", "charts/nginx-ingress/Chart.yaml"),
    "ingress-nginx": Source("ingress_nginx", INGRESS_NGINX, "helm-chart-4.15.1", "charts/ingress-nginx/Chart.yaml"),
}


def _git(gitdir: Path, *args: str) -> str:
    res = subprocess.run(["git", "-C", str(gitdir), *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"git -C {gitdir} {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def read(dirs: dict[str, Path], src: Source) -> tuple[str, dict[str, str]]:
    """The file's text and its provenance (repo, ref, commit, path, blob)."""
    gitdir = dirs[src.key]
    commit = _git(gitdir, "rev-parse", f"{src.ref}^{{commit}}").strip()
    blob = _git(gitdir, "rev-parse", f"{commit}:{src.path}").strip()
    text = _git(gitdir, "show", f"{commit}:{src.path}")
    return text, {"repo": src.repo, "ref": src.ref, "commit": commit, "path": src.path, "blob": blob}


def structure(node: Any) -> Any:
    """A schema node without its annotation keywords (recursively, keyword-aware)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS and not isinstance(value, dict):
            continue
        if key in _NAMED and isinstance(value, dict):
            out[key] = {name: structure(sub) for name, sub in value.items()}
        elif key in _ONE and isinstance(value, dict):
            out[key] = structure(value)
        elif (key in _MANY or key == "items") and isinstance(value, list):
            out[key] = [structure(sub) for sub in value]
        else:
            out[key] = value
    return out


def crd_schema(text: str, version: str, kind: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") != "CustomResourceDefinition" or doc["spec"]["names"]["kind"] != kind:
            continue
        for ver in doc["spec"]["versions"]:
            if ver["name"] == version:
                if not ver.get("served", False):
                    raise SystemExit(f"{kind} {version} is not served")
                return {"group": doc["spec"]["group"], "version": version, "kind": kind,
                        "openAPIV3Schema": structure(ver["schema"]["openAPIV3Schema"])}
    raise SystemExit(f"no CRD {kind} version {version}")


def write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in ("metallb", "helm-controller", "nginx-ingress", "ingress-nginx"):
        p.add_argument(f"--{key}", type=Path, required=True, help=f"git directory of the {key} repository")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    dirs = {"metallb": args.metallb, "helm_controller": args.helm_controller,
            "nginx_ingress": args.nginx_ingress, "ingress_nginx": args.ingress_nginx}
    sources: dict[str, Any] = {}
    for name, (src, version, kind) in CRDS.items():
        text, prov = read(dirs, src)
        write(args.out / name, crd_schema(text, version, kind))
        sources[name] = {**prov, "extracted": f"CustomResourceDefinition {kind}, version {version}: openAPIV3Schema"}
    for name, src in VALUES_SCHEMAS.items():
        text, prov = read(dirs, src)
        write(args.out / name, structure(json.loads(text)))
        sources[name] = {**prov, "extracted": "values.schema.json without annotations"}
    for name, src in VALUES_DEFAULTS.items():
        text, prov = read(dirs, src)
        write(args.out / name, yaml.safe_load(text))
        sources[name] = {**prov, "extracted": "values.yaml parsed (the chart's defaults)"}
    charts = {}
    for chart, src in CHART_FILES.items():
        text, prov = read(dirs, src)
        meta = yaml.safe_load(text)
        charts[chart] = {**prov, "version": str(meta["version"]), "appVersion": str(meta["appVersion"])}
    write(args.out / "SOURCES.json", {"files": sources, "charts": charts})
    print(f"wrote {len(sources)} files and SOURCES.json to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
