"""``cmdline.txt``: the kernel command line the Pi firmware reads from the boot partition.

The firmware reads only the first line, and words are separated by single
spaces; a second line (or a stray newline in the middle) silently drops every
word after it. So every edit here parses the file into words and writes back
exactly one line ending in a newline. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from piimg.errors import ImageError


def parse(text: str | bytes) -> list[str]:
    """The words of the command line (the first non-empty line, as the firmware does)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ImageError("cmdline.txt is not UTF-8 text") from None
    for line in text.replace("\r", "\n").split("\n"):
        if line.strip():
            return line.split()
    raise ImageError("cmdline.txt is empty: the image has no kernel command line (root=...)")


def render(words: Sequence[str]) -> str:
    """One line, words separated by single spaces, with the final newline."""
    return " ".join(words) + "\n"


def _key(word: str) -> str:
    return word.split("=", 1)[0]


def add_words(words: Sequence[str], extra: Iterable[str]) -> list[str]:
    """Append every word of ``extra`` not already present (exact match), each once."""
    out = list(words)
    for word in extra:
        if word not in out:
            out.append(word)
    return out


def remove_words(words: Sequence[str], unwanted: Iterable[str]) -> list[str]:
    """Drop every occurrence of the exact words in ``unwanted``."""
    drop = set(unwanted)
    return [w for w in words if w not in drop]


def remove_keys(words: Sequence[str], keys: Iterable[str]) -> list[str]:
    """Drop every ``key=value`` (or bare ``key``) word whose key is in ``keys``.

    Used before re-adding words whose value changes between builds
    (``ds=nocloud;i=...``, ``systemd.run=...``), so a rebuilt image never
    carries two of them.
    """
    drop = set(keys)
    return [w for w in words if _key(w) not in drop]


def edit(text: str | bytes, *, add: Iterable[str] = (), drop_keys: Iterable[str] = ()) -> str:
    """Parse, drop words by key, add words once, render: the whole edit in one call."""
    words = remove_keys(parse(text), drop_keys)
    return render(add_words(words, add))
