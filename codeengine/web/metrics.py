"""Prometheus metrics for every operation: requests by reason, latency, store latency, signing.

With several workers per service, ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor) makes every
worker write to shared files and ``/metrics`` adds them up, so any worker answers for all.
"""

from __future__ import annotations

__all__ = [
    "METRICS_ROUTES",
    "QR_RENDERS",
    "SIGNATURES",
    "metrics_middleware",
    "observe_store",
]

import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from codeengine.web.problems import REASON

T = TypeVar("T")

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "codeengine_requests_total",
    "Requests answered, by service, operation and reason (OK for success).",
    ["service", "operation", "reason"],
)
LATENCY = Histogram(
    "codeengine_request_seconds",
    "Time to answer a request, by service and operation.",
    ["service", "operation"],
    buckets=LATENCY_BUCKETS_S,
)
STORE_LATENCY = Histogram(
    "codeengine_store_seconds",
    "Time of store calls, by operation and outcome.",
    ["operation", "outcome"],
    buckets=LATENCY_BUCKETS_S,
)
SIGNATURES = Counter("codeengine_signatures_total", "Codes signed, by signing algorithm.", ["alg"])
QR_RENDERS = Counter("codeengine_qr_renders_total", "QR images rendered, by format.", ["format"])

SERVICE = web.AppKey("metrics_service", str)


async def observe_store(operation: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run a store call and record its latency and outcome."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await work()
        outcome = "ok"
        return result
    finally:
        STORE_LATENCY.labels(operation, outcome).observe(time.perf_counter() - started)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route name (the operation)."""
    started = time.perf_counter()
    operation = request.match_info.route.name or "unmatched"
    service = request.app[SERVICE]
    response = await handler(request)
    reason = response.get(REASON, "OK")
    REQUESTS.labels(service, operation, reason).inc()
    LATENCY.labels(service, operation).observe(time.perf_counter() - started)
    return response


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
