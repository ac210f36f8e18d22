"""Every version piimg pins for the cluster, with where it was confirmed.

One place to bump. The spec keys ``cluster.k3s_version`` and
``cluster.metallb_version`` take their defaults from here (``piimg.spec.model``
imports them). Chart versions are not
spec keys: they change with piimg releases, after the rendered manifests
were checked against the chart's values.
"""

from __future__ import annotations

from typing import Final

# k3s ---------------------------------------------------------------------
#: Default ``cluster.k3s_version``. Confirmed against k3s's release records:
#: k3s-io/k3s pull request #14492 "[main] Update stable channel to
#: v1.36.3+k3s1" (merged 2026-08-04: the stable channel serves this release);
#: docs.k3s.io "Helm" page (k3s-io/docs docs/add-ons/helm.md) names it among
#: "the K3s July 2026 releases".
K3S_VERSION: Final = "v1.36.3+k3s1"

#: The helm-controller that k3s v1.36 embeds (k3s-io/k3s go.mod:
#: ``github.com/k3s-io/helm-controller v0.17.7``): the HelmChart CRD the tests
#: validate against comes from k3s-io/helm-controller@v0.17.7
#: (tests/schemas/SOURCES.json).
K3S_HELM_CONTROLLER_VERSION: Final = "v0.17.7"

#: The Kubernetes minor release whose OpenAPI schema the tests validate
#: core objects against (k3s v1.36.x ships Kubernetes v1.36.x).
KUBERNETES_SCHEMA_VERSION: Final = "1.36.0"

#: Where a k3s server exposes the Kubernetes API (k3s docs, "Requirements":
#: TCP 6443 K3s supervisor and Kubernetes API Server).
K3S_API_PORT: Final = 6443

#: k3s auto-deploys every file in this folder on servers; file base names
#: become ``Addon`` names (docs.k3s.io "Managing Packaged Components").
K3S_MANIFESTS_DIR: Final = "/var/lib/rancher/k3s/server/manifests"

#: Addon names k3s uses for its own packaged components (same page, and the
#: ``ls`` of the manifests folder shown there): ours must never equal them.
K3S_RESERVED_ADDONS: Final = (
    "ccm",
    "coredns",
    "local-storage",
    "metrics-server",
    "rolebindings",
    "runtimes",
    "servicelb",
    "traefik",
)

# MetalLB -----------------------------------------------------------------
#: Default ``cluster.metallb_version``. Confirmed: tag v0.16.1 of
#: metallb/metallb (commit 791dfcc6) whose charts/metallb/Chart.yaml says
#: ``version: 0.16.1, appVersion: v0.16.1``, and the chart repository's index
#: (metallb/metallb@c60ed789, branch gh-pages: index.yaml, served as
#: https://metallb.github.io/metallb) lists chart metallb 0.16.1.
METALLB_VERSION: Final = "v0.16.1"

#: Every ``metallb`` chart the chart repository publishes from the CRD era on,
#: as listed in its index.yaml (metallb/metallb@c60ed789:index.yaml on gh-pages,
#: 2026-05-27). MetalLB releases without a chart there (v0.13.0, v0.13.1,
#: v0.13.8, v0.14.0, v0.14.1) would leave the HelmChart job failing forever.
METALLB_PUBLISHED_CHARTS: Final = (
    "0.13.2", "0.13.3", "0.13.4", "0.13.5", "0.13.6", "0.13.7", "0.13.9", "0.13.10", "0.13.11", "0.13.12",
    "0.14.2", "0.14.3", "0.14.4", "0.14.5", "0.14.6", "0.14.7", "0.14.8", "0.14.9",
    "0.15.0", "0.15.1", "0.15.2", "0.15.3", "0.16.0", "0.16.1",
)

#: The first MetalLB configured by custom resources: earlier releases read a
#: ConfigMap ("the ConfigMap configuration is not supported anymore",
#: metallb@v0.16.1:website/content/release-notes/_index.md, release 0.13.0),
#: so piimg's IPAddressPool/BGPPeer would never apply. BGPPeer v1beta2 (what
#: piimg renders) is served from v0.13.0 on (config/crd/bases/metallb.io_bgppeers.yaml).
METALLB_MIN_VERSION: Final = (0, 13, 0)
#: Helm repository from the MetalLB installation docs ("Installation with Helm").
METALLB_CHART_REPO: Final = "https://metallb.github.io/metallb"
METALLB_CHART: Final = "metallb"
METALLB_NAMESPACE: Final = "metallb-system"


def metallb_chart_version(metallb_version: str) -> str:
    """The chart version that ships MetalLB ``metallb_version`` (v0.16.1 -> 0.16.1)."""
    return metallb_version.removeprefix("v")


