"""Prometheus metric objects, shared by the services and the store adapter.

Labels never carry personal data: operations, reasons, outcomes and algorithms only.

The hot paths (every request's count and latency, the display read) count in plain numbers
(:class:`HotCounter`, :class:`HotHistogram`) that :func:`flush_hot` adds to their Prometheus
series: each second while a service runs, before every ``/metrics`` answer, and at shutdown. A
Prometheus ``inc`` or ``observe`` takes a lock (and, with several workers, writes a shared
file); three of them cost about 10 µs of a display's 300 µs under load. A scrape may therefore
miss up to the last second of another worker's requests, never lose them.

Gauges of a worker's state (the signing key's validity, the trust list's age, the city lease)
are read when ``/metrics`` is rendered (codeengine.web.gauges), never counted per request. The
gauges kept here, :data:`SCANS_BACKLOG` and :data:`CHANGES_BACKLOG`, are set by the log writers
(codeengine.store.streamlog) after a flush; with several workers each is added up over the live
ones (``livesum``), and a worker's files are forgotten when it exits (:func:`forget_process`).
"""

from __future__ import annotations

__all__ = [
    "CHANGES_BACKLOG",
    "CHANGES_DROPPED",
    "CHANGES_LOGGED",
    "CONNECTIONS_EVICTED",
    "CONNECTIONS_REFUSED",
    "LANE_HANDOVERS",
    "LATENCY",
    "LATENCY_BUCKETS_S",
    "OFFLINE_SCANS",
    "QR_RENDERS",
    "RECORDS_TAMPERED",
    "REQUESTS",
    "SCANS_BACKLOG",
    "SCANS_DROPPED",
    "SCANS_LOGGED",
    "SCANS_UNREADABLE",
    "SHARD_BREAKER_OPENS",
    "SIGNATURES",
    "SIGNED_LISTS",
    "STORE_LATENCY",
    "VERIFICATIONS",
    "HotCounter",
    "HotHistogram",
    "build_labels",
    "flush_hot",
    "forget_process",
]

import os
import platform
from bisect import bisect_left
from importlib import metadata
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess

from codeengine import __version__

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "codeengine_requests_total",
    "Requests answered, by service, operation and reason (OK for success).",
    ["service", "operation", "reason"],
)
LATENCY = Histogram(
    "codeengine_request_duration_seconds",
    "Time to answer a request, by service and operation.",
    ["service", "operation"],
    buckets=LATENCY_BUCKETS_S,
)
STORE_LATENCY = Histogram(
    "codeengine_store_duration_seconds",
    "Time of store calls, by operation and outcome.",
    ["operation", "outcome"],
    buckets=LATENCY_BUCKETS_S,
)
SHARD_BREAKER_OPENS = Counter(
    "codeengine_store_shard_breaker_opens_total",
    "Times a shard's breaker opened after failures in a row, by primary address.",
    ["node"],
)
SIGNATURES = Counter("codeengine_signatures_total", "Codes signed, by signing algorithm.", ["alg"])
QR_RENDERS = Counter("codeengine_qr_renders_total", "QR images rendered, by format.", ["format"])
VERIFICATIONS = Counter(
    "codeengine_verifications_total",
    "Codes verified, by result reason, city and mode (online, degraded, batch, offline: a "
    "scan a terminal checked offline and sent later).",
    ["reason", "city", "mode"],
)
LANE_HANDOVERS = Counter(
    "codeengine_lane_handovers_total",
    "Connections the fast lane passed to aiohttp, by why (route, query, pipelined, header, "
    "version, large, malformed).",
    ["why"],
)
RECORDS_TAMPERED = Counter(
    "codeengine_records_tampered_total",
    "Stored values read whose seal or MAC failed, by service and what (record, token, chain).",
    ["service", "what"],
)
CONNECTIONS_REFUSED = Counter(
    "codeengine_connections_refused_total",
    "Connections answered 503 OVERLOADED and closed before a request, by why (source: the "
    "client address's cap; full: the worker's cap with no idle connection to close).",
    ["why"],
)
CONNECTIONS_EVICTED = Counter(
    "codeengine_connections_evicted_total",
    "Idle keep-alive connections closed to make room for a newcomer at the worker's cap.",
)
SCANS_LOGGED = Counter("codeengine_scans_logged_total", "Scan log entries written.")
OFFLINE_SCANS = Counter(
    "codeengine_offline_scans_total",
    "Scans terminals checked offline and sent later (POST /v1/scans/offline), by outcome: "
    "logged, or why not (DUPLICATE, SCAN_TOO_OLD, SCAN_IN_FUTURE).",
    ["outcome"],
)
SCANS_DROPPED = Counter(
    "codeengine_scans_dropped_total",
    "Scan log entries dropped: the buffer was full (the store unreachable) or the store refused "
    "their batch.",
)
SCANS_UNREADABLE = Counter(
    "codeengine_scans_unreadable_total",
    "Scan log entries skipped when counting because they are not scan entries.",
)
SCANS_BACKLOG = Gauge(
    "codeengine_scans_backlog",
    "Scan log entries waiting in the workers' buffers after their last flush (the store did "
    "not take them yet).",
    multiprocess_mode="livesum",
)

