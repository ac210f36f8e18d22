"""cmdline.txt editing: one line, each word once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piimg.build import cmdline
from piimg.errors import ImageError

BASE = "console=serial0,115200 console=tty1 root=PARTUUID=5e3da0c1-02 rootfstype=ext4 rootwait quiet"


def test_parse_takes_the_first_non_empty_line() -> None:
    assert cmdline.parse(b"\n  a b  c\nignored d\n") == ["a", "b", "c"]
    assert cmdline.parse("a\r\nb") == ["a"]


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_parse_empty_is_an_error(text: str) -> None:
    with pytest.raises(ImageError, match="empty"):
        cmdline.parse(text)


def test_parse_rejects_non_utf8() -> None:
    with pytest.raises(ImageError, match="UTF-8"):
        cmdline.parse(b"\xff\xfe root=x")


def test_add_words_once_in_order() -> None:
    words = cmdline.add_words(BASE.split(), ["cgroup_memory=1", "cgroup_enable=memory", "quiet", "cgroup_memory=1"])
    assert words == [*BASE.split(), "cgroup_memory=1", "cgroup_enable=memory"]


def test_add_keeps_other_values_of_the_same_key() -> None:
    # cgroup_enable may appear several times with different values
    words = cmdline.add_words(["cgroup_enable=cpuset"], ["cgroup_enable=memory"])
    assert words == ["cgroup_enable=cpuset", "cgroup_enable=memory"]


def test_remove_words_and_keys() -> None:
    words = ["a", "ds=nocloud;i=old", "systemd.run=/boot/x.sh", "b", "ds=other", "a"]
    assert cmdline.remove_words(words, ["a"]) == ["ds=nocloud;i=old", "systemd.run=/boot/x.sh", "b", "ds=other"]
    assert cmdline.remove_keys(words, ["ds", "systemd.run"]) == ["a", "b", "a"]


def test_edit_replaces_stale_values_and_renders_one_line() -> None:
    text = BASE + " cgroup_memory=1 ds=nocloud;i=old\n"
    out = cmdline.edit(text, add=["cgroup_memory=1", "cgroup_enable=memory", "ds=nocloud;i=new"], drop_keys=["ds"])
    assert out == BASE + " cgroup_memory=1 cgroup_enable=memory ds=nocloud;i=new\n"


word = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)


@given(st.lists(word, min_size=1, max_size=20), st.lists(word, max_size=8))
def test_edit_properties(base: list[str], extra: list[str]) -> None:
    text = " ".join(base) + "\n"
    once = cmdline.edit(text, add=extra)
    assert once.endswith("\n") and once.count("\n") == 1
    words = once.split()
    for w in extra:
        assert w in words
        if w not in base:
            assert words.count(w) == 1
    assert cmdline.edit(once, add=extra) == once  # idempotent
