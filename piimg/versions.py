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
#: Default ``cluster.k3s_version``. Confirmed against k3s's release records:
#: k3s-io/k3s pull request #14492 "[main] Update stable channel to
#: v1.36.3+k3s1" (merged 2026-08-04: the stable channel serves this release);
#: docs.k3s.io "Helm" page (k3s-io/docs docs/add-ons/helm.md) names it among
#: "the K3s July 2026 releases".
K3S_VERSION: Final = "v1.36.3+k3s1"

#: Where k3s publishes release assets: ``<K3S_RELEASES_URL>/<version>/<file>``
#: (the URL k3s's own install.sh builds: ``GITHUB_URL/download/${VERSION_K3S}/...``,
#: k3s-io/k3s@0136cf258954a458da1404858396342724b93d24:install.sh ``download_hash``).
K3S_RELEASES_URL: Final = "https://github.com/k3s-io/k3s/releases/download"
#: The k3s source tree at a tag: ``<K3S_SOURCE_URL>/<tag>/install.sh`` is the
#: install script exactly as tagged (GitHub's raw content service).
K3S_SOURCE_URL: Final = "https://raw.githubusercontent.com/k3s-io/k3s"
#: Where k3s's system images (rancher/mirrored-*, klipper-helm: ``docker.io``
#: references) are pulled from: containerd maps ``docker.io`` to this host
#: (containerd remotes/docker/resolver.go, ``dockerResolver.base``). First boot
#: waits until DNS resolves it; the builder writes it into node.json (None when
#: the airgap images are on the card).
K3S_REGISTRY_HOST: Final = "registry-1.docker.io"

