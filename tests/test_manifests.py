"""Rendering of the k3s config and the addons: schemas, cross-references, topologies, ingress choices."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from piimg import versions as v
from piimg.errors import RenderError
from piimg.manifests import bgp_password, ingress_service, k3s_server_url, render_addons, render_k3s_config
from piimg.manifests.addons import K3S_APPLY_ORDER_NOTE, addon_name, check_addon_names, warnings
from piimg.manifests.k3s import MASKED
from piimg.spec import model as spec_model
from piimg.spec.model import Role
from piimg.spec.secrets import Secrets
from tests.manifests_helpers import (
    INGRESSES,
    TEST_TOKEN,
    TOPOLOGIES,
    documents,
    make_spec,
    validate_object,
    validate_values,
)

SECRETS = Secrets(k3s_token=TEST_TOKEN)
K3S_PACKAGED = ("coredns", "traefik", "local-storage", "metrics-server", "ccm", "rolebindings")


def all_objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [obj for text in files.values() for obj in documents(text)]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def check_cross_references(spec: spec_model.Spec, files: dict[str, str]) -> None:
    """What the API server cannot check for us: names that point at each other, values from the spec."""
    objs = all_objects(files)
    namespaces = {o["metadata"]["name"] for o in by_kind(objs, "Namespace")}
    pools = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in by_kind(objs, "IPAddressPool")}
    peers = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in by_kind(objs, "BGPPeer")}
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in by_kind(objs, "Secret")}

    # every MetalLB object lives in MetalLB's namespace, which the addons create
    assert v.METALLB_NAMESPACE in namespaces
    for o in objs:
        if o["apiVersion"].startswith("metallb.io/"):
            assert o["metadata"]["namespace"] == v.METALLB_NAMESPACE, o

    # one pool per spec pool, same addresses and avoidBuggyIPs
    assert sorted(name for _, name in pools) == sorted(p.name for p in spec.cluster.pools)
    for p in spec.cluster.pools:
        rendered = pools[(v.METALLB_NAMESPACE, p.name)]["spec"]
        assert rendered["addresses"] == [r.text for r in p.addresses]
        assert rendered["avoidBuggyIPs"] is p.avoid_buggy_ips

    # the advertisement names existing pools and peers, and covers every pool
    advs = by_kind(objs, "BGPAdvertisement")
    assert advs, "no BGPAdvertisement"
    advertised = set()
    for adv in advs:
        ns = adv["metadata"]["namespace"]
        for name in adv["spec"]["ipAddressPools"]:
            assert (ns, name) in pools, f"BGPAdvertisement names unknown pool {name}"
            advertised.add(name)
        for name in adv["spec"].get("peers", []):
            assert (ns, name) in peers, f"BGPAdvertisement names unknown peer {name}"
    assert advertised == {p.name for p in spec.cluster.pools}

    # exactly one peer: the router, with the spec's ASNs and address
    assert len(peers) == 1
    (peer,) = peers.values()
    assert peer["spec"]["myASN"] == spec.cluster.bgp.asn
    assert peer["spec"]["peerASN"] == spec.router.asn
    assert peer["spec"]["peerAddress"] == str(spec.network.gateway)

    # the password Secret exists exactly when referenced, with the right type and key
    ref = peer["spec"].get("passwordSecret")
    if spec.cluster.bgp.password_env is None:
        assert ref is None
        assert not secrets
    else:
        assert ref is not None
        secret = secrets[(ref.get("namespace", peer["metadata"]["namespace"]), ref["name"])]
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert set(secret["stringData"]) == {"password"}

    # each HelmChart installs into a namespace the addons create; values parse
    for chart in by_kind(objs, "HelmChart"):
        assert chart["metadata"]["namespace"] == "kube-system"
        assert chart["spec"]["targetNamespace"] in namespaces or chart["spec"].get("createNamespace")
        assert isinstance(yaml.safe_load(chart["spec"]["valuesContent"]), dict)

    # the ingress Service the first boot waits for belongs to the deployed controller
    svc = ingress_service(spec)
    charts = {c["spec"]["targetNamespace"]: c for c in by_kind(objs, "HelmChart")}
    if spec.cluster.ingress.value in ("nginx", "ingress-nginx"):
        assert svc is not None and svc[0] in charts
    elif spec.cluster.ingress.value == "traefik":
        assert svc == ("kube-system", "traefik")
    else:
        assert svc is None

    # addon names: valid, unique, not k3s's own, not something `disable` would delete
    names = [addon_name(f) for f in files]
    assert len(set(names)) == len(names)
    for name in names:
        assert name not in K3S_PACKAGED and name not in spec.cluster.disable
        assert name.startswith("piimg-")


# -- every topology x every ingress -----------------------------------------------


@pytest.mark.parametrize("password", [None, "s3cr3t:pw"], ids=["no-password", "password"])
@pytest.mark.parametrize("ingress", INGRESSES)
@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_every_object_validates(topology: str, ingress: str, password: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every object against its upstream schema, every values block against its chart's (tests/schemas/SOURCES.json)."""
    cluster: dict[str, Any] = {"ingress": ingress}
    env = {}
    if password is not None:
        cluster["bgp"] = {"password_env": "BGP_KEY"}
        env["BGP_KEY"] = password
        monkeypatch.setenv("BGP_KEY", password)
    spec = make_spec(nodes=TOPOLOGIES[topology], cluster=cluster, env=env)
    files = render_addons(spec)
    objs = all_objects(files)
    assert objs
    for obj in objs:
        validate_object(obj)
    charts = by_kind(objs, "HelmChart")
    assert charts
    for chart in charts:
        validate_values(chart["spec"]["chart"], yaml.safe_load(chart["spec"]["valuesContent"]))
    check_cross_references(spec, files)
    for node in spec.nodes:
        assert isinstance(yaml.safe_load(render_k3s_config(spec, node, SECRETS)), dict)


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_k3s_config_per_role(topology: str) -> None:
    spec = make_spec(nodes=TOPOLOGIES[topology])
    url = k3s_server_url(spec)
    assert url == "https://10.0.2.10:6443"
    several_servers = len(spec.servers) > 1
    for node in spec.nodes:
        conf = yaml.safe_load(render_k3s_config(spec, node, SECRETS))
        assert conf["token"] == TEST_TOKEN
        assert conf["node-name"] == node.hostname
        assert conf["node-ip"] == str(node.address)
        initial = node == spec.initial_server
        if initial:
            assert "server" not in conf
        else:
            assert conf["server"] == url
        if node.role is Role.SERVER:
            assert conf["tls-san"] == [str(node.address)]
            assert conf["write-kubeconfig-mode"] == "0600"  # a string, not octal 384
            assert conf["disable"] == ["traefik", "servicelb"]
            assert conf.get("cluster-init", False) is (initial and several_servers)
        else:
            assert set(conf) == {"token", "node-name", "node-ip", "server"}


