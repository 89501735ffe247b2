"""The verifier's app factory: verify (single, batch), revocations, scan log, trust list."""

from __future__ import annotations

__all__ = ["create_app"]

from collections.abc import AsyncIterator

from aiohttp import web

from codeengine.settings import Settings
from codeengine.store import Store
from codeengine.web.health import HEALTH_ROUTES
from codeengine.web.metrics import METRICS_ROUTES, RequestMetrics
from codeengine.web.runtime import CLOCK, STORE, Clock, attach_runtime
from codeengine.web.service import METRICS, add_service_routes
from verifier.openapi import OPENAPI_ROUTES
from verifier.scanlog import ScanLogWriter
from verifier.verify import SCAN_LOG, VERIFY_ROUTES

BATCH_ITEM_BYTES = 640
SCOPES = {
    "verify": "verify",
    "verify_batch": "verify",
    "revoke": "admin",
    "scans": "admin",
}


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> web.Application:
    """The verifier application, wired to the store and trust list ``settings`` name."""
    # A full batch is larger than any other body: about 600 bytes of JSON a code.
    batch_bytes = settings.verifier.batch_max * BATCH_ITEM_BYTES
    app = web.Application(client_max_size=max(settings.service.client_max_size_bytes, batch_bytes))
    if clock is not None:
        app[CLOCK] = clock
    attach_runtime(app, settings, store, signs=False)
    app[METRICS] = RequestMetrics("verifier")

    async def scan_log(app: web.Application) -> AsyncIterator[None]:
        writer = ScanLogWriter(app[STORE], settings.verifier)
        app[SCAN_LOG] = writer
        writer.start()
        yield
        await writer.stop()

    # After the runtime's context, so the store exists first and is closed last.
    app.cleanup_ctx.append(scan_log)
    add_service_routes(
        app, [*HEALTH_ROUTES, *METRICS_ROUTES, *VERIFY_ROUTES, *OPENAPI_ROUTES], SCOPES
    )
    return app
