"""``validate`` rejects exactly what ``build`` and ``manifests`` reject (W1).

Every spec rule (the broken-spec table of test_config_validation.py plus
the cases below) goes to ``piimg validate``, ``piimg manifests`` and
``piimg build --image LOCAL`` (a generated image on disk, no network). The
three must agree: all succeed, or all fail with the same first ``error:``
line. A rule that only a renderer or the build enforced would show up here
as "validate: ok, build: error".

Where the k3s cases come from: k3s-io/docs@b5ddfcf9eb8bb21d8cbdef778d42427213b81ad5:
docs/installation/configuration.md ("Configuration File": a flag's YAML key
is its name without ``--``; repeatable flags are YAML lists; boolean flags
are ``true``/``false``; ``token`` and ``cluster-init`` appear as keys, i.e.
the file can carry what piimg must set itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import have
from tests.imagegen import GeneratedImage, make_image, tools_available
from tests.releaseserver import Published
from tests.test_config_validation import BASE, CASES, _with

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (tools_available() and have("mtype")), reason="needs dosfstools, mtools, e2fsprogs"),
]

WIFI_ENV = "PIIMG_TEST_VERDICT_WIFI"
BGP_ENV = "PIIMG_TEST_VERDICT_BGP"
# the environment every case runs in: one good passphrase, one good BGP key
ENV = {WIFI_ENV: "correct horse battery", BGP_ENV: "md5-key", "PIIMG_TEST_VERDICT_SHORT": "short"}
WIFI = {"ssid": "lab", "psk_env": WIFI_ENV}


def _cluster(**kw: Any) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["cluster"].update(kw)
    return doc


def _wifi(psk_env: str) -> dict[str, Any]:
    doc = _with("locale.wifi_country", "GB")
    doc["wifi"] = {**WIFI, "psk_env": psk_env}
    return doc


# (case id, document) that must be accepted by all three commands
GOOD: list[tuple[str, object]] = [
    ("defaults", BASE),
    ("scalar flags", _cluster(extra_server_args=["--write-kubeconfig-mode=0644", "--secrets-encryption"])),
    ("list flags", _cluster(extra_server_args=["--disable=metrics-server,local-storage", "--node-label=a=b", "--tls-san=k8s.lab"])),
    ("traefik chosen, others disabled", _cluster(ingress="traefik", disable=["servicelb"], extra_server_args=["--disable=metrics-server"])),
    ("wifi passphrase from env", _wifi(WIFI_ENV)),
    ("bgp password from env", _cluster(bgp={"asn": 64500, "password_env": BGP_ENV})),
]

# rules a later command used to catch on its own (the renderer, the payload)
LATE: list[tuple[str, object]] = [
    ("wifi passphrase too short", _wifi("PIIMG_TEST_VERDICT_SHORT")),
    ("token in extra args", _cluster(extra_server_args=["--token=abc"])),
    ("bare list flag", _cluster(extra_server_args=["--node-label"])),
]

# $PIIMG_ARTIFACT_MIRROR (the spec sets no cluster.artifact_mirror): read at load, checked like the key
MIRROR_ENV = "PIIMG_ARTIFACT_MIRROR"
BAD_MIRROR_ENV: list[tuple[str, str]] = [
    ("mirror env plain http to a name", "http://mirror.lan/piimg"),
    ("mirror env loopback-looking name", "http://127.0.0.1.evil.example/m"),
    ("mirror env not a url", "mirror.lan/piimg"),
    ("mirror env with a query", "https://mirror.lan/piimg?token=1"),
]

ALL = ([(f"bad: {c[0]}", c[1], {}) for c in CASES] + [(f"late: {c[0]}", c[1], {}) for c in LATE]
       + [(f"env: {c[0]}", BASE, {MIRROR_ENV: c[1]}) for c in BAD_MIRROR_ENV]
       + [(f"good: {c[0]}", c[1], {}) for c in GOOD])


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> GeneratedImage:
    # "arm64" in the name, as Raspberry Pi OS names its images: the build takes the k3s build from it
    return make_image(tmp_path_factory.mktemp("verdicts") / "base-arm64.img", flavour="bookworm", boot_mib=48, root_mib=24)


def _first_error(stderr: str) -> str | None:
    return next((line for line in stderr.splitlines() if line.startswith("error: ")), None)


@pytest.mark.parametrize(("doc", "env"), [c[1:] for c in ALL], ids=[c[0] for c in ALL])
def test_validate_build_and_manifests_agree(project: Path, piimg: Any, base_image: GeneratedImage,
                                            monkeypatch: pytest.MonkeyPatch, doc: object, env: dict[str, str],
                                            k3s_release: Published) -> None:
    for name, value in {**ENV, **env}.items():
        monkeypatch.setenv(name, value)
    if MIRROR_ENV in env:
        assert isinstance(doc, dict) and not doc["cluster"].get("artifact_mirror")  # the variable is what is judged
    elif isinstance(doc, dict) and isinstance(doc.get("cluster", {}), dict):
        # the build fetches k3s and the charts: from a generated release on a loopback mirror
        doc = {**doc, "cluster": {**doc.get("cluster", {}), "artifact_mirror": k3s_release.mirror}}
    (project / "piimg.yaml").write_text(yaml.safe_dump(doc))
    validate = piimg("validate")
    manifests = piimg("manifests")
    build = piimg("build", "--image", str(base_image.path), "-o", str(project / "out"))
    verdicts = {
        "validate": (validate.exit_code == 0, _first_error(validate.stderr)),
        "manifests": (manifests.exit_code == 0, _first_error(manifests.stderr)),
        "build": (build.exit_code == 0, _first_error(build.stderr)),
    }
    assert len(set(verdicts.values())) == 1, verdicts
    ok, error = verdicts["validate"]
    if ok:
        assert list((project / "out").glob("*.overlay")), build
    else:
        assert error is not None and "Traceback" not in build.output
        if MIRROR_ENV in env:
            assert error.startswith(f"error: ${MIRROR_ENV}: "), error
        assert not (project / "out").exists(), "a spec error must stop build before any output"


#: rules no case above reaches through the CLI, and where they are tested instead
NOT_IN_TABLE = {"_login_possible": "test_config_validation.test_no_login_possible (the CLI tests' HOME has a key)"}


def test_every_rule_has_a_case(home: Path, tmp_path: Path) -> None:
    """Each function in RULES raises for at least one case of the tables (found from the traceback)."""
    from piimg.errors import ConfigError
    from piimg.paths import ProjectPaths
    from piimg.spec import load as spec_load
    from piimg.spec import rules

    hit: set[str] = set()
    for doc in [c[1] for c in CASES] + [c[1] for c in LATE]:
        try:
            spec_load.parse(doc, env=ENV, home=home, paths=ProjectPaths.in_folder(tmp_path))
        except ConfigError as exc:
            tb = exc.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == rules.__file__:
                    hit.add(tb.tb_frame.f_code.co_name)
                tb = tb.tb_next
    names = {rule.__name__ for rule in rules.RULES}
    assert names - hit - set(NOT_IN_TABLE) == set()
    assert "resolve_env_secrets" in hit
