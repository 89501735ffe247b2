"""Retention: the library keeps ``records.retention_days`` days, and drops older days whole.

Every table is partitioned by UTC day (``toDate(at)``, :mod:`codeengine.records.schema`), so
retention is a partition drop per day, never a row-by-row delete: it costs the same for a day of
ten rows as for a day of a billion, and leaves no half-deleted day behind.

A day is kept while it is one of the last ``retention_days`` days, today (UTC) included: with 28,
on 2026-12-07 the days 2026-11-10 to 2026-12-07 are kept and 2026-11-09 and older are dropped.
Days after today (a clock far behind the writers') are never dropped. The records service
enforces it at its start and then every hour (:func:`keep_retention`); the decision is
:func:`days_to_drop`, pure, with "today" passed in.
"""

from __future__ import annotations

__all__ = ["RETENTION_EVERY_S", "Dropped", "days_to_drop", "enforce_retention_at", "keep_retention"]

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from codeengine.records import metrics
from codeengine.records.engine import EngineError, RecordsEngine
from codeengine.records.schema import TABLES

RETENTION_EVERY_S = 3600.0
"""How often the records service looks for days to drop (a day is at most this late)."""

log = logging.getLogger("codeengine.records")


@dataclass(frozen=True, slots=True)
class Dropped:
    """One day partition of one table that retention dropped."""

    table: str
    day: str
    rows: int
    bytes: int


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None  # not a day partition (a table made by hand): not retention's to drop


def days_to_drop(kept: Iterable[str], today: date, retention_days: int) -> list[str]:
    """The days of ``kept`` (``YYYY-MM-DD``) older than the last ``retention_days`` days up to
    ``today``, oldest first."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    first_kept = today - timedelta(days=retention_days - 1)
    old = {text for text in kept if (day := _day(text)) is not None and day < first_kept}
    return sorted(old)


def enforce_retention_at(engine: RecordsEngine, retention_days: int, now_s: float) -> list[Dropped]:
    """Drop every table's days that ``days_to_drop`` names at ``now_s``; what was dropped.

    Blocking (engine calls): the service runs it in a thread.
    """
    today = datetime.fromtimestamp(now_s, UTC).date()
    dropped = []
    for table in TABLES:
        kept = {day: (rows, size) for day, rows, size in engine.days(table)}
        for day in days_to_drop(kept, today, retention_days):
            engine.drop_day(table, day)
            rows, size = kept[day]
            dropped.append(Dropped(table.name, day, rows, size))
            metrics.RETENTION_DROPPED_ROWS.labels(table.name).inc(rows)
            metrics.RETENTION_DROPPED_DAYS.labels(table.name).inc()
            # Days and counts only: a partition's name is a date, never personal data.
            log.info(
                "records retention: dropped %s of %s (%d rows, %d bytes)",
                day, table.name, rows, size,
            )  # fmt: skip
    return dropped


async def keep_retention(
    engine: RecordsEngine,
    retention_days: int,
    clock: Callable[[], float],
    stop: asyncio.Event,
    every_s: float = RETENTION_EVERY_S,
) -> None:
    """Enforce retention now and then every ``every_s`` until ``stop`` is set; a failure is
    logged and tried again at the next turn (the days are still there to drop)."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(enforce_retention_at, engine, retention_days, clock())
        except EngineError as exc:
            log.warning("records retention failed, will retry: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
