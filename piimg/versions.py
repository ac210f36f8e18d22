"""Every version piimg pins for the cluster, with where it was confirmed.

One place to bump. The spec keys ``cluster.k3s_version`` and
``cluster.metallb_version`` take their defaults from here (``piimg.spec.model``
imports them). Chart versions are not
spec keys: they change with piimg releases, after the rendered manifests
were checked against the chart's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# k3s ---------------------------------------------------------------------
#: Default ``cluster.k3s_version``. Confirmed: docs.k3s.io "Helm" page
#: (k3s-io/docs docs/add-ons/helm.md) names v1.36.3+k3s1 among "the K3s July
#: 2026 releases", and third-party release pins in 2026-08..10 cite it as the
#: version served by the stable channel (https://update.k3s.io/v1-release/channels).
K3S_VERSION: Final = "v1.36.3+k3s1"

#: Where k3s publishes release assets: ``<K3S_RELEASES_URL>/<version>/<file>``
#: (the URL k3s's own install.sh builds: ``GITHUB_URL/download/${VERSION_K3S}/...``,
#: k3s-io/k3s@0136cf258954a458da1404858396342724b93d24:install.sh ``download_hash``).
K3S_RELEASES_URL: Final = "https://github.com/k3s-io/k3s/releases/download"
#: The k3s source tree at a tag: ``<K3S_SOURCE_URL>/<tag>/install.sh`` is the
#: install script exactly as tagged (GitHub's raw content service).
K3S_SOURCE_URL: Final = "https://raw.githubusercontent.com/k3s-io/k3s"

#: SHA-256 of ``install.sh`` per k3s release: the script piimg ships to the
#: nodes is this file or nothing (``cluster.k3s_install_sha256`` in the spec
#: pins another version, or overrides an entry here).
#:
#: v1.36.3+k3s1: from k3s's own checksum file, which its CI keeps equal to
#: install.sh (k3s-io/k3s#8447 "Provide install script checksums", backported
#: to every release branch): k3s-io/k3s@019b0afdd830e36f5e4b7a5b237e6a4339e6a6be:install.sh.sha256sum
#: says ``68ae766b...a23d  install.sh``. NOT verified offline: that this commit's
#: install.sh is byte-identical to the one at the tag v1.36.3+k3s1 (the k3s
#: repository is too large to fetch here, and the stored index does not map
#: commits to tags; another stored commit, 25ed9f252ac4dbc4ad8686dbfdf3459dd4be0b00,
#: has ``e0fbc48a...71e6``). A wrong pin fails closed: the build refuses the
#: script and prints both digests; set cluster.k3s_install_sha256 after
#: checking the script yourself.
K3S_INSTALL_SH_SHA256: Final[dict[str, str]] = {
    "v1.36.3+k3s1": "68ae766b4c4fd2c8032f712cdd346c8f9d1ae60eaeb4736a1155effda44ea23d",
}


@dataclass(frozen=True)
class K3sArch:
    """The release assets of one architecture (names as in k3s-io/k3s@17f9c08f64e8e94831a6ab41bef692f25d9f07f8:scripts/validate-artifacts)."""

    arch: str  # as piimg and Debian call it: arm64, armhf
    binary: str  # release asset name of the k3s binary
    sums: str  # the release's sha256sum file for this architecture
    airgap: str  # the airgap images tarball (zstd)


#: Raspberry Pi OS architectures k3s publishes for. install.sh maps ``arm*``
#: to ``ARCH=arm, SUFFIX=-armhf`` (binary k3s-armhf, sums sha256sum-arm.txt);
#: that binary is ARMv7: ARMv6 boards (Pi 1, Zero, Zero W) have no k3s build.
K3S_ARCHES: Final[dict[str, K3sArch]] = {
    "arm64": K3sArch("arm64", "k3s-arm64", "sha256sum-arm64.txt", "k3s-airgap-images-arm64.tar.zst"),
    "armhf": K3sArch("armhf", "k3s-armhf", "sha256sum-arm.txt", "k3s-airgap-images-arm.tar.zst"),
}

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


@dataclass(frozen=True)
class ChartPin:
    """A Helm chart archive pinned by content: first boot deploys these bytes or nothing."""

    name: str
    version: str
    url: str  # where piimg build downloads the .tgz (through cluster.artifact_mirror if set)
    sha256: str  # of the .tgz
    source: str  # where the digest was read


#: MetalLB charts by ``cluster.metallb_version``. The digest is the chart
#: repository's own ``digest:`` for the archive its ``urls:`` names
#: (metallb.github.io/metallb is the gh-pages branch of metallb/metallb).
METALLB_CHARTS: Final[dict[str, ChartPin]] = {
    "v0.16.1": ChartPin(
        "metallb",
        "0.16.1",
        "https://github.com/metallb/metallb/releases/download/metallb-chart-0.16.1/metallb-0.16.1.tgz",
        "fb06bb584fcb7856f15733b2a6a2aff5b61b5c350687e341c163ae24a5938adc",
        "metallb/metallb@c60ed789c7fd5ed25ebf53a028205c38308a202f:index.yaml (gh-pages), entry metallb 0.16.1",
    ),
}


def metallb_chart_version(metallb_version: str) -> str:
    """The chart version that ships MetalLB ``metallb_version`` (v0.16.1 -> 0.16.1)."""
    return metallb_version.removeprefix("v")


# Ingress controllers ----------------------------------------------------------
#: F5/NGINX's NGINX Ingress Controller. The chart is deployed by content
#: (``chartContent``), so it is fetched at build time from NGINX's classic
#: Helm repository (helm.nginx.com/stable, the nginxinc/helm-charts
#: repository), where the archive and its digest can be checked. The OCI
#: copy (oci://ghcr.io/nginx/charts/nginx-ingress) is the same chart, but no
#: stored source gives an OCI or tarball digest for it, and the 2.7.2 pinned
#: before was only seen on nginx/kubernetes-ingress's main branch, never as a
#: release (audit-k8s finding 4). 2.6.4 (app 5.5.4) is the newest release the
#: repository index lists; its archive was hashed here:
#: ``git show 37e48ed9:stable/nginx-ingress-2.6.4.tgz | sha256sum`` equals the
#: index's ``digest:``.
NGINX_INGRESS_CHART_REPO: Final = "https://helm.nginx.com/stable"
NGINX_INGRESS_CHART: Final = "nginx-ingress"
NGINX_INGRESS_CHART_VERSION: Final = "2.6.4"
NGINX_INGRESS_CHART_PIN: Final = ChartPin(
    "nginx-ingress",
    "2.6.4",
    "https://helm.nginx.com/stable/nginx-ingress-2.6.4.tgz",
    "9bdca757183ba4b3248bc73ca48d3ea40c338bd1fc6e4e0249b8c59fc9333577",
    "nginxinc/helm-charts@37e48ed997f4086c3090ec128003f8576321a38e:stable/index.yaml and the archive "
    "stable/nginx-ingress-2.6.4.tgz itself",
)
NGINX_INGRESS_NAMESPACE: Final = "nginx-ingress"

#: The retired community controller (kubernetes/ingress-nginx). Its final
#: release is helm-chart-4.15.1 / controller-v1.15.1 (19 March 2026); the
#: project announced no releases or security fixes after March 2026
#: (kubernetes.io/blog/2025/11/11/ingress-nginx-retirement/).
INGRESS_NGINX_CHART_REPO: Final = "https://kubernetes.github.io/ingress-nginx"
INGRESS_NGINX_CHART: Final = "ingress-nginx"
INGRESS_NGINX_CHART_VERSION: Final = "4.15.1"
INGRESS_NGINX_NAMESPACE: Final = "ingress-nginx"
INGRESS_NGINX_CHART_PIN: Final = ChartPin(
    "ingress-nginx",
    "4.15.1",
    "https://github.com/kubernetes/ingress-nginx/releases/download/helm-chart-4.15.1/ingress-nginx-4.15.1.tgz",
    "3eff0bd18151d6e6b1c441463410571443dda1ac78292cb189346628de784f0c",
    "kubernetes/ingress-nginx@5298c4d892ceb0fa3560bf892e20479cd3f1c3f9:index.yaml (gh-pages), entry ingress-nginx 4.15.1",
)

#: Traefik is packaged with k3s (Traefik v3.7.x in k3s v1.36.2+, per the k3s
#: release notes): its version follows ``cluster.k3s_version``; the
#: packaged HelmChart ``traefik`` in kube-system creates Service ``traefik``.
TRAEFIK_NAMESPACE: Final = "kube-system"
TRAEFIK_SERVICE: Final = "traefik"
