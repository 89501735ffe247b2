"""Prometheus metrics for every operation: requests by reason, latency, store latency, signing.

With several workers per service, ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor) makes every
worker write to shared files and ``/metrics`` adds them up, so any worker answers for all.

``/metrics`` is served on a management port of its own (``service.management_host``, loopback by
default, and ``service.issuer_management_port`` / ``verifier_management_port``), never on the
public port: an open scrape loop there took a verifier from 7,000 to a few hundred requests a
second. Each worker renders at most once a ``service.metrics_cache_s`` (:class:`MetricsCache`)
and answers scrapes at most every ``MIN_SCRAPE_INTERVAL_S``. The issuer's ops console reads the
same document from ``GET /v1/ops/metrics`` with an admin key.
"""

from __future__ import annotations

__all__ = [
    "METRICS_CACHE",
    "MIN_SCRAPE_INTERVAL_S",
    "OPS_METRICS_ROUTES",
    "QR_RENDERS",
    "SIGNATURES",
    "STORE_LATENCY",
    "MetricsCache",
    "RequestMetrics",
    "management_app",
    "render_metrics",
]

import asyncio
import os
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.registry import Collector

from codeengine.metrics import (
    LATENCY,
    QR_RENDERS,
    REQUESTS,
    SIGNATURES,
    STORE_LATENCY,
    HotCounter,
    HotHistogram,
    flush_hot,
)
from codeengine.web.routes import Route


class RequestMetrics:
    """Counts and times requests; each labelled series is looked up once, then counted in
    plain numbers that :func:`codeengine.metrics.flush_hot` adds to Prometheus."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._counts: dict[tuple[str, str], HotCounter] = {}
        self._latency: dict[str, HotHistogram] = {}

    def record(self, operation: str, reason: str, seconds: float) -> None:
        """One answered request of ``operation`` with ``reason`` (OK for success)."""
        count = self._counts.get((operation, reason))
        if count is None:
            counter = REQUESTS.labels(self._service, operation, reason)
            count = self._counts[(operation, reason)] = HotCounter(counter)
        latency = self._latency.get(operation)
        if latency is None:
            histogram = LATENCY.labels(self._service, operation)
            latency = self._latency[operation] = HotHistogram(histogram)
        count.count += 1
        latency.observe(seconds)


def render_metrics(state: Collector | None = None) -> bytes:
    """The Prometheus exposition of this service: every worker's files with several workers
    (``PROMETHEUS_MULTIPROC_DIR``), else this process's registry; then the ``state`` gauges of
    the worker rendering (codeengine.web.gauges)."""
    flush_hot()
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)
    if state is not None:
        registry.register(state)
    return generate_latest(registry)


class MetricsCache:
    """One rendering of ``/metrics``, served again for ``max_age_s`` of ``clock``.

    A rendering reads every worker's metrics files, 3.5-8 ms on the worker's event loop
    (docs/architecture.md, pitfalls); made at most once a ``max_age_s``, it costs the worker
    that holds the management port under 1 % of its loop however often it is scraped. Its
    figures are then up to ``max_age_s`` older, beside the second that the hot counters may
    lag already.
    """

    def __init__(
        self, render: Callable[[], bytes], max_age_s: float, clock: Callable[[], float]
    ) -> None:
        self._render = render
        self._max_age_s = max_age_s
        self._clock = clock
        self._body: bytes | None = None
        self._made_at = 0.0
        self.renders = 0
        """How many renderings were made (for tests and the benchmark)."""

    def body(self) -> bytes:
        """The latest rendering, made anew when it is older than ``max_age_s``."""
        now = self._clock()
        age = now - self._made_at
        if self._body is None or not 0 <= age < self._max_age_s:
            self._body = self._render()
            self._made_at = now
            self.renders += 1
        return self._body


METRICS_CACHE = web.AppKey("metrics_cache", MetricsCache)
"""The app's :class:`MetricsCache`, shared by the management port and ``/v1/ops/metrics``."""
MIN_SCRAPE_INTERVAL_S = 0.05
"""Scrapes one worker answers are at least this far apart; more wait their turn.

A cached answer still costs an HTTP request's work on the worker's loop, a copy and a write of
the whole document; eight connections asking in a loop would take a good share of it. Waiting
costs nothing: with at most 20 answers a second, such a loop took 1.6-2 % of the worker's core,
renderings included (``python -m bench.overload``), and a Prometheus scrape every few seconds
never waits."""
_CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0]


def _exposition(cache: MetricsCache) -> web.Response:
    response = web.Response(body=cache.body())
    response.content_type = _CONTENT_TYPE
    return response


async def ops_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this service's metrics (all workers), for the ops
    console: the management port's document, with an admin key on the public port."""
    return _exposition(request.app[METRICS_CACHE])


def management_app(
    cache: MetricsCache, min_interval_s: float = MIN_SCRAPE_INTERVAL_S
) -> web.Application:
    """The management port's app: ``GET /metrics`` from ``cache``, paced to ``min_interval_s``."""
    turn = asyncio.Lock()

    async def metrics(request: web.Request) -> web.Response:
        """Prometheus text exposition of this service's metrics (all workers)."""
        async with turn:
            response = _exposition(cache)
            await asyncio.sleep(min_interval_s)
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics, name="metrics")
    return app


OPS_METRICS_ROUTES = [
    Route(
        "GET",
        "/v1/ops/metrics",
        ops_metrics,
        "ops_metrics",
        scope="admin",
        summary="Prometheus metrics of every worker of this service, for the ops console",
        answers={
            "200": ("Prometheus text exposition", {"text/plain": {"schema": {"type": "string"}}})
        },
    )
]
"""The ops console's source of live metrics; scrapers use the management port instead."""
