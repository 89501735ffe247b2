"""The change log writer: every audited write of a subject, for the records service.

The store hands each audited write that committed (codeengine.store.adapters: a colour change,
an imported risk record, an appeal decision, a rollback, a create, an alias bound or unbound)
to this writer, which sends it to its city's change stream (``ce:chg:{city}``) in batches, off
the request's path, as the scan log writer sends scans (codeengine.store.streamlog).

What a crash loses: the change is queued after Redis committed the write and its audit entry,
and written at the next flush, ``changes.flush_ms`` later at most while the store answers. A
process that dies in between (killed, not stopped: a stop flushes) loses the change entries of
that window, and so does one whose buffer overflows while the store is unreachable (counted in
``codeengine_changes_dropped_total``). The subject's audit stream (``ce:a:{subject}``) still
holds every such write: it is the record of truth, and the change log only its feed.
"""

from __future__ import annotations

__all__ = ["CHANGE_LOG", "CHANGE_METRICS", "ChangeLogWriter", "attach_change_log"]

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from codeengine.metrics import CHANGES_BACKLOG, CHANGES_DROPPED, CHANGES_LOGGED
from codeengine.settings import ChangeLogSettings, Settings
from codeengine.store.port import Store
from codeengine.store.redisstore import RedisStore
from codeengine.store.streamlog import LogMetrics, LogPolicy, StreamLogWriter
from codeengine.web.runtime import STORE

CHANGE_METRICS = LogMetrics(CHANGES_LOGGED, CHANGES_DROPPED, CHANGES_BACKLOG)


class ChangeLogWriter(StreamLogWriter):
    """Buffers packed change entries and writes them in the background."""

    def __init__(
        self,
        store: Store,
        settings: ChangeLogSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        policy = LogPolicy(settings.flush_ms, settings.buffer_max, settings.max_age_s)
        super().__init__("change", store.append_changes, policy, CHANGE_METRICS, clock)


CHANGE_LOG = web.AppKey("change_log", ChangeLogWriter)


def attach_change_log(app: web.Application, settings: Settings) -> None:
    """Keep the change log while the app runs: every audited write its store makes is queued
    for it, and it is flushed once more when the app stops (after the last request)."""

    async def change_log(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        writer = ChangeLogWriter(store, settings.changes)
        app[CHANGE_LOG] = writer
        if isinstance(store, RedisStore):
            store.changes = writer.add_packed
        writer.start()
        yield
        await writer.stop()

    app.cleanup_ctx.append(change_log)
