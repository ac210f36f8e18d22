"""Fixtures shared by the catalog and fetch tests: generated images behind a
catalog served on 127.0.0.1. Import them into a test module by name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import fetchfixtures as ig
from tests.httpserver import FileServer


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return ig.catalog_images()


@pytest.fixture()
def srv(images: dict[str, bytes]) -> Iterator[tuple[FileServer, str]]:
    """The file server and the URL of its catalog."""
    with FileServer() as s:
        yield s, ig.serve_catalog(s, images)
