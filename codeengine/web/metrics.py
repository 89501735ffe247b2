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
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

from codeengine.metrics import LATENCY, QR_RENDERS, REQUESTS, SIGNATURES, STORE_LATENCY


class RequestMetrics:
    """Counts and times requests; the labelled series are looked up once, then cached."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._counts: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def record(self, operation: str, reason: str, seconds: float) -> None:
        """One answered request of ``operation`` with ``reason`` (OK for success)."""
        count = self._counts.get((operation, reason))
        if count is None:
            count = self._counts[(operation, reason)] = REQUESTS.labels(
                self._service, operation, reason
            )
        latency = self._latency.get(operation)
        if latency is None:
            latency = self._latency[operation] = LATENCY.labels(self._service, operation)
        count.inc()
        latency.observe(seconds)


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text exposition of this service's metrics (all workers)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


METRICS_ROUTES = [web.get("/metrics", metrics_handler, name="metrics")]
