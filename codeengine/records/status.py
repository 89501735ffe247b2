"""The records service's status: what waits in the streams, what the store keeps, for ops.

``GET /v1/records/status`` (:mod:`codeengine.records.opsapi`) answers :func:`status_at` in full;
:func:`keep_status_published` writes a compact copy (:mod:`codeengine.code.recordstatus`) to
Redis every ten seconds, where the issuer's ops console reads it. The store's sizes come from
the engine's own accounting of its parts (``system.parts``), so they are the same for the
embedded engine and a server.
"""

from __future__ import annotations

__all__ = ["keep_status_published", "publish_status", "status_at", "status_document"]

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from codeengine.code.errors import StoreUnavailable
from codeengine.code.recordstatus import PUBLISH_EVERY_S, status_fields
from codeengine.records import metrics
from codeengine.records.consumer import RecordsConsumer, StreamLag
from codeengine.records.engine import EngineError, RecordsEngine
from codeengine.records.schema import TABLES
from codeengine.store.cluster import CommandError, FastCluster
from codeengine.store.keyspace import RECORDS_STATUS_KEY

STATUS_DEADLINE_S = 2.0

log = logging.getLogger("codeengine.records")

Days = Sequence[tuple[str, int, int]]
"""A table's day partitions: (day, rows, bytes on disk)."""


def status_document(
    days_by_table: Mapping[str, Days],
    lag: Sequence[StreamLag] | None,
    retention_days: int,
    now_ms: int,
) -> dict[str, Any]:
    """The status at ``now_ms`` of a store holding ``days_by_table``, with the streams' ``lag``
    (None: this process consumes no streams)."""
    tables = {
        name: {
            "rows": sum(rows for _, rows, _ in days),
            "bytes": sum(size for _, _, size in days),
            "days": [{"day": day, "rows": rows, "bytes": size} for day, rows, size in days],
        }
        for name, days in days_by_table.items()
    }
    all_days = [day for days in days_by_table.values() for day, _, _ in days]
    streams = [asdict(s) for s in lag or ()]
    return {
        "at": now_ms,
        "retention_days": retention_days,
        "oldest_day": min(all_days) if all_days else None,
        "store_bytes": sum(t["bytes"] for t in tables.values()),
        "rows": sum(t["rows"] for t in tables.values()),
        "tables": tables,
        "consuming": lag is not None,
        "lag_entries": sum(s.entries for s in lag or ()),
        "lag_oldest_s": max((s.oldest_age_s for s in lag or ()), default=0.0),
        "lag": streams,
    }


def status_at(
    engine: RecordsEngine,
    consumer: RecordsConsumer | None,
    retention_days: int,
    now_s: float,
) -> dict[str, Any]:
    """The status now (blocking: it asks the engine for its parts); sets the store gauges."""
    days = {table.name: engine.days(table) for table in TABLES}
    status = status_document(
        days, None if consumer is None else consumer.lag, retention_days, int(now_s * 1000)
    )
    for name, table in status["tables"].items():
        metrics.STORE_ROWS.labels(name).set(table["rows"])
        metrics.STORE_BYTES.labels(name).set(table["bytes"])
    return status


async def publish_status(cluster: FastCluster, status: Mapping[str, Any]) -> None:
    """Write the compact status to ``RECORDS_STATUS_KEY`` (one HSET: every field at once)."""
    flat: list[str] = []
    for name, value in status_fields(status).items():
        flat += [name, value]
    await cluster.execute(
        RECORDS_STATUS_KEY, "HSET", RECORDS_STATUS_KEY, *flat, deadline_s=STATUS_DEADLINE_S
    )
    metrics.STATUS_PUBLISHED.set(status["at"] / 1000)


async def keep_status_published(
    engine: RecordsEngine,
    consumer: RecordsConsumer | None,
    cluster: FastCluster,
    retention_days: int,
    clock: Callable[[], float],
    stop: asyncio.Event,
    every_s: float = PUBLISH_EVERY_S,
) -> None:
    """Publish the status now and every ``every_s`` until ``stop``; a failure is logged, and the
    console shows the last status growing old."""
    while not stop.is_set():
        try:
            status = await asyncio.to_thread(status_at, engine, consumer, retention_days, clock())
            await publish_status(cluster, status)
        except (EngineError, StoreUnavailable, CommandError) as exc:
            log.warning("records status not published: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
