"""Regenerate ``args.json``: the argument names real RouterOS releases accept.

Run by hand when a new RouterOS release matters (not by the tests)::

    python tests/data/routeros/derive_args.py \\
        --restraml PATH/TO/tikoci/restraml.git --ansible PATH/TO/community.routeros.git \\
        > tests/data/routeros/args.json

Sources (both read with ``git show COMMIT:PATH``, so the output names the
exact commit of every file it used):

* RouterOS 7.x: ``tikoci/restraml`` ``docs/<version>/inspect.json``, the
  ``/console/inspect`` dump of a real CHR image of that release: for each
  command the argument names and, for some, a value description
  (``"0..4294967295"``, ``"string value, max length 80"``, ``"A.B.C.D (IP address)"``).
* RouterOS 6.x: restraml has no 6.x dumps, so the fields of
  ``ansible-collections/community.routeros``
  ``plugins/module_utils/_api_data.py`` specialised for 6.49 (the data the
  ansible modules use; written from ``/export verbose`` of real routers).
  It has no value descriptions. ansible lumps every version below 7.15 with
  6.x, so only 6.49 (the last 6.x line) is derived from it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

#: the menus piimg reads or writes (and the one command besides add/set it sends)
MENUS = [
    "interface/bridge",
    "interface/bridge/port",
    "interface/list",
    "interface/list/member",
    "ip/address",
    "ip/pool",
    "ip/dhcp-server",
    "ip/dhcp-server/network",
    "ip/dhcp-server/lease",
    "routing/bgp/instance",
    "routing/bgp/peer",
    "routing/bgp/connection",
    "routing/bgp/template",
]
COMMANDS = ["system/backup/save"]
#: console helpers that are arguments of every add but never item fields
META_ARGS = {"copy-from", "place-before", "numbers"}
#: one dump per RouterOS line the tests (and users) meet; the peer picks the
#: newest one not newer than the version it plays
RESTRAML_VERSIONS = [
    "7.9", "7.10.2", "7.11.3", "7.12.2", "7.13.5", "7.14.3", "7.15.3", "7.16", "7.16.1", "7.17", "7.18", "7.18.1",
    "7.19", "7.19.4", "7.20", "7.20.1", "7.20.4", "7.20.8", "7.21", "7.21.5", "7.22", "7.22.1", "7.23", "7.24",
]
ANSIBLE_VERSION = "6.49"
ANSIBLE_FILE = "plugins/module_utils/_api_data.py"
#: ansible keeps the v7 BGP menus unversioned (it lumps everything below 7.15
#: together), but RouterOS 6 has no /routing bgp connection or template: its
#: BGP sub-menus are instance, peer, network, aggregate, advertisements (the v6
#: manual, wiki.mikrotik.com Manual:Routing/BGP; ddelnano/terraform-provider-mikrotik
#: docs/resources/bgp_instance.md "will not be supported in RouterOS v7+").
V6_ABSENT = {"/routing/bgp/connection", "/routing/bgp/template"}
#: fields ansible's 6.x data leaves out but RouterOS 6 has, with the source
V6_SUPPLEMENT = {
    "/routing/bgp/instance": {
        "comment": "ddelnano/terraform-provider-mikrotik@1403ccfd3ce5d7270ca348ff359b0916b0a30d5a:"
                   "docs/resources/bgp_instance.md (a RouterOS 6 provider; `comment` of the BGP instance)",
    },
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _desc(node: dict[str, Any]) -> str:
    return re.sub(r"\s+", " ", str(node.get("desc", ""))).strip()


def from_restraml(repo: Path, commit: str, version: str) -> dict[str, Any]:
    path = f"docs/{version}/inspect.json"
    tree = json.loads(git(repo, "show", f"{commit}:{path}"))
    menus: dict[str, Any] = {}
    for menu in MENUS + COMMANDS:
        node: Any = tree
        for part in menu.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue  # the menu does not exist in this release
        cmd = node if menu in COMMANDS else node.get("add")
        if not isinstance(cmd, dict):
            continue
        menus["/" + menu] = {
            name: _desc(arg) for name, arg in sorted(cmd.items())
            if isinstance(arg, dict) and arg.get("_type") == "arg" and name not in META_ARGS
        }
    return {"source": f"tikoci/restraml@{commit}:{path}", "menus": menus}


class _LooseVersion:
    """Just enough of ansible's LooseVersion for _api_data.py's comparisons."""

    def __init__(self, text: str) -> None:
        self.key = tuple(int(p) for p in re.findall(r"\d+", text))

    def __lt__(self, o: _LooseVersion) -> bool:
        return self.key < o.key

    def __le__(self, o: _LooseVersion) -> bool:
        return self.key <= o.key

    def __gt__(self, o: _LooseVersion) -> bool:
        return self.key > o.key

    def __ge__(self, o: _LooseVersion) -> bool:
        return self.key >= o.key

    def __eq__(self, o: object) -> bool:
        return isinstance(o, _LooseVersion) and self.key == o.key

    def __hash__(self) -> int:
        return hash(self.key)


def from_ansible(repo: Path, commit: str) -> dict[str, Any]:
    text = git(repo, "show", f"{commit}:{ANSIBLE_FILE}")
    stub = "ansible_collections.community.routeros.plugins.module_utils.version"
    parts = stub.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    sys.modules[stub].LooseVersion = _LooseVersion  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"__name__": "ansible_api_data"}
    exec(compile(text, ANSIBLE_FILE, "exec"), namespace)
    version = _LooseVersion(ANSIBLE_VERSION)
    menus: dict[str, Any] = {}
    for menu in MENUS:
        data = namespace["PATHS"].get(tuple(menu.split("/")))
        if data is None:
            continue
        if data.unversioned is not None:
            chosen = data.unversioned
        else:
            chosen = None
            for other, comparator, value in data.versioned:
                if namespace["_compare"](version, _LooseVersion(other), comparator) and not isinstance(value, str):
                    chosen = value
                    break
            if chosen is None:
                continue  # not in 6.x
        if "/" + menu in V6_ABSENT:
            continue
        fields = chosen.specialize_for_version(version).fields
        args = {name: "" for name, info in fields.items() if not info.read_only and name not in META_ARGS}
        args.update(dict.fromkeys(V6_SUPPLEMENT.get("/" + menu, {}), ""))
        menus["/" + menu] = dict(sorted(args.items()))
    return {"source": f"ansible-collections/community.routeros@{commit}:{ANSIBLE_FILE} (for {ANSIBLE_VERSION})",
            "supplement": V6_SUPPLEMENT, "menus": menus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restraml", type=Path, required=True, help="git directory of tikoci/restraml")
    parser.add_argument("--ansible", type=Path, required=True, help="git directory of community.routeros")
    parser.add_argument("--restraml-commit", default="HEAD")
    parser.add_argument("--ansible-commit", default="HEAD")
    args = parser.parse_args()
    r_commit = git(args.restraml, "rev-parse", args.restraml_commit).strip()
    a_commit = git(args.ansible, "rev-parse", args.ansible_commit).strip()
    versions = {ANSIBLE_VERSION: from_ansible(args.ansible, a_commit)}
    for version in RESTRAML_VERSIONS:
        versions[version] = from_restraml(args.restraml, r_commit, version)
    out = {
        "about": "Argument names (and RouterOS's own value descriptions, where the dump has them) of the "
                 "add command of each menu piimg touches, per RouterOS release; made by derive_args.py "
                 "from the sources named per version. tests/routeros_peer.py accepts exactly these.",
        "versions": versions,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