#: SHA-256 of ``install.sh`` per k3s release: the script piimg ships to the
#: nodes is this file or nothing (``cluster.k3s_install_sha256`` in the spec
#: pins another version, or overrides an entry here).
#:
#: v1.36.3+k3s1: 46177d4c...fbfad, the install.sh of k3s's release-1.36 line
#: at the Kubernetes v1.36.3 bump. Read from git history (the k3s-io/k3s
#: snapshot is over the fetch limit; the fork snapshot vitorsavian/k3s,
#: 2026-08-14, carries the same upstream commits):
#:
#: - k3s-io/k3s@d404855db9f1f8e6ac516005a8d96fdf6c78ff3d "[release-1.36] Bump
#:   k3s-io/kubernetes and Go references (#14456)", 2026-07-23: go.mod
#:   ``k8s.io/kubernetes => github.com/k3s-io/kubernetes v1.36.3-k3s1``;
#:   ``git show d404855d:install.sh | sha256sum`` = 46177d4c...fbfad, equal to
#:   its own install.sh.sha256sum (k3s's build checks the two agree:
#:   "install script signature checks", k3s-io/k3s#8565).
#: - install.sh and install.sh.sha256sum last changed on that line in
#:   k3s-io/k3s@1501d1096d847d5bb86cd74a835849ee40857979 (2026-02-28) and are the
#:   same blob at every later commit up to 588e7d93713f5962969649ecafd86e26a7b80cb8
#:   (2026-08-14, still v1.36.3-k3s1 in go.mod), at the v1.36.1 and v1.36.2
#:   bumps of the same line too (9da548c2, 4ec014a0).
#:
#: NOT verified: the tag object itself (the snapshot has no tags), i.e. which
#: commit of that line v1.36.3+k3s1 names. Every candidate (go.mod at
#: v1.36.3-k3s1, 2026-07-23 to 2026-08-14) has this install.sh, and the stable
#: channel moved to v1.36.3+k3s1 on 2026-08-04 (k3s-io/k3s#14492). The main
#: branch's install.sh differs (ed01f89f..., changed there 2026-04-15, 06-05
#: and 08-04): the pin is the script at the tag, not the newest script. An earlier pin
#: here, 68ae766b... (k3s-io/k3s@019b0afd:install.sh.sha256sum), was that
#: file's value in August 2024 and is not the script at this tag. A wrong pin
#: fails closed: the build refuses the script and prints both digests; set
#: cluster.k3s_install_sha256 after checking the script yourself.
K3S_INSTALL_SH_SHA256: Final[dict[str, str]] = {
    "v1.36.3+k3s1": "46177d4c99440b4c0311b67233823a8e8a2fc09693f6c89af1a7161e152fbfad",
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


@dataclass(frozen=True)
class ChartPin:
    """A Helm chart archive pinned by content: first boot deploys these bytes or nothing."""

    name: str
    version: str
    url: str  # where piimg build downloads the .tgz (through cluster.artifact_mirror if set)
    sha256: str  # of the .tgz
    source: str  # where the digest was read


#: MetalLB chart archives by chart version, pinned by content: the chart
#: repository's own ``digest:`` of the archive its ``urls:`` names
#: (metallb.github.io/metallb is the gh-pages branch of metallb/metallb):
#: metallb/metallb@c60ed789c7fd5ed25ebf53a028205c38308a202f:index.yaml, one
#: entry per release in METALLB_PUBLISHED_CHARTS. The archives themselves
#: are release assets, not in the repository: only their digests were read.
METALLB_CHART_SHA256: Final[dict[str, str]] = {
    "0.13.2": "fc4a708cf6f917d983cdaac2468890ffe58fa33cca955862ea4a073c6c88a8e1",
    "0.13.3": "d3e1eaca1136bf9a98bd5cfa1d1f76ebe657b55df84d09d38ba31803280b86b6",
    "0.13.4": "d5b50b14c5e73b8173c4a398c8f4a4219359d16b1eeab4b025a9e0fe1cdb47ac",
    "0.13.5": "5c9d3d87a23f0ab0940816f0f504020d16d1e2ab4bd6a2a7dfcd84fe2243ffa3",
    "0.13.6": "6246b67e172500890338492469cc16bb955f769624f6392322672e492ad0ac81",
    "0.13.7": "dd8fd26554168c9033f09eda053f7f26ee528303c3f9cfb51c0730814ce6bd7f",
    "0.13.9": "acf9c7f0430e71e000b2cf63836693bf4aa7dba0563f95dade91b28d56666022",
    "0.13.10": "e35d56c9590c7801f483131e9fcbc5273eaedafed96a8a471bbac0d11616f6a5",
    "0.13.11": "3990e4a29b1c31f97db194edf349c1b0b0130be517563eb6a0d4af5f77e81c19",
    "0.13.12": "3593d73d8955358f98ec0f8257c944c7346e3f56425b78370650df8543657d35",
    "0.14.2": "4f19c01e4d918868e12cc7b299a66d37509e5b985c65cb2cf6069ed3c68ec4b1",
    "0.14.3": "187adab54a96af4d8e7802f78921afad0866faef9afc53cf68628a745fec3833",
    "0.14.4": "41c6026f19737cf3658df23d51023f924a510e8be619a733da38e7e4dc79d872",
    "0.14.5": "12e8d6a6ef2bf0d6450c10fba55c94282ef2d3559f78d2fbf626000d13baa9ef",
    "0.14.6": "f91dd8e75fe601451f4789d014bde078ba82ac21b9117a3b57a00cd9729345fa",
    "0.14.7": "ae6cfa05f4475b6d7af78c2a2a7821db69f885a58c095c6c452f2779e1e34fed",
    "0.14.8": "9049735178558ce096e34eb723fa6d05d9efc8b275dcc1aa6f0f05cc8f905f8a",
    "0.14.9": "e808428c9047d0c218634bc0f7cc92b8545d4c207470b3b563cfcbb46ab31ae9",
    "0.15.0": "d5ea9c1d4425cf494fddbfe14ce6887337433a61c3de75a52a147a8a3fa855a9",
    "0.15.1": "09e08918bb43d2454e22974209f7de3e63abd3372cde9ea18ab588d161e5b02c",
    "0.15.2": "4f0fc313cd97819a1c78fff0a389dfe1c9f98bc490f33f521317475df1d7b873",
    "0.15.3": "27db761c5ad2525fd130c92fe2f2d4500f8870e402fefe3c9cb8d34d8a71a70c",
    "0.16.0": "108ad635a9ab8c2d07207a5610358d3671f8f0d5cf744b62fecf0acb5436b052",
    "0.16.1": "fb06bb584fcb7856f15733b2a6a2aff5b61b5c350687e341c163ae24a5938adc",
}
_METALLB_DIGESTS_FROM: Final = "metallb/metallb@c60ed789c7fd5ed25ebf53a028205c38308a202f:index.yaml (gh-pages)"

#: ChartPin per ``cluster.metallb_version`` (v0.16.1 -> chart 0.16.1).
METALLB_CHARTS: Final[dict[str, ChartPin]] = {
    f"v{chart}": ChartPin(
        "metallb",
        chart,
        f"https://github.com/metallb/metallb/releases/download/metallb-chart-{chart}/metallb-{chart}.tgz",
        digest,
        f"{_METALLB_DIGESTS_FROM}, entry metallb {chart}",
    )
    for chart, digest in METALLB_CHART_SHA256.items()
}


def metallb_chart_version(metallb_version: str) -> str:
    """The chart version that ships MetalLB ``metallb_version`` (v0.16.1 -> 0.16.1)."""
    return metallb_version.removeprefix("v")


# Ingress controllers ----------------------------------------------------------
#: F5/NGINX's NGINX Ingress Controller, from NGINX's classic Helm repository
#: https://helm.nginx.com/stable: the repository nginxinc/helm-charts (its
#: CNAME is helm.nginx.com; README: ``helm repo add nginx-stable
#: https://helm.nginx.com/stable``) holds ``stable/index.yaml`` and the
#: archives. NGINX also publishes the chart as oci://ghcr.io/nginx/charts/nginx-ingress;
#: only the classic repository's index publishes each archive's SHA-256,
#: which is what lets piimg pin the bytes.
NGINX_INGRESS_CHART_REPO: Final = "https://helm.nginx.com/stable"
NGINX_INGRESS_CHART: Final = "nginx-ingress"
#: Chart 2.6.4 = NGINX Ingress Controller 5.5.4: the newest release whose
#: archive digest a stored upstream source publishes.
#:
#: - Release: tag v5.5.4 of nginx/kubernetes-ingress (commit
#:   f92a24e4fd2b52c72739c4a1f4f9bb6424bf5731, 2026-07-16),
#:   charts/nginx-ingress/Chart.yaml ``version: 2.6.4, appVersion: 5.5.4``.
#: - Digest: nginxinc/helm-charts@37e48ed997f4086c3090ec128003f8576321a38e:stable/index.yaml
#:   (2026-07-17), entry nginx-ingress 2.6.4: ``digest: 9bdca757...3577``,
#:   ``urls: [https://helm.nginx.com/stable/nginx-ingress-2.6.4.tgz]``; the
#:   archive stored beside it (``stable/nginx-ingress-2.6.4.tgz`` at that
#:   commit) hashes to the same value, and its values.yaml, values.schema.json
#:   and templates/ are byte-identical to the tag's charts/nginx-ingress/.
#: - Kubernetes: the chart says ``kubeVersion: '>= 1.25.0-0'`` (Chart.yaml in
#:   the archive; piimg build checks it against cluster.k3s_version), and
#:   NGINX tested controller 5.5.4 / chart 2.6.4 on Kubernetes 1.29 - 1.36
#:   (nginx/documentation@76d2906026e513dda715e6017c2b268326ef0098:
#:   content/includes/nic/compatibility-tables/nic-k8s.md, the row of
#:   layouts/shortcodes/nic-version.html = 5.5.4, nic-helm-version.html = 2.6.4),
#:   so the Kubernetes 1.36 of k3s v1.36 is inside what it was tested with.
#: - Images: nginx/nginx-ingress:5.5.4 for linux/arm64 and linux/amd64
#:   (nginx/kubernetes-ingress@f92a24e4:.github/data/matrix-images-oss.json).
#:
#: Newer releases exist and are NOT used: chart 2.7.2 (controller 5.6.2;
#: nginx/kubernetes-ingress pull requests #10867 "update to 5.6.2",
#: 2026-09-14, and #10875; nginx/kubernetes-ingress@04ac100d:charts/nginx-ingress/Chart.yaml)
#: and 2.7.3 (5.6.3, #10893, 2026-09-16). No stored source has the digest of
#: either archive (the stored helm.nginx.com index ends at 2.6.4; the OCI
#: manifests are in no stored source), and piimg ships no chart it cannot
#: verify: nothing is fetched by version at deploy time. To move to 2.7.x,
#: read ``digest:`` of its entry in https://helm.nginx.com/stable/index.yaml,
#: check it against the archive, set a ChartPin here, re-extract the values
#: schema (tests/schemas/extract.py) and run the manifests tests.
NGINX_INGRESS_CHART_PIN: Final = ChartPin(
    "nginx-ingress",
    "2.6.4",
    "https://helm.nginx.com/stable/nginx-ingress-2.6.4.tgz",
    "9bdca757183ba4b3248bc73ca48d3ea40c338bd1fc6e4e0249b8c59fc9333577",
    "nginxinc/helm-charts@37e48ed997f4086c3090ec128003f8576321a38e:stable/index.yaml, entry nginx-ingress 2.6.4",
)
NGINX_INGRESS_CHART_VERSION: Final = NGINX_INGRESS_CHART_PIN.version
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
        "nginx/kubernetes-ingress@v5.5.4:.github/data/matrix-images-oss.json (tag = f92a24e4; \"linux/arm64, linux/amd64\")"),
    "ingress-nginx": (frozenset({"amd64", "arm64", "arm"}),
                      "kubernetes/ingress-nginx@helm-chart-4.15.1:Makefile:249-250 (PLATFORMS ?= amd64 arm arm64)"),
}

#: The component each ``cluster.ingress`` choice deploys (traefik is part of k3s).
INGRESS_COMPONENT: Final = {"nginx": "nginx (NGINX Ingress Controller)", "ingress-nginx": "ingress-nginx"}
