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
#: Default ``cluster.k3s_version``. Confirmed: docs.k3s.io "Helm" page
#: (k3s-io/docs docs/add-ons/helm.md) names v1.36.3+k3s1 among "the K3s July
#: 2026 releases", and third-party release pins in 2026-08..10 cite it as the
#: version served by the stable channel (https://update.k3s.io/v1-release/channels).
K3S_VERSION: Final = "v1.36.3+k3s1"

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
#: Default ``cluster.metallb_version``. Confirmed: MetalLB v0.16.1 release and
#: its native manifest (github.com/metallb/metallb tree v0.16.1/config); the
#: Helm chart of the same release is version 0.16.1 (chart version == app
#: version without the "v", as in metallb/metallb charts/metallb/Chart.yaml).
METALLB_VERSION: Final = "v0.16.1"
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
#: maintainer answer). Version confirmed in nginx/kubernetes-ingress
#: charts/nginx-ingress/Chart.yaml: version 2.7.2, appVersion 5.6.2.
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
INGRESS_NGINX_NAMESPACE: Final = "ingress-nginx"

#: Traefik is packaged with k3s (Traefik v3.7.x in k3s v1.36.2+, per the k3s
#: release notes): its version follows ``cluster.k3s_version``; the
#: packaged HelmChart ``traefik`` in kube-system creates Service ``traefik``.
TRAEFIK_NAMESPACE: Final = "kube-system"
TRAEFIK_SERVICE: Final = "traefik"
