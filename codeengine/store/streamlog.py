"""A log writer: entries are buffered and written to per-city streams in batches, off the hot path.

Two logs use it: the verifier's scan log (``verifier.scanlog``) and the issuer's change log
(``issuer.changelog``, and the ops commands that write subjects). Nothing waits for its
entry: ``add`` queues it and returns. Every ``flush_ms`` the buffer is grouped by city and
sent in batches of at most :data:`FLUSH_BATCH` entries, up to :data:`MAX_IN_FLIGHT` batches at
a time, each one script call. A flush sends everything that waited when it began, so the
writer keeps up with whatever the process adds as long as the store does: one flush of
sequential batches (as this writer once was) fell behind an overloaded verifier, whose loop
made each round trip wait, and dropped scans while Redis was healthy.

While the store is unreachable (or refuses a batch) entries wait in the buffer; past
``buffer_max`` the oldest are dropped, counted and logged (at most once per
:data:`DROP_LOG_INTERVAL_S`, a count only), so memory stays bounded. What waits after a flush
is the backlog (a gauge, set when it changes).

Each batch carries a random token that the store records with the entries. A batch whose
answer was lost (a timeout after the shard had written it) is sent again with the same token,
and the store skips what it already wrote: every entry is logged once.
"""

from __future__ import annotations

__all__ = [
    "DROP_LOG_INTERVAL_S",
    "FLUSH_BATCH",
    "MAX_IN_FLIGHT",
    "LogMetrics",
    "LogPolicy",
    "StreamLogWriter",
]

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from codeengine.code.errors import StoreUnavailable

log = logging.getLogger("codeengine.streamlog")

FLUSH_BATCH = 250
"""Entries per script call. Redis runs a script alone, and every verify reading its shard waits:
250 scans take 1.1-1.2 ms of the shard (Redis slow log); a call of 1,500 held it about 7 ms."""
MAX_IN_FLIGHT = 32
"""Batches a flush has sent and not had answered yet. On a worker whose loop turns take 20 ms
(overloaded with verifies) a batch's round trip takes several turns, so what a writer takes is
about this many batches per 100 ms: with 1 it dropped scans from 10,000-20,000 a second on,
with 8 from 40,000, with 32 it took 40,000 (bench/scanlog.py, docs/performance.md). The bound
keeps a backlog's flush from putting more than about ten script calls (some 12 ms of Redis)
ahead of the verifies on each of three shards."""
DROP_LOG_INTERVAL_S = 10.0
"""Dropped entries are logged at most this often, as a count."""
FINAL_FLUSH_TIMEOUT_S = 2.0

Entry = tuple[int, bytes]
"""An entry as the writer holds it: its city and the entry packed."""
Append = Callable[[list[Entry], int, str], Awaitable[list[Entry]]]
"""The store's append (``Store.append_scans``, ``append_changes``): entries, their maximum age
in milliseconds, the batch's token; returns the entries of cities whose call failed."""


@dataclass(frozen=True, slots=True)
class LogPolicy:
    """How often a log is written, how much may wait, and how long its stream keeps entries."""

    flush_ms: int
    buffer_max: int
    max_age_s: int
    """Entries older than this are trimmed from the stream as new ones are added: its
    consumer's tolerated outage (it trims what it acknowledged itself)."""
    batch: int = FLUSH_BATCH
    in_flight: int = MAX_IN_FLIGHT
    """Their defaults are the services'; the benchmark (bench/scanlog.py) varies them."""


@dataclass(frozen=True, slots=True)
class LogMetrics:
    """The log's counters (entries written, dropped) and its backlog gauge."""

    logged: Counter
    dropped: Counter
    backlog: Gauge


