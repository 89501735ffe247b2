"""Stream to store: every city's scan and change streams, into the library, exactly once.

One consumer group (``records``) per stream, whose last-delivered id is the position up to
which the stream is stored. A cycle reads every stream once from its position (XRANGE, up to
``records.batch_max`` entries each), writes an *intent* to Redis (the cycle's token and the id
range it read of each stream), inserts the rows (one insert per table, carrying the token as
the engine's deduplication token), moves each group's position to the last entry it stored
(XGROUP SETID), trims each stream up to there (XTRIM MINID) and removes the intent.

A crash anywhere in a cycle loses nothing and doubles nothing: a read changes nothing in Redis
and a position moves only after the insert committed, so what was not stored is read again;
and if an intent is found at start, its ranges are read again (XRANGE) and inserted with its
token, which the engine recognises if the first insert had committed (it adds nothing) and
takes as new if not (every entry is still there: nothing is trimmed before it is stored).

Why positions and not XREADGROUP with XACK: a delivery adds an entry to the group's pending
list, which a master replicates as one XCLAIM per entry, and the XACK again; on the bench
(``python -m bench.records``) that was 7 µs of Redis CPU an entry, more than the consumer's
own 4.5 µs, and the Redis side set the pace. One consumer reads the streams (the records
service, one process), so a pending list has nothing to share out.

Trimming follows storing, so a healthy records service keeps each stream short and never trims
an entry it has not stored. The writers' own age cap (``verifier.scan_log_max_age_s``,
``changes.max_age_s``) only bounds memory while this service is down or far behind.
"""

from __future__ import annotations

__all__ = ["GROUP", "INTENT_KEY", "RecordsConsumer", "StreamLag"]

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from codeengine.code.errors import StoreUnavailable
from codeengine.records import metrics
from codeengine.records.engine import EngineError, RecordsEngine
from codeengine.records.feeds import FEEDS, Feed, next_id, pack_rows
from codeengine.settings import RecordsSettings
from codeengine.store.cluster import CommandError, FastCluster
from codeengine.store.keyspace import NAMESPACE

GROUP = "records"
INTENT_KEY = f"{NAMESPACE}:rec:{{records}}:intent"
"""The cycle in flight: its token and, per stream, the first and last id it read (msgpack)."""
LAG_EVERY_S = 1.0
STORED_KEPT_MAX = 1000
"""More stored entries than a trim by whole nodes keeps (a node holds up to 100 entries)."""
STORE_DEADLINE_S = 10.0
"""Reads and acknowledgements of up to ``batch_max`` entries are bulk calls, not hot ones."""

log = logging.getLogger("codeengine.records")

Stream = tuple[Feed, int]
"""A feed and a city: one stream."""


@dataclass(frozen=True, slots=True)
class StreamLag:
    """What waits in one stream: entries not yet committed, and the oldest one's age."""

    feed: str
    city: int
    entries: int
    oldest_age_s: float


