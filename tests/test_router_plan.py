"""Planner tests, data-driven like pyinfra's operation fixtures.

Each ``tests/data/router_plans/*.json`` case holds:

* ``version``: the router's RouterOS version string;
* ``spec``: overrides merged onto the base spec below (lists replace);
* ``router_spec`` / ``router_version`` (optional): the router was already
  converged to this spec (and version) by piimg, so its rows carry the marker;
* ``mutate`` / ``mutate_remove``: fields changed on (or items removed from)
  those converged rows, as if edited by hand;
* ``current``: further rows on the router (unmanaged items, drift), per menu;
* ``operations``: the expected ``Operation.brief()`` list, in order;
* ``props`` (optional): for some operations, fields their props must contain;
* ``conflicts`` / ``notes`` / ``warnings``: substrings expected, in order.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piimg.errors import RouterError
from piimg.router.apply import apply_plan
from piimg.router.dialects import BgpStyle, dialect_for, dialect_from_spec, parse_version, same_family
from piimg.router.model import desired_state, is_owned, menus_for
from piimg.router.plan import Plan, make_plan, same_value
from piimg.spec import load as spec_load
from piimg.spec import model as spec_model

CASES = sorted((Path(__file__).parent / "data" / "router_plans").glob("*.json"))
# A real public key: `ssh-keygen -t ed25519 -C test@piimg` (OpenSSH 9.2p1); the private half was discarded.
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKG/9VkN1xCggDUtUiRPJkbbpvUF/EMKs8xOJGdlRBom test@piimg"

BASE: dict[str, Any] = {
    "access": {"ssh_authorized_keys": [KEY]},
    "nodes": [
        {"hostname": "k8s-master", "role": "server", "address": "10.0.2.10", "mac": "dc:a6:32:01:02:03"},
        {"hostname": "k8s-w1", "role": "agent", "address": "10.0.2.11", "mac": "dc:a6:32:01:02:04"},
    ],
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def build_spec(overrides: dict[str, Any], env: dict[str, str]) -> spec_model.Spec:
    return spec_load.parse(merge(BASE, overrides), env=env)


def converged_rows(spec: spec_model.Spec, version: str, password: str | None) -> dict[str, list[dict[str, Any]]]:
    """The rows a router shows after piimg set it up for ``spec`` (booleans as the API prints them)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    desired = desired_state(spec, dialect_for(version), bgp_password=password)
    for n, item in enumerate(desired.items, start=100):
        row: dict[str, Any] = {".id": f"*{n:X}"}
        for k, v in item.props.items():
            row[k] = {"yes": True, "no": False}.get(v, int(v) if v.isdigit() else v)
        rows.setdefault(item.menu.path, []).append(row)
    return rows


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_plan_case(case_file: Path) -> None:
    case = json.loads(case_file.read_text())
    env = case.get("env", {})
    spec = build_spec(case.get("spec", {}), env)
    password = env.get(spec.cluster.bgp.password_env or "")
    current: dict[str, list[dict[str, Any]]] = {}
    if "router_spec" in case:
        old = build_spec(case["router_spec"], env)
        old_password = env.get(old.cluster.bgp.password_env or "")
        current = converged_rows(old, case.get("router_version", case["version"]), old_password)
        for path, fields in case.get("mutate", {}).items():
            for row in current[path]:
                row.update(fields)
        for gone in case.get("mutate_remove", []):
            path, key = gone.split(" ", 1)
            current[path] = [r for r in current[path] if key not in (r.get("name"), r.get("mac-address"))]
    for path, rows in case.get("current", {}).items():
        current.setdefault(path, []).extend(rows)

    plan = make_plan(desired_state(spec, dialect_for(case["version"]), bgp_password=password), current)

    assert [op.brief() for op in plan.operations] == case["operations"]
    for brief, props in case.get("props", {}).items():
        op = next(o for o in plan.operations if o.brief() == brief)
        assert {k: op.props.get(k) for k in props} == props, brief
    for key in ("conflicts", "notes", "warnings"):
        got = [c.describe() for c in plan.conflicts] if key == "conflicts" else list(getattr(plan, key))
        want = case.get(key, [])
        assert len(got) == len(want), f"{key}: {got}"
        for text, sub in zip(got, want, strict=True):
            assert sub in text, f"{key}: {sub!r} not in {text!r}"
    assert plan.empty == (not case["operations"])
    text = "\n".join(plan.lines())
    if password:
        assert password not in text
        assert all(password not in op.brief() for op in plan.operations)
    if plan.empty and not plan.conflicts:
        assert "no changes" in text
    if plan.conflicts:  # apply refuses the plan before it touches the router (not even a backup)
        with pytest.raises(RouterError, match=f"^{len(plan.conflicts)} item.*nothing was changed"):
            apply_plan(Untouchable(), plan, backup="piimg-backup")


