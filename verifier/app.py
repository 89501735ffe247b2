"""The verifier's app factory."""

from __future__ import annotations

__all__ = ["create_app"]

from aiohttp import web

from codeengine.settings import Settings
from codeengine.store import Store
from codeengine.web.auth import ROUTE_SCOPES, auth_middleware
from codeengine.web.health import HEALTH_ROUTES
from codeengine.web.metrics import METRICS_ROUTES, SERVICE, metrics_middleware
from codeengine.web.problems import problem_middleware
from codeengine.web.runtime import CLOCK, Clock, attach_runtime
from verifier.openapi import OPENAPI_ROUTES


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> web.Application:
    """The verifier application, wired to the store and trust list ``settings`` name."""
    app = web.Application(
        client_max_size=settings.service.client_max_size_bytes,
        middlewares=[metrics_middleware, problem_middleware, auth_middleware],
    )
    if clock is not None:
        app[CLOCK] = clock
    attach_runtime(app, settings, store, signs=False)
    app[SERVICE] = "verifier"
    app[ROUTE_SCOPES] = {}
    app.add_routes(HEALTH_ROUTES)
    app.add_routes(METRICS_ROUTES)
    app.add_routes(OPENAPI_ROUTES)
    return app
