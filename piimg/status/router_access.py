"""Opening the router for the status checks, with router-setup's connection settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from piimg.errors import PiimgError, RouterError
from piimg.spec.model import Spec
from piimg.status.routerchk import MenuReader

RouterOpener = Callable[[], tuple[MenuReader, str]]


def opener(spec: Spec) -> RouterOpener:
    def open_router() -> tuple[MenuReader, str]:
        from piimg.router import client

        try:
            api: Any = client.connect(spec.router, client.router_password(spec.router), base_dir=spec.base_dir)
        except PiimgError:
            raise
        except Exception as exc:  # librouteros raises its own hierarchy and OSError
            raise RouterError(f"router {spec.router.host}:{spec.router.api_port}: {exc}") from exc

        def read(menu: str) -> list[dict[str, Any]]:
            return [dict(row) for row in api.path(*menu.strip("/").split("/"))]

        resource = next(iter(read("/system/resource")), {})
        return read, str(resource.get("version", "7"))

    return open_router
