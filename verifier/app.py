"""The verifier's app factory: verify (single, batch), revocations, scan log, trust list."""

from __future__ import annotations

__all__ = ["create_app", "load_foreign"]

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from codeengine.code.errors import KeyringError
from codeengine.code.foreign import ForeignTrust, load_foreign_trust
from codeengine.code.fusion import load_fusion
from codeengine.settings import Settings
from codeengine.store.port import Store
from codeengine.web.auth import CREDENTIALS
from codeengine.web.health import HEALTH_ROUTES
from codeengine.web.metrics import RequestMetrics
from codeengine.web.openapi import OPENAPI, OPENAPI_ROUTES, openapi_document
from codeengine.web.pages import page_route, sdk_route, static_route, worker_route
from codeengine.web.routes import Route
from codeengine.web.runtime import CLOCK, STORE, Clock, attach_runtime
from codeengine.web.service import METRICS, add_routes
from codeengine.web.trust import PUBLISHED, PublishedLists
from verifier.offlinescans import OFFLINE_SCAN_SCHEMAS, OFFLINE_SCANS_ROUTE, offline_scans_schema
from verifier.scanlog import ScanLogWriter
from verifier.schemas import VERIFIER_SCHEMAS, scan_items_schema
from verifier.verify import FOREIGN, FUSION, SCAN_LOG, VERIFY_ROUTES

VERIFIER_ASSETS = (
    "common.css",
    "common.js",
    "terminal.css",
    "terminal.js",
    "terminal-offline.js",
)
VERIFIER_PAGES = [
    page_route(
        "/pages/terminal", "terminal.html", "page_terminal", "扫码核验: the scan terminal page"
    ),
    worker_route(
        "/pages/terminal-worker.js", "terminal-worker.js", "/pages/terminal", VERIFIER_ASSETS
    ),
    static_route(VERIFIER_ASSETS),
    sdk_route(),
]
"""The scan terminal page (扫码核验) and its assets."""
VERIFIER_ROUTES: list[Route] = [
    *HEALTH_ROUTES,
    *VERIFY_ROUTES,
    OFFLINE_SCANS_ROUTE,
    *OPENAPI_ROUTES,
    *VERIFIER_PAGES,
]
"""Every operation of the verifier, in the order the router tries them."""
TITLE = "codeengine verifier"
DESCRIPTION = (
    "Verify (扫码/验码) health and service codes online and in batches; revoke codes and keys; "
    "count scans. Every failure answers a JSON problem body with a stable `reason`."
)


def load_foreign(settings: Settings) -> ForeignTrust:
    """The credential policy and the DCC and SHC trust lists the settings name, read once at
    start-up; a missing or malformed file stops the service with the error naming it."""
    dcc_file, shc_file = settings.verifier.dcc_trust_file, settings.verifier.shc_trust_file
    try:
        return load_foreign_trust(
            settings.codes.credentials_path().read_text(encoding="utf-8"),
            dcc_trust=Path(dcc_file).read_bytes() if dcc_file else None,
            shc_trust=Path(shc_file).read_bytes() if shc_file else None,
        )
    except (OSError, ValueError) as exc:
        raise KeyringError(f"credential policy or trust lists: {exc}") from exc


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> web.Application:
    """The verifier application, wired to the store and trust list ``settings`` name."""
    # Every body is held to the service's limit; the batch verify reads its larger one itself
    # (verifier.verify.batch_body_bytes), so a single verify cannot send a batch's worth.
    app = web.Application(client_max_size=settings.service.client_max_size_bytes)
    if clock is not None:
        app[CLOCK] = clock
    attach_runtime(app, settings, store, signs=False)
    app[METRICS] = RequestMetrics("verifier")
    app[PUBLISHED] = PublishedLists()

    app[FUSION] = load_fusion(settings.codes.fusion_path())
    app[FOREIGN] = load_foreign(settings)

    async def scan_log(app: web.Application) -> AsyncIterator[None]:
        # Every terminal's profile must exist: a typo would otherwise show it the default.
        for client in app[CREDENTIALS].by_key_hash.values():
            if (
                client.terminal_type is not None
                and client.terminal_type not in app[FUSION].terminals
            ):
                raise KeyringError(
                    f"client {client.name!r}: no terminal profile {client.terminal_type!r}"
                )
        writer = ScanLogWriter(app[STORE], settings.verifier)
        app[SCAN_LOG] = writer
        writer.start()
        yield
        await writer.stop()

    # After the runtime's context, so the store exists first and is closed last.
    app.cleanup_ctx.append(scan_log)
    # The document says what this app serves: the batch limit of its settings.
    batch_max = settings.verifier.batch_max
    components = {
        **VERIFIER_SCHEMAS,
        **OFFLINE_SCAN_SCHEMAS,
        "ScanItems": scan_items_schema(batch_max),
        "OfflineScans": offline_scans_schema(settings.verifier.offline_batch_max),
    }
    app[OPENAPI] = openapi_document(TITLE, DESCRIPTION, VERIFIER_ROUTES, components)
    add_routes(app, VERIFIER_ROUTES)
    return app