class Untouchable:
    """A router connection that must not be used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the router was used: {name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the router was used")


def test_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize(
    ("text", "version", "style", "afi"),
    [
        ("6.49.10 (long-term)", (6, 49), BgpStyle.V6, "address-families"),
        ("6.43", (6, 43), BgpStyle.V6, "address-families"),
        ("7.1.5 (stable)", (7, 1), BgpStyle.V7, "address-families"),
        ("7.18.2 (stable)", (7, 18), BgpStyle.V7, "address-families"),
        ("7.19.4 (stable)", (7, 19), BgpStyle.V7, "afi"),
        ("7.20.1 (stable)", (7, 20), BgpStyle.V7_20, "afi"),
        ("7.21beta2 (testing)", (7, 21), BgpStyle.V7_20, "afi"),
        ("7.22.1 (stable)", (7, 22), BgpStyle.V7_20, "afi"),
    ],
)
def test_dialects(text: str, version: tuple[int, int], style: BgpStyle, afi: str) -> None:
    d = dialect_for(text)
    assert d.version == version == parse_version(text)
    assert d.bgp is style
    assert d.afi_field == afi
    # multipath: restraml docs/7.22/inspect.json is the first dump that has it
    assert d.has_multipath == (version >= (7, 22))
    assert d.empty_reply == (version >= (7, 18))


@pytest.mark.parametrize("text", ["6.42.12 (bugfix)", "5.26", "8.0 (testing)", "banana"])
def test_unsupported_versions_are_clear_errors(text: str) -> None:
    with pytest.raises(RouterError, match=r"RouterOS|version"):
        dialect_for(text)


def test_spec_versions() -> None:
    assert dialect_from_spec("6").bgp is BgpStyle.V6
    assert dialect_from_spec("7").afi_field == "address-families"
    assert dialect_from_spec("7.20").bgp is BgpStyle.V7_20
    assert same_family(dialect_from_spec("7"), dialect_for("7.15.3"))
    assert not same_family(dialect_from_spec("7"), dialect_for("7.19.1"))
    assert same_family(dialect_from_spec("7.20"), dialect_for("7.21.5"))
    assert not same_family(dialect_from_spec("7.20"), dialect_for("7.22.1"))  # multipath
    assert same_family(dialect_from_spec("7.22"), dialect_for("7.24"))
    with pytest.raises(RouterError):
        dialect_from_spec("auto")


def test_ownership_marker() -> None:
    assert is_owned("piimg: homelab", "homelab")
    assert is_owned("piimg: homelab node k8s-master", "homelab")
    assert not is_owned("piimg: homelab2", "homelab")
    assert not is_owned("defconf", "homelab")
    assert not is_owned(None, "homelab")


def test_value_comparison() -> None:
    assert same_value("disabled", "no", "false")
    assert same_value("remote.address", "10.0.2.10", "10.0.2.10/32")
    assert not same_value("remote.address", "10.0.2.10", "10.0.2.11")
    assert same_value("remote-address", "10.0.2.10", "10.0.2.10/32")  # the RouterOS 6 spelling
    assert not same_value("address", "10.0.2.10", "10.0.2.10/32")  # only the neighbour address drops its /32
    assert same_value("tcp-md5-key", "x", None)  # hidden by the router: not comparable
    assert same_value("tcp-md5-key", "x", "*****")  # masked: not comparable either
    assert not same_value("tcp-md5-key", "x", "")  # no key on the router: set it
    assert not same_value("tcp-md5-key", "x", "y")
    assert not same_value("comment", "piimg: homelab", None)


# --- property: apply(plan) converges -------------------------------------------


def simulate(current: dict[str, list[dict[str, Any]]], plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """What a router looks like after ``plan`` (the apply layer, without a router)."""
    state = copy.deepcopy(current)
    counter = 1000
    for op in plan.operations:
        rows = state.setdefault(op.menu.path, [])
        if op.action == "add":
            counter += 1
            rows.append({".id": f"*{counter:X}", **op.props})
        elif op.action == "set":
            next(r for r in rows if r[".id"] == op.item_id).update(op.props)
        else:
            rows[:] = [r for r in rows if r[".id"] != op.item_id]
    return state


node_st = st.fixed_dictionaries(
    {"address": st.integers(10, 200), "mac": st.one_of(st.none(), st.integers(1, 250))}
)


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from(["6.49.10", "7.15.3", "7.19.4", "7.20.1", "7.22.1"]),
    old_nodes=st.lists(node_st, min_size=1, max_size=4, unique_by=(lambda n: n["address"])),
    new_nodes=st.lists(node_st, min_size=1, max_size=4, unique_by=(lambda n: n["address"])),
    junk=st.lists(st.sampled_from(["pool", "lease", "dup"]), max_size=3),
    bridge=st.sampled_from(["bridge2", "lab"]),
)
def test_apply_then_replan_is_no_changes(
    version: str, old_nodes: list[dict[str, Any]], new_nodes: list[dict[str, Any]], junk: list[str], bridge: str
) -> None:
    def nodes(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out, macs = [], set()
        for i, n in enumerate(raw):
            mac = None
            if n["mac"] is not None and n["mac"] not in macs:
                macs.add(n["mac"])
                mac = f"dc:a6:32:00:00:{n['mac']:02x}"
            out.append({"hostname": f"n{i}", "role": "server" if i == 0 else "agent", "address": f"10.0.2.{n['address']}", "mac": mac})
        return out

    old = build_spec({"nodes": nodes(old_nodes)}, {})
    new = build_spec({"nodes": nodes(new_nodes), "router": {"bridge": bridge}}, {})
    dialect = dialect_for(version)
    current = converged_rows(old, version, None)
    for i, kind in enumerate(junk):  # leftovers piimg owns from earlier runs
        if kind == "pool":
            current.setdefault("/ip/pool", []).append({".id": f"*J{i}", "name": f"old{i}", "ranges": "10.0.3.1-10.0.3.2", "comment": "piimg: homelab"})
        elif kind == "lease":
            current.setdefault("/ip/dhcp-server/lease", []).append(
                {".id": f"*J{i}", "mac-address": f"02:00:00:00:00:{i:02X}", "address": f"10.0.2.{240 + i}", "comment": "piimg: homelab"})
        else:
            current["/interface/bridge"].append({".id": f"*J{i}", "name": "bridge2", "comment": "piimg: homelab"})

    desired = desired_state(new, dialect, bgp_password=None)
    plan = make_plan(desired, current)
    assert not plan.conflicts
    after = simulate(current, plan)
    again = make_plan(desired, after)
    assert again.empty, [op.brief() for op in again.operations]
    for menu in menus_for(dialect):  # no duplicates of any managed item
        keys = [menu.identity({k: str(v) for k, v in r.items()}) for r in after.get(menu.path, [])]
        assert len(keys) == len(set(keys)), menu.path
