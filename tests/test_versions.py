"""Pins and the per-architecture table: every entry sourced, and the spec rules that use them."""

from __future__ import annotations

import re

import pytest

from piimg import versions as v
from piimg.errors import ConfigError
from piimg.manifests.addons import BGP_PASSWORD_WARNING, warnings
from piimg.spec.rules import image_architecture
from tests.manifests_helpers import make_spec

#: repo@ref:path, as the table cites its sources
SOURCE_RE = re.compile(r"^[\w.-]+/[\w.-]+@[\w.-]+:\S+")


def test_every_architecture_entry_names_its_upstream_file() -> None:
    for name, (platforms, source) in v.ARCHITECTURES.items():
        assert platforms, name
        assert SOURCE_RE.match(source), (name, source)
    for component in v.INGRESS_COMPONENT.values():
        assert component in v.ARCHITECTURES


def test_published_metallb_charts_are_sorted_and_include_the_default() -> None:
    numbers = [tuple(int(p) for p in c.split(".")) for c in v.METALLB_PUBLISHED_CHARTS]
    assert numbers == sorted(numbers)
    assert v.metallb_chart_version(v.METALLB_VERSION) == v.METALLB_PUBLISHED_CHARTS[-1]
    assert numbers[0] >= v.METALLB_MIN_VERSION


@pytest.mark.parametrize(
    ("image", "arch"),
    [
        ({"os": "raspios-lite-arm64"}, "arm64"),
        ({"os": "raspios-arm64"}, "arm64"),
        ({"os": "raspios-lite-armhf"}, "arm"),
        ({"os": "raspios-oldstable-lite-armhf"}, "arm"),
        ({"url": "https://example.org/images/2025-10-01-raspios-trixie-armhf-lite.img.xz", "sha256": "a" * 64}, "arm"),
        ({"url": "https://example.org/2025-10-01-raspios-trixie-arm64-lite.img.xz", "sha256": "a" * 64}, "arm64"),
        ({"os": "ubuntu-server-24-04"}, None),  # no architecture in the name: not guessed
        ({"os": "ubuntu-server-24-04", "arch": "armhf"}, "arm"),  # image.arch says it
        ({"os": "raspios-lite-armhf", "arch": "arm64"}, "arm64"),  # image.arch wins over the name
    ],
)
def test_image_architecture_from_the_name(image: dict[str, str], arch: str | None) -> None:
    spec = make_spec(image=image, cluster={"ingress": "traefik"})
    found = image_architecture(spec)
    assert (found[0] if found else None) == arch


@pytest.mark.parametrize(
    ("os", "ingress", "refused"),
    [
        ("raspios-lite-armhf", "nginx", True),  # F5 NGINX IC: linux/arm64, linux/amd64 only
        ("raspios-lite-armhf", "ingress-nginx", False),  # amd64 arm arm64
        ("raspios-lite-armhf", "traefik", False),
        ("raspios-lite-armhf", "none", False),
        ("raspios-lite-arm64", "nginx", False),
    ],
)
def test_ingress_per_architecture(os: str, ingress: str, refused: bool) -> None:
    if refused:
        with pytest.raises(ConfigError) as err:
            make_spec(image={"os": os}, cluster={"ingress": ingress})
        assert err.value.key == "cluster.ingress"
        assert "image.os" in err.value.message and os in err.value.message
        assert "matrix-images-oss.json" in err.value.message
    else:
        make_spec(image={"os": os}, cluster={"ingress": ingress})


def test_explicit_image_arch_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        make_spec(image={"os": "ubuntu-server-24-04", "arch": "armhf"})
    assert err.value.key == "cluster.ingress" and "image.arch 'armhf'" in err.value.message


@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        ("v0.12.1", "ConfigMap"),
        ("v0.13.0", "no chart"),  # released, but no chart in the repository index
        ("v0.13.2", None),
        ("v0.14.1", "no chart"),
        ("v0.14.2", None),
        ("v0.16.1", None),
        # newer than the index piimg knows: no chart digest to verify it against (piimg/versions.py)
        ("v0.17.0", "by content"),
    ],
)
def test_metallb_versions(version: str, verdict: str | None) -> None:
    if verdict in ("ConfigMap", "no chart", "by content"):
        with pytest.raises(ConfigError, match=verdict) as err:
            make_spec(cluster={"metallb_version": version})
        assert err.value.key == "cluster.metallb_version"
        return
    make_spec(cluster={"metallb_version": version})


def test_bgp_password_warning_only_with_a_password() -> None:
    assert BGP_PASSWORD_WARNING not in warnings(make_spec())
    spec = make_spec(cluster={"bgp": {"password_env": "K"}}, env={"K": "key"})
    assert BGP_PASSWORD_WARNING in warnings(spec)
    assert "CONFIG_TCP_MD5SIG" in BGP_PASSWORD_WARNING and "router" in BGP_PASSWORD_WARNING


def test_bgp_key_limit_agrees_from_spec_to_kernel() -> None:
    """80 bytes: RouterOS's tcp-md5-key, the kernel's TCP_MD5SIG_MAXKEYLEN (linux/tcp.h) and MetalLB's
    buildTCPMD5Sig (metallb@v0.16.1:internal/bgp/native/native.go:714-730, an 80-byte key array)."""
    from piimg.firstboot import bgp
    from piimg.spec import rules

    assert rules.BGP_KEY_MAX == bgp.TCP_MD5SIG_MAXKEYLEN == 80
    longest = "k" * 80  # printable ASCII: characters == bytes
    spec = make_spec(cluster={"bgp": {"password_env": "K"}}, env={"K": longest})
    assert len(bgp.md5sig_option(spec.env_secrets.bgp_password.encode())) == 216  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="at most 80"):
        make_spec(cluster={"bgp": {"password_env": "K"}}, env={"K": longest + "k"})