def test_seed_matches_defaults() -> None:
    """The defaults are the seed network: one server 10.0.2.10, pool 10.0.4.0/23, ASNs 64500/65530."""
    spec = make_spec()
    assert [(n.hostname, n.address.exploded) for n in spec.nodes] == [("k8s-master", "10.0.2.10")]
    objs = all_objects(render_addons(spec))
    (pool,) = by_kind(objs, "IPAddressPool")
    assert pool["spec"]["addresses"] == ["10.0.4.0/23"]
    (peer,) = by_kind(objs, "BGPPeer")
    assert (peer["spec"]["myASN"], peer["spec"]["peerASN"], peer["spec"]["peerAddress"]) == (64500, 65530, "10.0.2.1")


# -- MetalLB ------------------------------------------------------------------------


def test_metallb_native_bgp_mode_and_pinned_chart() -> None:
    spec = make_spec(cluster={"metallb_version": "v0.16.1"})
    objs = all_objects(render_addons(spec))
    (ns,) = [o for o in by_kind(objs, "Namespace") if o["metadata"]["name"] == "metallb-system"]
    for mode in ("enforce", "audit", "warn"):
        assert ns["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "privileged"
    (chart,) = [c for c in by_kind(objs, "HelmChart") if c["metadata"]["name"] == "metallb"]
    assert chart["spec"]["repo"] == "https://metallb.github.io/metallb"
    assert chart["spec"]["chart"] == "metallb"
    assert chart["spec"]["version"] == "0.16.1"
    values = yaml.safe_load(chart["spec"]["valuesContent"])
    assert values["speaker"]["frr"]["enabled"] is False
    assert values["frrk8s"]["enabled"] is False


def test_metallb_version_follows_spec() -> None:
    spec = make_spec(cluster={"metallb_version": "v0.15.3"})
    (chart,) = [
        c for c in by_kind(all_objects(render_addons(spec)), "HelmChart") if c["metadata"]["name"] == "metallb"
    ]
    assert chart["spec"]["version"] == "0.15.3"


def test_several_pools_and_ranges() -> None:
    spec = make_spec(
        cluster={
            "pools": [
                {"name": "default", "addresses": ["10.0.4.0/24", "10.0.6.10-10.0.6.20"]},
                {"name": "internal", "addresses": ["192.168.50.0/28"], "avoid_buggy_ips": False},
            ]
        }
    )
    files = render_addons(spec)
    for obj in all_objects(files):
        validate_object(obj)
    check_cross_references(spec, files)


def test_bgp_password_secret() -> None:
    password = "s3cret: with # yaml 'chars\""
    spec = make_spec(cluster={"bgp": {"password_env": "BGP_KEY"}}, env={"BGP_KEY": password})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BGP_KEY", password)
        assert bgp_password(spec) == password
        files = render_addons(spec)
        masked = render_addons(spec, mask_secrets=True)
    assert list(files) == [
        "piimg-metallb.yaml",
        "piimg-metallb-bgp-secret.yaml",
        "piimg-metallb-config.yaml",
        "piimg-nginx-ingress.yaml",
    ]
    for obj in all_objects(files):
        validate_object(obj)
    check_cross_references(spec, files)
    (secret,) = by_kind(all_objects(files), "Secret")
    assert secret["stringData"]["password"] == password
    assert password not in "".join(masked.values())
    (secret,) = by_kind(all_objects(masked), "Secret")
    assert secret["stringData"]["password"] == MASKED


def test_no_password_no_secret() -> None:
    spec = make_spec()
    assert bgp_password(spec) is None
    assert "piimg-metallb-bgp-secret.yaml" not in render_addons(spec)


# -- ingress choices -----------------------------------------------------------------


def test_nginx_is_f5_controller_behind_loadbalancer() -> None:
    spec = make_spec()
    files = render_addons(spec)
    (chart,) = [c for c in by_kind(all_objects(files), "HelmChart") if c["metadata"]["name"] == "nginx-ingress"]
    # a preview without fetched archives names the chart where its pinned bytes come from
    assert chart["spec"]["repo"] == "https://helm.nginx.com/stable"
    assert chart["spec"]["chart"] == "nginx-ingress"
    assert chart["spec"]["version"] == v.NGINX_INGRESS_CHART_VERSION
    values = yaml.safe_load(chart["spec"]["valuesContent"])
    assert values["controller"]["service"]["type"] == "LoadBalancer"
    assert values["controller"]["ingressClass"]["name"] == "nginx"
    assert ingress_service(spec) == ("nginx-ingress", "nginx-ingress-controller")
    assert warnings(spec) == []


def test_ingress_nginx_is_retired_and_warns() -> None:
    spec = make_spec(cluster={"ingress": "ingress-nginx"})
    files = render_addons(spec)
    assert "WARNING" in files["piimg-ingress-nginx.yaml"]
    (chart,) = [c for c in by_kind(all_objects(files), "HelmChart") if c["metadata"]["name"] == "ingress-nginx"]
    assert chart["spec"]["repo"] == "https://kubernetes.github.io/ingress-nginx"
    assert chart["spec"]["version"] == "4.15.1"
    assert yaml.safe_load(chart["spec"]["valuesContent"])["controller"]["service"]["type"] == "LoadBalancer"
    assert ingress_service(spec) == ("ingress-nginx", "ingress-nginx-controller")
    (warning,) = warnings(spec)
    assert "retired" in warning


def test_traefik_stays_enabled_and_deploys_nothing_extra() -> None:
    spec = make_spec(cluster={"ingress": "traefik"})
    files = render_addons(spec)
    assert list(files) == ["piimg-metallb.yaml", "piimg-metallb-config.yaml"]
    conf = yaml.safe_load(render_k3s_config(spec, spec.initial_server, SECRETS))
    assert conf["disable"] == ["servicelb"]


def test_none_has_no_ingress() -> None:
    spec = make_spec(cluster={"ingress": "none"})
    assert list(render_addons(spec)) == ["piimg-metallb.yaml", "piimg-metallb-config.yaml"]
    assert ingress_service(spec) is None
    conf = yaml.safe_load(render_k3s_config(spec, spec.initial_server, SECRETS))
    assert "traefik" in conf["disable"]


def test_traefik_disabled_even_if_user_forgot() -> None:
    spec = make_spec(cluster={"disable": ["servicelb", "metrics-server"]})
    conf = yaml.safe_load(render_k3s_config(spec, spec.initial_server, SECRETS))
    assert conf["disable"] == ["servicelb", "metrics-server", "traefik"]


# -- k3s config details ---------------------------------------------------------------


def test_extra_server_args_merged() -> None:
    spec = make_spec(
        nodes=[
            {"hostname": "k8s-master", "role": "server", "address": "10.0.2.10"},
            {"hostname": "k8s-worker1", "role": "agent", "address": "10.0.2.11"},
        ],
        cluster={
            "extra_server_args": [
                "--flannel-backend=wireguard-native",
                "--secrets-encryption",
                "--disable=metrics-server,traefik",
                "--tls-san=k8s.example.org",
                "--kube-apiserver-arg=max-requests-inflight=100",
                "--kube-apiserver-arg=audit-log-maxage=3",
            ]
        },
    )
    conf = yaml.safe_load(render_k3s_config(spec, spec.initial_server, SECRETS))
    assert conf["flannel-backend"] == "wireguard-native"
    assert conf["secrets-encryption"] is True
    assert conf["disable"] == ["traefik", "servicelb", "metrics-server"]
    assert conf["tls-san"] == ["10.0.2.10", "k8s.example.org"]
    assert conf["kube-apiserver-arg"] == ["max-requests-inflight=100", "audit-log-maxage=3"]
    agent = yaml.safe_load(render_k3s_config(spec, spec.node("k8s-worker1"), SECRETS))
    assert "flannel-backend" not in agent


# The refusals of extra_server_args (managed keys, --disable=piimg-*, traefik)
# are spec rules now: tests/test_config_validation.py and test_spec_verdicts.py.


@pytest.mark.parametrize("token", ["1e10", "true", "0777", "null", "a: b", "#x", "K10abc::server:def"])
def test_token_is_always_a_string(token: str) -> None:
    spec = make_spec()
    conf = yaml.safe_load(render_k3s_config(spec, spec.initial_server, Secrets(k3s_token=token)))
    assert conf["token"] == token


def test_masked_k3s_config_hides_token() -> None:
    spec = make_spec(nodes=TOPOLOGIES["1-server-2-agents"])
    for node in spec.nodes:
        text = render_k3s_config(spec, node, SECRETS, mask_secrets=True)
        assert TEST_TOKEN not in text
        assert yaml.safe_load(text)["token"] == MASKED


# -- names, versions, validators ----------------------------------------------------


def test_addon_name_checks() -> None:
    # k3s pkg/deploy/controller.go basename: everything before the first period
    assert addon_name("piimg-metallb.yaml") == "piimg-metallb"
    assert addon_name("piimg-metallb.config.yaml") == "piimg-metallb"
    check_addon_names(["piimg-a.yaml", "piimg-b.yml"])
    for bad in (["traefik.yaml"], ["coredns.yaml"], ["my_addon.yaml"], ["Piimg.yaml"], ["a.yaml", "a.yml"],
                ["piimg-a.yaml", "piimg-a.b.yaml"], ["traefik.custom.yaml"]):
        with pytest.raises(RenderError):
            check_addon_names(bad)


def test_documented_apply_order_is_k3s_sorted_order() -> None:
    """k3s applies sorted paths (pkg/deploy/controller.go listFilesIn: sort.Strings): the docstring's order."""
    names: set[str] = set()
    for ingress in INGRESSES:
        spec = make_spec(cluster={"ingress": ingress, "bgp": {"password_env": "K"}}, env={"K": "key"})
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("K", "key")
            names |= set(render_addons(spec))
    # Go's sort.Strings compares bytes, as Python's sort does for ASCII
    assert tuple(addon_name(n) for n in sorted(names)) == K3S_APPLY_ORDER_NOTE
    assert sorted(names).index("piimg-metallb.yaml") > sorted(names).index("piimg-metallb-config.yaml")


def test_versions_consistent() -> None:
    assert v.KUBERNETES_SCHEMA_VERSION.split(".")[:2] == v.K3S_VERSION.lstrip("v").split(".")[:2]
    assert v.metallb_chart_version("v0.16.1") == "0.16.1"


def test_schemas_reject_mistakes() -> None:
    """The upstream schemas are not rubber stamps: typical slips are caught."""
    spec = make_spec()
    objs = all_objects(render_addons(spec))
    (peer,) = by_kind(objs, "BGPPeer")
    for mutate in (
        lambda o: o["spec"].update(peerAsn=1),  # wrong case
        lambda o: o["spec"].update(myASN="64500"),  # string
        lambda o: o["spec"].pop("myASN"),  # required
        lambda o: o["spec"].update(peerPort=70000),  # maximum 16384
        lambda o: o["spec"].update(passwordSecret="name"),  # must be a reference object
        lambda o: o.update(apiVersion="metallb.io/v1beta1"),
    ):
        broken = yaml.safe_load(yaml.safe_dump(peer))
        mutate(broken)
        with pytest.raises((jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError)):
            validate_object(broken)
    (chart,) = [c for c in by_kind(objs, "HelmChart") if c["metadata"]["name"] == "metallb"]
    for mutate in (
        lambda o: o["spec"].update(valuesContent={"a": 1}),  # a YAML string, not a mapping
        lambda o: o["spec"].update(chartVersion="0.16.1"),  # the field is "version"
    ):
        broken = yaml.safe_load(yaml.safe_dump(chart))
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate_object(broken)
    (ns,) = [o for o in by_kind(objs, "Namespace") if o["metadata"]["name"] == "metallb-system"]
    broken = yaml.safe_load(yaml.safe_dump(ns))
    broken["metadata"]["labelz"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(broken)


@pytest.mark.parametrize(
    ("chart", "values", "error"),
    [
        ("metallb", {"speaker": {"frr": {"enabled": "false"}}}, jsonschema.ValidationError),  # boolean
        ("metallb", {"frrk8": {"enabled": False}}, AssertionError),  # typo: not in values.yaml
        ("nginx-ingress", {"controller": {"kind": "Deployment"}}, jsonschema.ValidationError),
        # ServiceSpec.type from the Kubernetes definitions the chart refers to
        ("nginx-ingress", {"controller": {"service": {"type": 1}}}, jsonschema.ValidationError),
        ("ingress-nginx", {"controller": {"servce": {"type": "LoadBalancer"}}}, AssertionError),
    ],
)
def test_values_schemas_reject_mistakes(chart: str, values: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_values(chart, values)


def test_masking_changes_only_the_secrets() -> None:
    spec = make_spec(nodes=TOPOLOGIES["3-servers"], cluster={"bgp": {"password_env": "BGP_KEY"}}, env={"BGP_KEY": "k"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BGP_KEY", "md5-secret")
        plain = all_objects(render_addons(spec))
        masked = all_objects(render_addons(spec, mask_secrets=True))
    (secret,) = by_kind(plain, "Secret")
    secret["stringData"]["password"] = MASKED
    assert plain == masked
    for node in spec.nodes:
        conf = yaml.safe_load(render_k3s_config(spec, node, SECRETS))
        conf["token"] = MASKED
        assert conf == yaml.safe_load(render_k3s_config(spec, node, SECRETS, mask_secrets=True))
