"""The manifests the initial server deploys through k3s's auto-deploy folder.

:func:`render_addons` returns ``{file name: YAML text}``; first boot copies
them into ``/var/lib/rancher/k3s/server/manifests`` on the initial server.
k3s names each ``Addon`` after the file's base name, so the names are valid
lowercase RFC 1123 names, prefixed ``piimg-`` so they can never equal one of
k3s's own (coredns, traefik, local-storage, metrics-server, ccm, rolebindings,
...): k3s rewrites those files at every start, and ``--disable NAME``
deletes the file of that name.

Order: :func:`render_addons` lists them as a reader follows them (MetalLB,
its BGP password Secret, its configuration, the ingress controller), but k3s
applies the folder in sorted path order (k3s pkg/deploy/controller.go,
``listFilesIn``: ``sort.Strings(keys)``), which for these names is
piimg-ingress-nginx, piimg-metallb-bgp-secret, piimg-metallb-config,
piimg-metallb, piimg-nginx-ingress (``-`` sorts before ``.``). So on the first
pass the Secret and the MetalLB configuration fail: their namespace, CRDs and
webhook come with piimg-metallb.yaml. Nothing is lost: a file whose apply
fails keeps the controller in "force" mode, and every file is applied again
every 15 s until all succeed (``start``: ``time.After(15 * time.Second)``;
the checksum is recorded only after a successful apply). Only the wait grows
by a pass or two. :data:`K3S_APPLY_ORDER_NOTE` is checked against the names
by the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from piimg import versions as v
from piimg.errors import RenderError
from piimg.manifests.env import render
from piimg.manifests.k3s import MASKED, bgp_password
from piimg.spec.model import Ingress, Spec

if TYPE_CHECKING:
    from piimg.fetch.artifacts import ChartArchive

METALLB_ADDON: Final = "piimg-metallb.yaml"
BGP_SECRET_ADDON: Final = "piimg-metallb-bgp-secret.yaml"
METALLB_CONFIG_ADDON: Final = "piimg-metallb-config.yaml"
INGRESS_ADDONS: Final = {
    Ingress.NGINX: "piimg-nginx-ingress.yaml",
    Ingress.INGRESS_NGINX: "piimg-ingress-nginx.yaml",
}

BGP_SECRET_NAME: Final = "piimg-bgp-password"
BGP_PEER_NAME: Final = "router"
BGP_ADVERTISEMENT_NAME: Final = "piimg-pools"

#: What an Addon name (``metadata.name``) must match: k3s cuts the file name
#: at its first dot, so the name itself never has one (a lowercase RFC 1123
#: label, at most 63 characters here).
_ADDON_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

#: The order k3s applies piimg's files in (sorted paths), as the module docstring says.
K3S_APPLY_ORDER_NOTE: Final = (
    "piimg-ingress-nginx", "piimg-metallb-bgp-secret", "piimg-metallb-config", "piimg-metallb", "piimg-nginx-ingress",
)

INGRESS_NGINX_WARNING: Final = (
    "cluster.ingress: ingress-nginx was retired in March 2026 and gets no more security fixes; its final "
    f"release was tested up to Kubernetes {v.INGRESS_NGINX_TESTED_KUBERNETES}, untested on the Kubernetes 1.36 "
    "of k3s v1.36; use cluster.ingress: nginx (F5/NGINX's maintained NGINX Ingress Controller)"
)

#: Stock Raspberry Pi OS kernels have no CONFIG_TCP_MD5SIG (raspberrypi/linux
#: arch/arm64/configs/bcm2712_defconfig and bcm2711_defconfig), so MetalLB's
#: TCP_MD5SIG setsockopt fails with "protocol not available" (metallb/metallb
#: #1125) and no session comes up, while router-setup sets the key on the
#: router's side of every session. First boot probes the kernel
#: (piimg/firstboot/bgp.py) and stops with the same advice.
BGP_PASSWORD_WARNING: Final = (
    "cluster.bgp.password_env: a BGP TCP-MD5 key needs node kernels built with CONFIG_TCP_MD5SIG, and stock "
    "Raspberry Pi OS kernels are not (metallb/metallb#1125: \"setsockopt: protocol not available\"): no BGP "
    "session would come up, while router-setup makes the router require the key. Keep it only with such a "
    "kernel (first boot checks each node and stops if it lacks it); otherwise remove password_env and clear "
    "the key on the router"
)


def bgp_password_warning(spec: Spec) -> str | None:
    """The TCP-MD5 caveat when a BGP password is configured (validate, manifests and router-setup show it)."""
    return BGP_PASSWORD_WARNING if spec.cluster.bgp.password_env is not None else None


def addon_name(file_name: str) -> str:
    """The Addon name k3s derives from a manifest file name: everything before the first dot.

    k3s pkg/deploy/controller.go ``basename``: ``strings.SplitN(name, ".", 2)[0]``,
    so ``a.b.yaml`` is Addon ``a``, like ``a.yaml``.
    """
    return file_name.split(".", 1)[0]


def check_addon_names(file_names: list[str]) -> None:
    """Refuse names k3s would reject or that collide with its packaged components."""
    seen: set[str] = set()
    for file_name in file_names:
        name = addon_name(file_name)
        if not _ADDON_NAME_RE.fullmatch(name):
            raise RenderError(f"manifest {file_name}: {name!r} is not a valid k3s Addon name")
        if name in v.K3S_RESERVED_ADDONS:
            raise RenderError(f"manifest {file_name}: {name!r} is the name of a k3s packaged component")
        if name in seen:
            raise RenderError(f"manifest {file_name}: Addon name {name!r} used twice")
        seen.add(name)


def ingress_service(spec: Spec) -> tuple[str, str] | None:
    """(namespace, name) of the ingress controller's LoadBalancer Service; None for ``ingress: none``.

    Names follow the charts' naming rules with the release names used here:
    nginx-ingress: ``<fullname>-<controller.name>`` = nginx-ingress-controller;
    ingress-nginx: ``<fullname>-controller`` = ingress-nginx-controller;
    traefik: k3s's packaged chart creates Service ``traefik`` in kube-system.
    """
    ingress = spec.cluster.ingress
    if ingress is Ingress.NGINX:
        return (v.NGINX_INGRESS_NAMESPACE, "nginx-ingress-controller")
    if ingress is Ingress.INGRESS_NGINX:
        return (v.INGRESS_NGINX_NAMESPACE, "ingress-nginx-controller")
    if ingress is Ingress.TRAEFIK:
        return (v.TRAEFIK_NAMESPACE, v.TRAEFIK_SERVICE)
    return None


def warnings(spec: Spec) -> list[str]:
    """Things the user should read before deploying this spec."""
    out = []
    if spec.cluster.ingress is Ingress.INGRESS_NGINX:
        out.append(INGRESS_NGINX_WARNING)
    password = bgp_password_warning(spec)
    if password is not None:
        out.append(password)
    servers = len(spec.servers)
    if servers > 1 and servers % 2 == 0:
        # embedded etcd needs a majority: 2 servers survive no failure, 4 survive one like 3
        # (docs.k3s.io "High Availability Embedded etcd": an odd number of server nodes)
        out.append(
            f"nodes: {servers} servers; embedded etcd needs a majority, so an even count adds no fault "
            f"tolerance: use {servers - 1} or {servers + 1}"
        )
    return out


def _content(charts: Mapping[str, ChartArchive] | None, name: str) -> dict[str, str | None]:
    """Template values that embed the fetched archive of chart ``name`` (none without ``charts``)."""
    if charts is None:
        return {"chart_content": None, "chart_sha256": None}
    archive = charts.get(name)
    if archive is None:
        raise RenderError(f"chart {name}: not among the fetched chart archives ({', '.join(sorted(charts))})")
    return {"chart_content": archive.content_base64(), "chart_sha256": archive.file.sha256}


def _metallb(spec: Spec, charts: Mapping[str, ChartArchive] | None) -> str:
    return render(
        "metallb.yaml.j2",
        version=spec.cluster.metallb_version,
        namespace=v.METALLB_NAMESPACE,
        repo=v.METALLB_CHART_REPO,
        chart=v.METALLB_CHART,
        chart_version=v.metallb_chart_version(spec.cluster.metallb_version),
        **_content(charts, v.METALLB_CHART),
    )


def _bgp_secret(spec: Spec, password: str, *, mask_secrets: bool) -> str:
    return render(
        "metallb-bgp-secret.yaml.j2",
        password_env=spec.cluster.bgp.password_env,
        peer=BGP_PEER_NAME,
        secret_name=BGP_SECRET_NAME,
        namespace=v.METALLB_NAMESPACE,
        password=MASKED if mask_secrets else password,
        masked=mask_secrets,
    )


def _metallb_config(spec: Spec, *, with_secret: bool) -> str:
    return render(
        "metallb-config.yaml.j2",
        namespace=v.METALLB_NAMESPACE,
        pools=spec.cluster.pools,
        peer=BGP_PEER_NAME,
        my_asn=spec.cluster.bgp.asn,
        peer_asn=spec.router.asn,
        peer_address=str(spec.network.gateway),
        secret_name=BGP_SECRET_NAME if with_secret else None,
        advertisement=BGP_ADVERTISEMENT_NAME,
    )


def _ingress(spec: Spec, charts: Mapping[str, ChartArchive] | None) -> str | None:
    ingress = spec.cluster.ingress
    if ingress is Ingress.NGINX:
        return render(
            "ingress-nginx-f5.yaml.j2",
            namespace=v.NGINX_INGRESS_NAMESPACE,
            release="nginx-ingress",
            repo=v.NGINX_INGRESS_CHART_REPO,
            chart=v.NGINX_INGRESS_CHART,
            chart_version=v.NGINX_INGRESS_CHART_VERSION,
            **_content(charts, v.NGINX_INGRESS_CHART),
        )
    if ingress is Ingress.INGRESS_NGINX:
        return render(
            "ingress-ingress-nginx.yaml.j2",
            namespace=v.INGRESS_NGINX_NAMESPACE,
            release="ingress-nginx",
            repo=v.INGRESS_NGINX_CHART_REPO,
            chart=v.INGRESS_NGINX_CHART,
            chart_version=v.INGRESS_NGINX_CHART_VERSION,
            **_content(charts, v.INGRESS_NGINX_CHART),
        )
    # traefik: k3s deploys it (it is not in `disable`); its Service is already
    # type LoadBalancer and MetalLB answers for it. none: nothing to deploy.
    return None


def render_addons(
    spec: Spec,
    *,
    mask_secrets: bool = False,
    charts: Mapping[str, ChartArchive] | None = None,
) -> dict[str, str]:
    """Ordered ``{file name: YAML text}`` for the initial server's auto-deploy folder.

    No generated secret is deployed as a manifest: the only secret here is
    the BGP password, read from the environment when the spec was loaded.
    ``charts`` (the verified archives :mod:`piimg.fetch.artifacts` fetched, by
    chart name) are embedded as ``spec.chartContent``: what a build ships.
    Without them the HelmCharts name repo and version (a preview only).
    """
    password = bgp_password(spec)
    files: dict[str, str] = {METALLB_ADDON: _metallb(spec, charts)}
    if password is not None:
        files[BGP_SECRET_ADDON] = _bgp_secret(spec, password, mask_secrets=mask_secrets)
    files[METALLB_CONFIG_ADDON] = _metallb_config(spec, with_secret=password is not None)
    ingress = _ingress(spec, charts)
    if ingress is not None:
        files[INGRESS_ADDONS[spec.cluster.ingress]] = ingress
    check_addon_names(list(files))
    return files