class StreamLogWriter:
    """Buffers packed entries and writes them to their cities' streams in the background."""

    def __init__(
        self,
        name: str,
        append: Append,
        policy: LogPolicy,
        metrics: LogMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._append = append
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._buffer: deque[Entry] = deque()
        self._retry: deque[tuple[str, list[Entry]]] = deque()
        """Batches a shard did not confirm, with the token they were first sent with."""
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Future[None] | None = None
        self._backlog = 0
        """What the backlog gauge was last set to by this writer."""
        self._unlogged_drops = 0
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        self._store_failed = False
        """Whether the last flush found the store unavailable (said in the drop log)."""

    def add_packed(self, entry: Entry) -> None:
        """Queue a packed entry; never blocks, never raises."""
        if len(self._buffer) >= self._policy.buffer_max:
            self._buffer.popleft()
            self._metrics.dropped.inc()
            self._unlogged_drops += 1
        self._buffer.append(entry)

    def __len__(self) -> int:
        return len(self._buffer) + sum(len(group) for _, group in self._retry)

    async def flush(self) -> None:
        """Write what is buffered now, once; entries of cities whose shard failed wait.

        Raises StoreUnavailable when some entries could not be written (they stay queued,
        ahead of newer ones, and the next flush tries them again).
        """
        batches = list(self._retry)
        self._retry.clear()
        if self._buffer:
            buffer, self._buffer = self._buffer, deque()
            size = self._policy.batch
            by_city: dict[int, list[Entry]] = {}
            for entry in buffer:
                group = by_city.get(entry[0])
                if group is None:
                    by_city[entry[0]] = [entry]
                else:
                    group.append(entry)
            for group in by_city.values():
                for first in range(0, len(group), size):
                    batches.append((os.urandom(8).hex(), group[first : first + size]))
        turns = asyncio.Semaphore(self._policy.in_flight)
        failed = await asyncio.gather(*(self._send(turns, t, b) for t, b in batches))
        waiting = sum(failed)
        self._store_failed = waiting > 0
        self._drop_beyond_max()
        self._report_drops()
        self._report_backlog()
        if waiting:
            raise StoreUnavailable(f"{waiting} {self._name} log entries wait for their shard")

    def _drop_beyond_max(self) -> None:
        """Drop the oldest waiting entries beyond ``buffer_max`` (only a store that did not take
        them leaves entries waiting after a flush)."""
        excess = len(self) - self._policy.buffer_max
        while excess > 0 and self._retry:
            token, group = self._retry[0]
            dropped = min(excess, len(group))
            if dropped == len(group):
                self._retry.popleft()
            else:
                # The rest keeps its token: if the shard did write the batch, it skips it all.
                self._retry[0] = (token, group[dropped:])
            self._metrics.dropped.inc(dropped)
            self._unlogged_drops += dropped
            excess -= dropped

    async def _send(self, turns: asyncio.Semaphore, token: str, batch: list[Entry]) -> int:
        """Send one batch; how many of its entries wait for a resend."""
        async with turns:
            try:
                failed = await self._append(batch, self._policy.max_age_s * 1000, token)
            except StoreUnavailable:
                failed = batch
            except Exception as exc:
                # A batch the store can never take must not stop the log: drop it, count it.
                # Only the error's type: a store's message may quote arguments.
                log.error(
                    "%s log batch of %d refused by the store (%s): dropped",
                    self._name, len(batch), type(exc).__name__,
                )  # fmt: skip
                self._metrics.dropped.inc(len(batch))
                return 0
        self._metrics.logged.inc(len(batch) - len(failed))
        if failed:
            self._retry.append((token, failed))
        return len(failed)

    def _report_drops(self) -> None:
        """Log the entries dropped since the last such line, at most every interval."""
        now = self._clock()
        if self._unlogged_drops and now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            state = "unavailable" if self._store_failed else "reachable"
            log.warning(
                "%s log: %d entries dropped, buffer of %d full (store %s)",
                self._name, self._unlogged_drops, self._policy.buffer_max, state,
            )  # fmt: skip
            self._unlogged_drops = 0
            self._last_drop_log = now

    def _report_backlog(self) -> None:
        """Set the backlog gauge to what waits now, if that changed (with several workers a set
        writes a shared file: not every flush)."""
        waiting = len(self)
        if waiting != self._backlog:
            self._backlog = waiting
            self._metrics.backlog.set(waiting)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._policy.flush_ms / 1000)
            # Shielded: a flush holds the entries it took from the buffer, so stopping the
            # writer waits for it instead of cancelling it half-way.
            self._flushing = asyncio.ensure_future(self.flush())
            try:
                await asyncio.shield(self._flushing)
            except StoreUnavailable:
                log.warning(
                    "%s log not written: store unavailable (%d waiting)", self._name, len(self)
                )

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the writer after one last flush (bounded in time)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            async with asyncio.timeout(FINAL_FLUSH_TIMEOUT_S):
                if self._flushing is not None:
                    with contextlib.suppress(StoreUnavailable):
                        await self._flushing
                await self.flush()
        self._report_drops()
        self._report_backlog()
