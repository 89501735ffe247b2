"""The issuer's app factory: generate, display, convert, trust list, key rotation."""

from __future__ import annotations

__all__ = ["create_app"]

from pathlib import Path

from aiohttp import web

from codeengine.code.fusion import load_fusion
from codeengine.code.qr import ImageCache
from codeengine.settings import Settings
from codeengine.store.port import Store
from codeengine.web.fastlane import LANE_ROUTES, LaneRoute
from codeengine.web.health import HEALTH_ROUTES
from codeengine.web.metrics import METRICS_ROUTES, RequestMetrics
from codeengine.web.pages import page_route, static_route
from codeengine.web.runtime import CLOCK, Clock, attach_runtime
from codeengine.web.service import METRICS, add_service_routes
from issuer.aliases import ALIAS_ROUTES, FUSION
from issuer.appeals import APPEAL_ROUTES
from issuer.batches import BATCH_ROUTES
from issuer.cities import CITY_OPS_ROUTES
from issuer.openapi import OPENAPI_ROUTES
from issuer.signingkeys import KEY_ROUTES
from issuer.subjects import QR_CACHE, SUBJECT_ROUTES

SCOPES = {
    "generate": "generate",
    "display": "display",
    "convert": "convert",
    "rotate": "admin",
    "history": "convert",
    "batch_import": "convert",
    "batch_show": "convert",
    "batch_rollback": "convert",
    "appeal_file": "appeal",
    "appeal_show": "appeal",
    "appeal_decide": "convert",
    "alias_bind": "fusion",
    "alias_list": "fusion",
    "alias_unbind": "fusion",
    "alias_bulk": "fusion",
    "licence_link": "fusion",
    "licence_list": "fusion",
    "city_list": "admin",
    "city_handover": "admin",
    "batch_list": "convert",
}
ISSUER_ASSETS = ("common.css", "common.js", "display.css", "display.js", "ops.css", "ops.js")
ISSUER_PAGES = [
    page_route("/pages/display", "display.html", "page_display"),
    page_route("/pages/ops", "ops.html", "page_ops"),
    static_route(ISSUER_ASSETS),
]
"""The display page (亮码, for an app's web view) and the ops console, with their assets."""


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> web.Application:
    """The issuer application, wired to the store and keys that ``settings`` name."""
    app = web.Application(client_max_size=settings.service.client_max_size_bytes)
    if clock is not None:
        app[CLOCK] = clock
    attach_runtime(app, settings, store, signs=True)
    app[METRICS] = RequestMetrics("issuer")
    app[QR_CACHE] = ImageCache()
    app[FUSION] = load_fusion(Path(settings.codes.fusion_file))
    add_service_routes(
        app,
        [
            *HEALTH_ROUTES,
            *METRICS_ROUTES,
            *SUBJECT_ROUTES,
            *KEY_ROUTES,
            *BATCH_ROUTES,
            *APPEAL_ROUTES,
            *ALIAS_ROUTES,
            *CITY_OPS_ROUTES,
            *OPENAPI_ROUTES,
            *ISSUER_PAGES,
        ],
        SCOPES,
    )
    app[LANE_ROUTES] = (LaneRoute("GET", "/v1/subjects/{subject}/code", "display"),)
    return app