class RecordsConsumer:
    """Moves stream entries into the engine; one instance per records service."""

    def __init__(
        self,
        cluster: FastCluster,
        engine: RecordsEngine,
        settings: RecordsSettings,
        cities: Iterable[int],
        *,
        clock: Callable[[], float] = time.time,
        crash_after_insert: bool = False,
    ) -> None:
        self._cluster = cluster
        self._engine = engine
        self._settings = settings
        self._streams: list[Stream] = [(feed, city) for feed in FEEDS for city in sorted(cities)]
        self._clock = clock
        self._crash_after_insert = crash_after_insert
        """A fault-injection point for the redelivery test: the process ends right after a
        cycle's inserts, before its acknowledgements (``CODEENGINE_FAILPOINT``)."""
        self._intent_left = True
        """An intent may be left in Redis (after a start or a failed cycle)."""
        self._after: dict[Stream, bytes] = {}
        """Each stream's position (its group's last-delivered id) as far as this consumer
        knows it; read from Redis at start and after a failure."""
        self._next_reads: asyncio.Task[list[list[Any]]] | None = None
        """The next cycle's reads, sent while this cycle's rows are inserted."""
        self.lag: list[StreamLag] = []
        self.committed = 0
        """Entries committed since start."""

    async def prepare(self) -> None:
        """Create the consumer group of every stream (at its start: entries written before the
        records service first ran are stored too)."""
        for feed, city in self._streams:
            key = feed.key(city)
            try:
                await self._cluster.execute(
                    key, "XGROUP", "CREATE", key, GROUP, "0", "MKSTREAM",
                    deadline_s=STORE_DEADLINE_S, expect_errors=("BUSYGROUP",),
                )  # fmt: skip
            except CommandError:
                pass  # the group exists

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; wait ``records.poll_ms`` when the streams are drained,
        and after a failure (logged; the cycle is taken again from its intent)."""
        await self.prepare()
        last_lag = 0.0
        while not stop.is_set():
            moved = 0
            try:
                moved = await self.cycle()
            except (StoreUnavailable, EngineError) as exc:
                log.warning("records cycle failed, will retry: %s", exc)
            now = time.monotonic()
            if now - last_lag >= LAG_EVERY_S:
                last_lag = now
                try:
                    await self.measure_lag()
                except StoreUnavailable as exc:
                    log.warning("records lag not measured: %s", exc)
            if moved < self._settings.batch_max // 10:
                try:
                    await asyncio.wait_for(stop.wait(), self._settings.poll_ms / 1000)
                except TimeoutError:
                    pass
        await self._drop_next_reads()

    async def cycle(self) -> int:
        """Commit what the streams hold now (after any cycle a crash left); the entries moved."""
        try:
            return await self._cycle()
        except BaseException:
            # Where each stream stands is read again from Redis, after the intent's replay.
            self._after = {}
            await self._drop_next_reads()
            raise

    async def _cycle(self) -> int:
        if self._intent_left:
            await self._replay_intent()
            self._intent_left = False
        next_reads, self._next_reads = self._next_reads, None
        reads = await (next_reads or self._read_all(self._after))
        batch = {s: entries for s, entries in zip(self._streams, reads, strict=True) if entries}
        if not batch:
            return 0
        token = os.urandom(12).hex()
        ranges = [
            [feed.key(city), entries[0][0], entries[-1][0]]
            for (feed, city), entries in batch.items()
        ]
        started = time.monotonic()
        self._intent_left = True
        await self._cluster.execute(
            INTENT_KEY, "SET", INTENT_KEY, msgpack.packb({"t": token, "r": ranges}),
            deadline_s=STORE_DEADLINE_S,
        )  # fmt: skip
        after = self._after | {stream: entries[-1][0] for stream, entries in batch.items()}
        # The next batch is read while this one is inserted: the insert is the engine's work in
        # a thread, the read is Redis's, so neither waits for the other (the reads were a third
        # of a cycle's time on one core, bench/records.py). A read changes nothing in Redis:
        # after a failure the next cycle drops it and reads again.
        self._next_reads = asyncio.create_task(self._read_all(after))
        await self._insert(batch, token)
        if self._crash_after_insert:
            os._exit(137)
        await self._advance(batch)
        await self._cluster.execute(INTENT_KEY, "DEL", INTENT_KEY, deadline_s=STORE_DEADLINE_S)
        self._intent_left = False
        self._after = after
        metrics.BATCHES.labels("new").inc()
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        moved = sum(len(entries) for entries in batch.values())
        self.committed += moved
        return moved

    async def _read_all(self, after: dict[Stream, bytes]) -> list[list[Any]]:
        """Every stream's entries after its position, read at once (the streams are spread
        over the shards)."""
        return await asyncio.gather(*(self._read(s, after.get(s)) for s in self._streams))

    async def _drop_next_reads(self) -> None:
        """Forget the next cycle's reads."""
        task, self._next_reads = self._next_reads, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreUnavailable):
                await task

    async def _read(self, stream: Stream, after: bytes | None = None) -> list[Any]:
        """Up to ``batch_max`` entries of the stream after ``after`` (by default, after the
        position its group holds in Redis)."""
        feed, city = stream
        key = feed.key(city)
        if after is None:
            after = await self._position(key)
        entries: list[Any] = await self._cluster.execute(
            key, "XRANGE", key, b"(" + after, "+", "COUNT", self._settings.batch_max,
            deadline_s=STORE_DEADLINE_S,
        )  # fmt: skip
        return entries

    async def _position(self, key: str) -> bytes:
        """The last-delivered id of the stream's group: everything up to it is stored."""
        groups = await self._cluster.execute(
            key, "XINFO", "GROUPS", key, deadline_s=STORE_DEADLINE_S
        )
        for group in groups:
            fields = dict(zip(group[::2], group[1::2], strict=True))
            if fields.get(b"name") == GROUP.encode():
                last: bytes = fields[b"last-delivered-id"]
                return last
        raise StoreUnavailable(f"{key} has no {GROUP} group")

    async def _insert(self, batch: dict[Stream, list[Any]], token: str) -> None:
        """One insert per table of every stream's entries, with the cycle's token."""
        for feed in FEEDS:
            entries = [e for (f, _), part in batch.items() if f is feed for e in part]
            if entries:
                await self._insert_feed(feed, entries, token)

    async def _insert_feed(self, feed: Feed, entries: Sequence[Any], token: str) -> None:
        body, bad = pack_rows(feed, entries, checked=False)
        try:
            if body:
                await asyncio.to_thread(
                    self._engine.insert_packed, feed.table, body, f"{token}:{feed.name}"
                )
        except EngineError:
            # A foreign entry the header check let through, or the engine is away: held to
            # the feed's types, the body is what the engine can take; if the engine is away,
            # this fails too and the cycle is taken again.
            body, bad = pack_rows(feed, entries, checked=True)
            if body:
                await asyncio.to_thread(
                    self._engine.insert_packed, feed.table, body, f"{token}:{feed.name}"
                )
        if bad:
            log.warning("%d %s stream entries are not the engine's: not stored", bad, feed.name)
            metrics.UNREADABLE.labels(feed.name).inc(bad)
        metrics.ROWS.labels(feed.name).inc(len(entries) - bad)

    async def _advance(self, batch: dict[Stream, list[Any]]) -> None:
        """Move each stream's position to its last stored entry, then trim the stream up to
        there: whole nodes of entries (``~``), with no limit (an approximate trim stops at
        10,000 entries unless told otherwise, and a batch is up to ``batch_max``)."""

        async def advance(stream: Stream, entries: list[Any]) -> None:
            key = stream[0].key(stream[1])
            last = entries[-1][0]
            await self._cluster.execute(
                key, "XGROUP", "SETID", key, GROUP, last, deadline_s=STORE_DEADLINE_S
            )
            await self._cluster.execute(
                key, "XTRIM", key, "MINID", "~", next_id(last), "LIMIT", 0,
                deadline_s=STORE_DEADLINE_S,
            )  # fmt: skip

        await asyncio.gather(*(advance(stream, entries) for stream, entries in batch.items()))

    async def _replay_intent(self) -> None:
        """Finish the cycle a crash or failure left: its ranges again, with its token."""
        raw = await self._cluster.get(INTENT_KEY, deadline_s=STORE_DEADLINE_S)
        if raw is None:
            return
        intent = msgpack.unpackb(raw)
        by_key = {feed.key(city): (feed, city) for feed, city in self._streams}
        batch: dict[Stream, list[Any]] = {}
        for key, first, last in intent["r"]:
            stream = by_key.get(key.decode() if isinstance(key, bytes) else key)
            if stream is None:
                continue
            entries = await self._cluster.execute(
                key, "XRANGE", key, first, last, deadline_s=STORE_DEADLINE_S
            )
            if entries:
                batch[stream] = entries
        await self._insert(batch, intent["t"])
        await self._advance(batch)
        await self._cluster.execute(INTENT_KEY, "DEL", INTENT_KEY, deadline_s=STORE_DEADLINE_S)
        metrics.BATCHES.labels("replayed").inc()
        replayed = sum(len(e) for e in batch.values())
        log.info("records: the cycle left by a stop was finished (%d entries)", replayed)

    async def measure_lag(self) -> list[StreamLag]:
        """What waits in each stream (``codeengine_records_lag_*``), kept in :attr:`lag`."""
        now_ms = self._clock() * 1000
        lags = await asyncio.gather(*(self._stream_lag(s, now_ms) for s in self._streams))
        for lag in lags:
            labels = (lag.feed, str(lag.city))
            metrics.LAG_ENTRIES.labels(*labels).set(lag.entries)
            metrics.LAG_SECONDS.labels(*labels).set(lag.oldest_age_s)
        self.lag = list(lags)
        return self.lag

    async def _stream_lag(self, stream: Stream, now_ms: float) -> StreamLag:
        feed, city = stream
        key = feed.key(city)
        groups = await self._cluster.execute(key, "XINFO", "GROUPS", key)
        info: dict[bytes, Any] = {}
        for group in groups:
            fields = dict(zip(group[::2], group[1::2], strict=True))
            if fields.get(b"name") == GROUP.encode():
                info = fields
        # Counted here, not taken from the group's "lag": a position set by XGROUP SETID
        # leaves Redis to estimate that, and on a long-lived stream its estimate was millions
        # off. What waits is what the stream holds after the position: its length less the
        # stored entries a whole-node trim ("~") keeps.
        position = info.get(b"last-delivered-id", b"0-0")
        stream_info = await self._cluster.execute(key, "XINFO", "STREAM", key)
        length = int(dict(zip(stream_info[::2], stream_info[1::2], strict=True))[b"length"])
        kept = await self._cluster.execute(
            key, "XRANGE", key, "-", position, "COUNT", STORED_KEPT_MAX
        )
        unread = max(0, length - len(kept))
        oldest: bytes | None = None
        if unread:
            first = await self._cluster.execute(
                key, "XRANGE", key, b"(" + position, "+", "COUNT", 1
            )
            oldest = first[0][0] if first else None
        age = max(0.0, (now_ms - int(oldest.partition(b"-")[0])) / 1000) if oldest else 0.0
        return StreamLag(feed.name, city, unread, age)