# Ingress controllers ----------------------------------------------------------
#: F5/NGINX's NGINX Ingress Controller. OCI is the distribution the NGINX docs
#: now give ("Use Helm to Install NGINX Ingress Controller with NGINX Open
#: Source": ``helm install <release> oci://ghcr.io/nginx/charts/nginx-ingress``);
#: the k3s helm-controller accepts an ``oci://`` reference in ``spec.chart``
#: with no ``spec.repo`` (k3s-io/helm-controller issues #81 and #320,
#: maintainer answer).
#:
#: Version 2.7.2 (NGINX Ingress Controller 5.6.2) is a release, confirmed from
#: the release records, not from ``main`` (whose Chart.yaml is bumped before a
#: release: "main ... always points to future minor releases", maintainer in
#: nginx/kubernetes-ingress issue #10132): pull requests #10867 "update to
#: 5.6.2" (2026-09-14) and #10875 "Update main with 5.6.2" (2026-09-15), and
#: nginx/kubernetes-ingress@04ac100d:charts/nginx-ingress/Chart.yaml with
#: ``version: 2.7.2, appVersion: 5.6.2``. The chart version follows the
#: controller's as 2.(minor+1).patch (5.5.4 -> 2.6.4 at tag v5.5.4;
#: "Update NIC to 5.4.3, helm chart to 2.5.3", commit 2025d14e). A 2.7.3 (5.6.3)
#: followed on 2026-09-16 (#10893).
NGINX_INGRESS_CHART: Final = "oci://ghcr.io/nginx/charts/nginx-ingress"
NGINX_INGRESS_CHART_VERSION: Final = "2.7.2"
NGINX_INGRESS_NAMESPACE: Final = "nginx-ingress"

#: The retired community controller (kubernetes/ingress-nginx). Its final
#: release is helm-chart-4.15.1 / controller-v1.15.1 (19 March 2026); the
#: project announced no releases or security fixes after March 2026
#: (kubernetes.io/blog/2025/11/11/ingress-nginx-retirement/).
INGRESS_NGINX_CHART_REPO: Final = "https://kubernetes.github.io/ingress-nginx"
INGRESS_NGINX_CHART: Final = "ingress-nginx"
INGRESS_NGINX_CHART_VERSION: Final = "4.15.1"
#: Confirmed: tag helm-chart-4.15.1 (commit 0a5901f3, Chart.yaml version 4.15.1,
#: appVersion 1.15.1) and the chart repository index (gh-pages index.yaml).
#: Its README's support table lists Kubernetes 1.35 down to 1.31 for v1.15.1:
#: k3s v1.36 is outside what it was tested with.
INGRESS_NGINX_TESTED_KUBERNETES: Final = "1.35"
INGRESS_NGINX_NAMESPACE: Final = "ingress-nginx"

#: Traefik is packaged with k3s (Traefik v3.7.x in k3s v1.36.2+, per the k3s
#: release notes): its version follows ``cluster.k3s_version``; the
#: packaged HelmChart ``traefik`` in kube-system creates Service ``traefik``.
TRAEFIK_NAMESPACE: Final = "kube-system"
TRAEFIK_SERVICE: Final = "traefik"


# Architectures ---------------------------------------------------------------
#: CPU architectures (Go/OCI names) each component piimg deploys is published
#: for, with the upstream file that says so. A Raspberry Pi OS "armhf" image
#: runs ``arm`` (ARMv7) userland; k3s's install script maps ``uname -m`` arm* to
#: the k3s-armhf binary, whose containerd then pulls linux/arm/v7 images.
#: ARMv6 boards (Pi 1, Zero) have no k3s build at all.
ARCHITECTURES: Final[dict[str, tuple[frozenset[str], str]]] = {
    "k3s": (frozenset({"amd64", "arm64", "arm"}),
            "k3s-io/k3s@0efe2af1:install.sh setup_verify_arch (aarch64 -> arm64, arm* -> arm with suffix -armhf)"),
    "klipper-helm (the HelmChart job image)": (
        frozenset({"amd64", "arm64", "arm", "riscv64"}),
        "k3s-io/klipper-helm@55ca2db9:.github/workflows/release.yml (linux/amd64; arm64, arm/v7, riscv64)"),
    "metallb": (frozenset({"amd64", "arm64", "arm", "s390x", "ppc64le"}),
                "metallb/metallb@v0.16.1:.github/workflows/publish.yaml:105 "
                "(linux/amd64,linux/arm64,linux/s390x,linux/ppc64le,linux/arm/v7)"),
    "nginx (NGINX Ingress Controller)": (
        frozenset({"amd64", "arm64"}),
        "nginx/kubernetes-ingress@0eb3072d:.github/data/matrix-images-oss.json (\"linux/arm64, linux/amd64\")"),
    "ingress-nginx": (frozenset({"amd64", "arm64", "arm"}),
                      "kubernetes/ingress-nginx@helm-chart-4.15.1:Makefile:249-250 (PLATFORMS ?= amd64 arm arm64)"),
}

#: The component each ``cluster.ingress`` choice deploys (traefik is part of k3s).
INGRESS_COMPONENT: Final = {"nginx": "nginx (NGINX Ingress Controller)", "ingress-nginx": "ingress-nginx"}
