"""Prometheus metrics for every operation: requests by reason, latency, store latency, signing.

With several workers per service, ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor) makes every
worker write to shared files and ``/metrics`` adds them up, so any worker answers for all.
"""

from __future__ import annotations

__all__ = [
    "METRICS_ROUTES",
    "QR_RENDERS",
    "SIGNATURES",
    "STORE_LATENCY",
    "RequestMetrics",
]

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

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
from codeengine.web.routes import PUBLIC, Route


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


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text exposition of this service's metrics (all workers)."""
    flush_hot()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


METRICS_ROUTES = [
    Route(
        "GET",
        "/metrics",
        metrics_handler,
        "metrics",
        scope=PUBLIC,
        summary="Prometheus metrics of every worker of this service",
        answers={
            "200": ("Prometheus text exposition", {"text/plain": {"schema": {"type": "string"}}})
        },
    )
]