CHANGES_LOGGED = Counter(
    "codeengine_changes_logged_total", "Change log entries (audited writes) written."
)
CHANGES_DROPPED = Counter(
    "codeengine_changes_dropped_total",
    "Change log entries dropped: the buffer was full (the store unreachable) or the store "
    "refused their batch. The audit streams still hold those writes.",
)
CHANGES_BACKLOG = Gauge(
    "codeengine_changes_backlog",
    "Change log entries waiting in the processes' buffers after their last flush.",
    multiprocess_mode="livesum",
)


def build_labels() -> dict[str, str]:
    """The ``codeengine_build_info`` labels of this process: version, python, implementation."""
    try:
        version = metadata.version("codeengine")
    except metadata.PackageNotFoundError:
        version = __version__
    return {
        "version": version,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def forget_process(pid: int, directory: str | None = None) -> None:
    """Drop the live gauges of worker ``pid``, which has exited, from the multiprocess files in
    ``directory`` (default ``PROMETHEUS_MULTIPROC_DIR``; nothing to do without one). Its
    counters stay: they are counts the service made, and a restart must not take them back."""
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        prometheus_multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


SIGNED_LISTS = Counter(
    "codeengine_signed_lists_total",
    "Signed lists an issuer stored for offline terminals, by kind (trust, revocations).",
    ["kind"],
)


class HotCounter:
    """One labelled counter series, counted in a plain integer until :func:`flush_hot`."""

    __slots__ = ("_series", "count")

    def __init__(self, series: Any) -> None:
        self._series = series
        self.count = 0
        _HOT.append(self)

    def inc(self) -> None:
        """Count one."""
        self.count += 1

    def flush(self) -> None:
        """Add what was counted since the last flush to the Prometheus series."""
        count, self.count = self.count, 0
        if count:
            self._series.inc(count)


class HotHistogram:
    """One labelled histogram series, kept as bucket counts and a sum until :func:`flush_hot`.

    The buckets are the series' own (``le``, upper bounds inclusive), so a flushed observation
    lands where ``observe`` would have put it.
    """

    __slots__ = ("_bounds", "_counts", "_series", "_sum")

    def __init__(self, series: Any) -> None:
        self._series = series
        # prometheus_client keeps a child's bounds, bucket values and sum in these attributes
        # (0.21 up to at least 0.26); tests/unit/test_metrics.py fails if that changes.
        self._bounds: tuple[float, ...] = tuple(series._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        _HOT.append(self)

    def observe(self, seconds: float) -> None:
        """One observation."""
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def flush(self) -> None:
        """Add the observations since the last flush to the Prometheus series."""
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        if not any(counts):
            return
        self._series._sum.inc(total)
        for bucket, count in zip(self._series._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


_HOT: list[HotCounter | HotHistogram] = []


def flush_hot() -> None:
    """Add every hot series' pending counts to Prometheus (cheap when nothing is pending)."""
    for series in _HOT:
        series.flush()
