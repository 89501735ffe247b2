"""The records service (``codeengine serve records``): the consumer and the query API, one process.

One process, because the embedded engine's data folder can be opened by one process only; it
consumes the streams (:mod:`codeengine.records.consumer`) and answers the queries
(:mod:`codeengine.records.api`) on ``records.port``, its metrics on ``records.management_port``.
Pointed at a server (``records.server_url``) it keeps no state of its own.

It logs in to the cluster as its own ACL user (``cluster.username``, the records user of
:data:`codeengine.store.acl.RECORDS_ACL_RULE`): it can read, acknowledge and trim the streams,
and touch nothing else.
"""

from __future__ import annotations

__all__ = ["CONSUMER", "ENGINE", "RECORDS_ROUTES", "create_app", "serve_records"]

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from codeengine.code.errors import StoreUnavailable
from codeengine.code.model import CITIES
from codeengine.records.api import ENGINE, RECORDS_API
from codeengine.records.consumer import RecordsConsumer
from codeengine.records.engine import EngineError, RecordsEngine, open_engine
from codeengine.records.opsapi import CONSUMER, RECORDS_OPS_API
from codeengine.records.retention import keep_retention
from codeengine.records.status import keep_status_published
from codeengine.settings import Settings
from codeengine.store.cluster import FastCluster
from codeengine.web.auth import CREDENTIALS, load_credentials
from codeengine.web.health import HEALTH_ROUTES, READINESS_CHECKS, ReadinessCheck
from codeengine.web.management import Management
from codeengine.web.metrics import MetricsCache, RequestMetrics, render_metrics
from codeengine.web.openapi import OPENAPI, OPENAPI_ROUTES, openapi_document
from codeengine.web.routes import Route
from codeengine.web.runtime import CLOCK, SETTINGS, Clock, store_settings
from codeengine.web.service import METRICS, add_routes

FAILPOINT_ENV = "CODEENGINE_FAILPOINT"
"""``records.after_insert``: the process ends after a cycle's insert, before its
acknowledgement (the redelivery test's crash; never set in production)."""

TITLE = "codeengine records"
DESCRIPTION = (
    "The epidemic-data topic library (涉疫数据专题库): scans and colour changes kept for "
    "`records.retention_days`, asked by venue, by subject, as counts and as contacts. Every "
    "query is recorded (who asked what, when). Failures answer a JSON problem body with a "
    "stable `reason`."
)

log = logging.getLogger("codeengine.records")


RECORDS_ROUTES: list[Route] = [*HEALTH_ROUTES, *RECORDS_API, *RECORDS_OPS_API, *OPENAPI_ROUTES]
"""Every operation of the records service, in the order the router tries them."""


def create_app(
    settings: Settings,
    engine: RecordsEngine,
    consumer: RecordsConsumer | None = None,
    *,
    clock: Clock = time.time,
) -> web.Application:
    """The records API over ``engine``; ready while the engine answers (and, if given, the
    consumer has reached the cluster)."""
    app = web.Application(client_max_size=settings.service.client_max_size_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[ENGINE] = engine
    app[METRICS] = RequestMetrics("records")
    app[CREDENTIALS] = load_credentials(Path(settings.keys.credentials_file), 1.0)
    if consumer is not None:
        app[CONSUMER] = consumer

    async def engine_ready() -> str | None:
        try:
            await asyncio.to_thread(engine.rows, "SELECT 1")
        except EngineError as exc:
            raise StoreUnavailable("the records engine does not answer") from exc
        return None

    checks: dict[str, ReadinessCheck] = {"engine": engine_ready}
    app[READINESS_CHECKS] = checks
    app[OPENAPI] = openapi_document(TITLE, DESCRIPTION, RECORDS_ROUTES, {})
    add_routes(app, RECORDS_ROUTES)
    return app


def _cluster(settings: Settings) -> FastCluster:
    """The records service's own client of the cluster: the services' settings (nodes, TLS,
    its login), bulk deadlines (its reads and trims carry up to ``records.batch_max`` entries)."""
    tuned = store_settings(settings)
    return FastCluster(
        tuned.nodes,
        connect_timeout_s=tuned.read_deadline_ms / 1000,
        deadline_s=tuned.write_deadline_ms / 1000,
        security=tuned.security,
    )


def _engine_password(settings: Settings) -> str:
    path = settings.records.password_file
    return Path(path).read_text().strip() if path else ""


async def serve_records(settings: Settings, cities: Sequence[int] | None = None) -> int:
    """Run the records service until SIGTERM or SIGINT; the exit code."""
    engine = await asyncio.to_thread(open_engine, settings.records, _engine_password(settings))
    cluster = _cluster(settings)
    await cluster.start()
    consumer = RecordsConsumer(
        cluster,
        engine,
        settings.records,
        CITIES if cities is None else cities,
        crash_after_insert=os.environ.get(FAILPOINT_ENV) == "records.after_insert",
    )
    app = create_app(settings, engine, consumer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host = settings.service.host
    await web.TCPSite(runner, host, settings.records.port, reuse_address=True).start()
    cache = MetricsCache(render_metrics, settings.service.metrics_cache_s, time.monotonic)
    management = Management(
        cache,
        settings.service.management_host,
        settings.records.management_port,
        keepalive_timeout_s=settings.service.keepalive_timeout_s,
    )
    await management.start()
    log.info("records on %s:%d", host, settings.records.port)
    retention = settings.records.retention_days
    tasks = [
        asyncio.create_task(consumer.run(stop)),
        asyncio.create_task(keep_retention(engine, retention, time.time, stop)),
        asyncio.create_task(
            keep_status_published(engine, consumer, cluster, retention, time.time, stop)
        ),
    ]
    ended: set[asyncio.Task[object]] = set()
    try:
        stopping: asyncio.Task[object] = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        # A loop that ends before the stop (an error it does not take again) leaves a service
        # that answers but stores nothing: it stops instead, and whatever runs it starts it again.
        ended = {task for task in done if task is not stopping}
        for task in ended:
            failure = task.exception()
            log.error("records: a background loop ended: %s", failure or "it returned")
        stop.set()
        await stopping
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        await management.stop()
        await runner.cleanup()
        await cluster.aclose()
        engine.close()
    return 1 if ended else 0
