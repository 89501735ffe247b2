"""The scan log writer: scans are buffered and written in batches, off the hot path.

A verify never waits for its log entry. Every ``scan_flush_ms`` the buffer goes to the cities'
streams in batches of at most ``FLUSH_BATCH`` entries, one script call per city and batch.
While the store is unreachable entries wait in the buffer; past ``scan_buffer_max`` the oldest
are dropped and counted, so memory stays bounded. What waits after a flush is the backlog
(``codeengine_scans_backlog``, set when it changes).

Each batch carries a random token that the store records with the entries. A batch whose
answer was lost (a timeout after the shard had written it) is sent again with the same token,
and the store skips what it already wrote: every scan is logged once.
"""

from __future__ import annotations

__all__ = ["ScanLogWriter"]

import asyncio
import contextlib
import logging
import os
from collections import deque

from codeengine.code.errors import StoreUnavailable
from codeengine.code.scans import PackedScan, ScanEntry
from codeengine.metrics import SCANS_BACKLOG, SCANS_DROPPED, SCANS_LOGGED
from codeengine.settings import VerifierSettings
from codeengine.store.port import Store

log = logging.getLogger("codeengine.scanlog")
FLUSH_BATCH = 250
"""Entries per script call. Redis runs a script alone, and every verify reading its shard waits:
250 scans take 1.1-1.2 ms of the shard (Redis slow log), the 1,500 of one flush at 15,000
verifies/s on one worker about 7 ms in a single call."""
FINAL_FLUSH_TIMEOUT_S = 2.0


class ScanLogWriter:
    """Buffers scan entries and writes them in the background."""

    def __init__(self, store: Store, settings: VerifierSettings) -> None:
        self._store = store
        self._settings = settings
        self._buffer: deque[PackedScan] = deque()
        """Entries packed when added, while what they hold is fresh in the CPU's caches: packed
        at flush, 100 ms later, py-spy put the same work at about three times its timeit cost
        under load."""
        self._retry: deque[tuple[str, list[PackedScan]]] = deque()
        """Batches a shard did not confirm, with the token they were first sent with."""
        self._task: asyncio.Task[None] | None = None
        self._backlog = 0
        """What :data:`SCANS_BACKLOG` was last set to by this writer."""

    def add(self, entry: ScanEntry) -> None:
        """Queue an entry; never blocks, never raises."""
        if len(self._buffer) >= self._settings.scan_buffer_max:
            self._buffer.popleft()
            SCANS_DROPPED.inc()
        self._buffer.append(entry.packed())

    def __len__(self) -> int:
        return len(self._buffer) + sum(len(group) for _, group in self._retry)

    async def flush(self) -> None:
        """Write what is buffered now, once; entries of cities whose shard failed wait.

        Raises StoreUnavailable when some entries could not be written (they stay queued,
        ahead of newer ones, and the next flush tries them again).
        """
        batches = list(self._retry)
        self._retry.clear()
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(FLUSH_BATCH, len(self._buffer)))]
            batches.append((os.urandom(8).hex(), batch))
        waiting = 0
        for token, batch in batches:
            try:
                failed = await self._store.append_scans(
                    batch, self._settings.scan_log_max_len, token
                )
            except StoreUnavailable:
                failed = batch
            except Exception:
                # A batch the store can never take must not stop the log: drop it, count it.
                log.exception("scan log batch of %d dropped", len(batch))
                SCANS_DROPPED.inc(len(batch))
                continue
            SCANS_LOGGED.inc(len(batch) - len(failed))
            if failed:
                self._retry.append((token, failed))
                waiting += len(failed)
        while len(self) > self._settings.scan_buffer_max and self._retry:
            token, group = self._retry.popleft()
            SCANS_DROPPED.inc(len(group))
        self._report_backlog()
        if waiting:
            raise StoreUnavailable(f"{waiting} scan log entries wait for their shard")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.scan_flush_ms / 1000)
            try:
                await self.flush()
            except StoreUnavailable:
                log.warning("scan log not written: store unavailable (%d waiting)", len(self))

    def _report_backlog(self) -> None:
        """Set the backlog gauge to what waits now, if that changed (with several workers a set
        writes a shared file: not every flush)."""
        waiting = len(self)
        if waiting != self._backlog:
            self._backlog = waiting
            SCANS_BACKLOG.set(waiting)

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
                await self.flush()
        self._report_backlog()
