"""The cache's small JSON indexes (``Cache.remember``/``Cache.recall``) in a real cache folder.

The contract (piimg/fetch/cache.py): an index only saves work, so a missing or
damaged one counts as empty and the next entry rewrites it whole; every write
goes to a temporary name and is renamed, so a reader never sees half an index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from piimg.fetch import artifacts
from piimg.fetch.cache import ARTIFACT_URLS, LOCAL_DIGESTS, URL_DIGESTS, Cache
from piimg.fetch.download import RetryPolicy
from piimg.fetch.source import Fetcher
from piimg.spec import load as spec_load
from tests.conftest import TEST_KEY
from tests.releaseserver import VERSION, Published

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.mark.parametrize("index", [LOCAL_DIGESTS, URL_DIGESTS, ARTIFACT_URLS])
def test_remembered_values_outlive_the_cache_object(tmp_path: Path, index: str) -> None:
    Cache(tmp_path).remember(index, "https://example.org/a", SHA_A)
    Cache(tmp_path).remember(index, "https://example.org/b", SHA_B)
    again = Cache(tmp_path)
    assert again.recall(index, "https://example.org/a") == SHA_A
    assert again.recall(index, "https://example.org/b") == SHA_B
    assert again.recall(index, "https://example.org/c") is None
    assert json.loads((tmp_path / index).read_text()) == {"https://example.org/a": SHA_A, "https://example.org/b": SHA_B}


def test_indexes_are_separate(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.remember(URL_DIGESTS, "k", SHA_A)
    assert cache.recall(ARTIFACT_URLS, "k") is None and cache.recall(LOCAL_DIGESTS, "k") is None


def test_a_missing_cache_folder_recalls_nothing(tmp_path: Path) -> None:
    assert Cache(tmp_path / "nowhere").recall(URL_DIGESTS, "k") is None
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("damage", [b"{\"k\": \"a", b"\xff\xfe not text", b"[1, 2]", b"{\"k\": 7}", b""],
                         ids=["cut off", "not utf-8", "a list", "a number value", "empty"])
def test_a_damaged_index_counts_as_empty_and_is_rewritten(tmp_path: Path, damage: bytes) -> None:
    cache = Cache(tmp_path)
    (tmp_path / URL_DIGESTS).write_bytes(damage)
    assert cache.recall(URL_DIGESTS, "k") is None
    cache.remember(URL_DIGESTS, "other", SHA_B)
    assert json.loads((tmp_path / URL_DIGESTS).read_text()) == {"other": SHA_B}


def test_remember_replaces_the_file_by_rename(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.remember(URL_DIGESTS, "a", SHA_A)
    before = os.stat(tmp_path / URL_DIGESTS).st_ino
    cache.remember(URL_DIGESTS, "b", SHA_B)
    assert os.stat(tmp_path / URL_DIGESTS).st_ino != before  # a new file renamed over the old, not written in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [URL_DIGESTS]  # no temporary left


def test_local_digests_forget_files_that_are_gone(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    kept, gone = tmp_path / "kept.img", tmp_path / "gone.img"
    kept.write_bytes(b"k")
    gone.write_bytes(b"g")
    cache.remember_local_digest(gone, SHA_B)
    cache.remember_local_digest(kept, SHA_A)
    assert cache.local_digest(gone) == SHA_B
    gone.unlink()
    kept.write_bytes(b"k2")  # size changed: the old digest no longer applies
    assert cache.local_digest(kept) is None
    cache.remember_local_digest(kept, SHA_B)
    keys = list(json.loads((tmp_path / "cache" / LOCAL_DIGESTS).read_text()))
    assert [k.rsplit("|", 2)[0] for k in keys] == [str(kept.resolve())] * 2  # the old and the new version of kept


def test_artifact_sums_file_is_fetched_again_after_its_index_is_damaged(k3s_release: Published, tmp_path: Path) -> None:
    doc = {"access": {"ssh_authorized_keys": [TEST_KEY]}, "cluster": {"artifact_mirror": k3s_release.mirror}}
    spec = spec_load.loads(json.dumps(doc), env={})
    policy = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02, connect_timeout=2, read_timeout=2)
    cache = Cache(tmp_path / "cache")
    artifacts.obtain_cluster_artifacts(spec, "arm64", Fetcher(cache=cache, policy=policy))
    sums = f"/github.com/k3s-io/k3s/releases/download/{VERSION}/sha256sum-arm64.txt"
    index = tmp_path / "cache" / ARTIFACT_URLS
    assert len(json.loads(index.read_text())) == 1
    k3s_release.rel.srv.reset_log()
    index.write_text("{not json")
    artifacts.obtain_cluster_artifacts(spec, "arm64", Fetcher(cache=cache, policy=policy))
    assert k3s_release.rel.requested() == [sums]  # only the file the index knew, asked again
    assert len(json.loads(index.read_text())) == 1
