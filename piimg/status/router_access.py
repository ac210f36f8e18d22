"""Opening the router for the status checks, with router-setup's connection settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from piimg.spec.model import Spec
from piimg.status.routerchk import MenuReader, RouterOpener, Rows

if TYPE_CHECKING:
    from piimg.router.dialects import Dialect


def opener(spec: Spec) -> RouterOpener:
    """Connect and detect the dialect as ``router-setup`` does; every failure is a RouterError."""

    def open_router() -> tuple[MenuReader, Dialect]:
        from piimg.router import client
        from piimg.router.dialects import detect_version

        api = client.connect(spec.router, client.router_password(spec.router), base_dir=spec.paths.root)

        def read(menu: str) -> Rows:
            return [dict(row) for row in api.path(*menu.strip("/").split("/"))]

        return read, detect_version(api)

    return open_router
