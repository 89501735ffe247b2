"""The records service's metrics: what it took in, what waits, what the store holds.

The records service is one process, so these are plain Prometheus metrics of the default
registry (no multiprocess files). Labels are stream kinds and cities, tables and operations:
never a venue, subject or terminal.
"""

from __future__ import annotations

__all__ = [
    "ACCESS_RECORDED",
    "BATCHES",
    "BATCH_SECONDS",
    "LAG_ENTRIES",
    "LAG_SECONDS",
    "RETENTION_DROPPED_DAYS",
    "RETENTION_DROPPED_ROWS",
    "ROWS",
    "STATUS_PUBLISHED",
    "STORE_BYTES",
    "STORE_ROWS",
    "UNREADABLE",
]

from prometheus_client import Counter, Gauge, Histogram

ROWS = Counter(
    "codeengine_records_rows_total", "Stream entries committed to the store, by table.", ["table"]
)
BATCHES = Counter(
    "codeengine_records_batches_total",
    "Batches committed (inserted, then acknowledged), by outcome: new, or replayed after a crash.",
    ["outcome"],
)
BATCH_SECONDS = Histogram(
    "codeengine_records_batch_seconds",
    "Time from reading a batch of the streams to its acknowledgement.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UNREADABLE = Counter(
    "codeengine_records_unreadable_total",
    "Stream entries that are not the engine's (corrupt or foreign): acknowledged, not stored.",
    ["table"],
)
LAG_ENTRIES = Gauge(
    "codeengine_records_lag_entries",
    "Stream entries not yet committed to the store, by table and city.",
    ["table", "city"],
)
LAG_SECONDS = Gauge(
    "codeengine_records_lag_seconds",
    "Age of the oldest stream entry not yet committed (0 when none waits), by table and city.",
    ["table", "city"],
)
STORE_ROWS = Gauge("codeengine_records_store_rows", "Rows the store keeps, by table.", ["table"])
STORE_BYTES = Gauge(
    "codeengine_records_store_bytes", "Bytes on disk the store's tables take, by table.", ["table"]
)
ACCESS_RECORDED = Counter(
    "codeengine_records_queries_total",
    "Queries of the library answered (each recorded in the access table), by operation.",
    ["operation"],
)
RETENTION_DROPPED_DAYS = Counter(
    "codeengine_records_retention_dropped_days_total",
    "Day partitions dropped because they were older than records.retention_days, by table.",
    ["table"],
)
RETENTION_DROPPED_ROWS = Counter(
    "codeengine_records_retention_dropped_rows_total",
    "Rows those dropped days held, by table.",
    ["table"],
)
STATUS_PUBLISHED = Gauge(
    "codeengine_records_status_published_timestamp_seconds",
    "When the records service last published its status for the ops console (seconds).",
)
