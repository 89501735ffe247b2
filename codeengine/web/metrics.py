"""Prometheus metrics for every operation: requests by reason, latency, store latency, signing.

With several workers per service, ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor) makes every
worker write to shared files and ``/metrics`` adds them up, so any worker answers for all.
"""

from __future__ import annotations

__all__ = [
    "METRICS_ROUTES",
    "QR_RENDERS",
    "SERVICE",
    "SIGNATURES",
    "STORE_LATENCY",
    "metrics_middleware",
]

import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

from codeengine.metrics import LATENCY, QR_RENDERS, REQUESTS, SIGNATURES, STORE_LATENCY
from codeengine.web.problems import REASON

SERVICE = web.AppKey("metrics_service", str)


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
