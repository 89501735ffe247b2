"""The issuer's app factory."""

from __future__ import annotations

__all__ = ["create_app"]

from aiohttp import web

from codeengine.settings import Settings
from codeengine.store import Store
from codeengine.web.health import HEALTH_ROUTES
from codeengine.web.runtime import attach_runtime


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    """The issuer application, wired to the store and keyring that ``settings`` name."""
    app = web.Application(client_max_size=settings.service.client_max_size_bytes)
    attach_runtime(app, settings, store, signs=True)
    app.add_routes(HEALTH_ROUTES)
    return app
