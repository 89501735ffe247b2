"""Prometheus metric objects, shared by the services and the store adapter.

Labels never carry personal data: operations, reasons, outcomes and algorithms only.
"""

from __future__ import annotations

__all__ = [
    "LATENCY",
    "LATENCY_BUCKETS_S",
    "QR_RENDERS",
    "REQUESTS",
    "SCANS_DROPPED",
    "SCANS_LOGGED",
    "SHARD_BREAKER_OPENS",
    "SIGNATURES",
    "STORE_CLIENT_REBUILDS",
    "STORE_LATENCY",
    "VERIFICATIONS",
]

from prometheus_client import Counter, Histogram

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
SHARD_BREAKER_OPENS = Counter(
    "codeengine_store_shard_breaker_opens_total",
    "Times a shard's breaker opened after failures in a row, by primary address.",
    ["node"],
)
STORE_CLIENT_REBUILDS = Counter(
    "codeengine_store_client_rebuilds_total",
    "Times the write client was rebuilt because it kept failing while the cluster answered.",
)
SIGNATURES = Counter("codeengine_signatures_total", "Codes signed, by signing algorithm.", ["alg"])
QR_RENDERS = Counter("codeengine_qr_renders_total", "QR images rendered, by format.", ["format"])
VERIFICATIONS = Counter(
    "codeengine_verifications_total",
    "Codes verified, by result reason, city and mode (online, degraded, batch).",
    ["reason", "city", "mode"],
)
SCANS_LOGGED = Counter("codeengine_scans_logged_total", "Scan log entries written.")
SCANS_DROPPED = Counter(
    "codeengine_scans_dropped_total", "Scan log entries dropped because the buffer was full."
)
