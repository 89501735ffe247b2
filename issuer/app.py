"""The issuer's app factory: generate, display, convert, trust list, key rotation."""

from __future__ import annotations

__all__ = ["create_app"]


from aiohttp import web

from codeengine.code.fusion import load_fusion
from codeengine.code.qr import ImageCache
from codeengine.settings import Settings
from codeengine.store.port import Store
from codeengine.web.health import HEALTH_ROUTES
from codeengine.web.metrics import OPS_METRICS_ROUTES, RequestMetrics
from codeengine.web.openapi import OPENAPI, OPENAPI_ROUTES, openapi_document
from codeengine.web.pages import page_route, static_route
from codeengine.web.routes import Route
from codeengine.web.runtime import CLOCK, Clock, attach_runtime
from codeengine.web.service import METRICS, add_routes
from codeengine.web.trust import PUBLISHED, PublishedLists
from issuer.aliases import ALIAS_ROUTES, FUSION
from issuer.appeals import APPEAL_ROUTES
from issuer.batches import BATCH_ROUTES
from issuer.changelog import attach_change_log
from issuer.cities import CITY_OPS_ROUTES
from issuer.records import RECORDS_OPS_ROUTES
from issuer.schemas import ISSUER_SCHEMAS, alias_type_schema
from issuer.signedlists import attach_publisher
from issuer.signingkeys import KEY_ROUTES
from issuer.subjects import QR_CACHE, SUBJECT_ROUTES

ISSUER_ASSETS = ("common.css", "common.js", "display.css", "display.js", "ops.css", "ops.js")
ISSUER_PAGES = [
    page_route(
        "/pages/display",
        "display.html",
        "page_display",
        "亮码: the display page for an app's web view",
    ),
    page_route(
        "/pages/ops",
        "ops.html",
        "page_ops",
        "The ops console: city state, live metrics, recent batches, the records service",
    ),
    static_route(ISSUER_ASSETS),
]
"""The display page (亮码, for an app's web view) and the ops console, with their assets."""
ISSUER_ROUTES: list[Route] = [
    *HEALTH_ROUTES,
    *SUBJECT_ROUTES,
    *KEY_ROUTES,
    *BATCH_ROUTES,
    *APPEAL_ROUTES,
    *ALIAS_ROUTES,
    *CITY_OPS_ROUTES,
    *RECORDS_OPS_ROUTES,
    *OPS_METRICS_ROUTES,
    *OPENAPI_ROUTES,
    *ISSUER_PAGES,
]
"""Every operation of the issuer, in the order the router tries them."""
TITLE = "codeengine issuer"
DESCRIPTION = (
    "Generate (生码), display (亮码) and convert (赋码/转码) health and service codes; publish "
    "the trust list, and sign it and the revocation list for offline terminals. Every failure "
    "answers a JSON problem body with a stable `reason`."
)


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> web.Application:
    """The issuer application, wired to the store and keys that ``settings`` name."""
    app = web.Application(client_max_size=settings.service.client_max_size_bytes)
    if clock is not None:
        app[CLOCK] = clock
    attach_runtime(app, settings, store, signs=True)
    app[METRICS] = RequestMetrics("issuer")
    app[PUBLISHED] = PublishedLists()
    # After the runtime's context: the publisher needs the store, and stops before it closes.
    attach_publisher(app, settings)
    # Likewise: the change log's last flush runs before the store closes.
    attach_change_log(app, settings)
    app[QR_CACHE] = ImageCache()
    app[FUSION] = load_fusion(settings.codes.fusion_path())
    # The document says what this app serves: the alias types of the fusion file it loaded.
    components = {**ISSUER_SCHEMAS, "AliasType": alias_type_schema(app[FUSION])}
    app[OPENAPI] = openapi_document(TITLE, DESCRIPTION, ISSUER_ROUTES, components)
    add_routes(app, ISSUER_ROUTES)
    return app
