"""What every adapter shares: the settings, the cluster client and its deadlines.

:class:`Adapter` owns no key. It holds the one :class:`codeengine.store.cluster.FastCluster`
of the store (one pipelined connection per primary, its slot map refreshed on failures,
scripts reloaded on a node that lost them), runs every call under a deadline so that every
failure reaches the caller as :class:`StoreUnavailable` (docs/architecture.md, pitfalls), and
acknowledges writes with WAIT.
"""

from __future__ import annotations

__all__ = ["BULK_ACK_FACTOR", "SCAN_COUNT", "Adapter", "StoreSettings"]

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from codeengine.code.errors import NotWriter, StoreUnavailable, WriteNotReplicated
from codeengine.code.fencing import NO_FENCE, WriteFence, WriterToken
from codeengine.metrics import STORE_LATENCY
from codeengine.store.cluster import FastCluster, Script
from codeengine.store.connection import consume_outcome
from codeengine.store.security import PLAIN, StoreSecurity

T = TypeVar("T")


BULK_ACK_FACTOR = 10
"""A bulk chunk's WAIT may take this many times the replica timeout of a single write."""
BACKSTOP_S = 0.02
"""How much later than its own deadline a bounded store call is cancelled from outside."""
SCAN_COUNT = 1000
"""Keys asked of SCAN and SSCAN per call."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to reach the cluster and how long to wait for it."""

    nodes: tuple[tuple[str, int], ...]
    read_deadline_ms: int = 250
    write_deadline_ms: int = 1500
    replica_ack_timeout_ms: int = 500
    replicas_to_ack: int = 1
    topology_refresh_min_interval_s: float = 1.0
    security: StoreSecurity = PLAIN
    """TLS and the ACL login of every connection (codeengine.store.security)."""


class Adapter:
    """The plumbing of every adapter: deadlines, error translation, scripts, WAIT."""

    def __init__(self, settings: StoreSettings) -> None:
        self._settings = settings
        # The one client of every command: pipelined, a tenth of redis-py's CPU per command
        # (bench/store_client.py), WAIT-acknowledged writes sent with their WAIT.
        self._fast = FastCluster(
            settings.nodes,
            connect_timeout_s=settings.read_deadline_ms / 1000,
            deadline_s=settings.read_deadline_ms / 1000,
            refresh_min_interval_s=settings.topology_refresh_min_interval_s,
            security=settings.security,
        )
        self._fast_started = False
        self._fast_starting: asyncio.Future[None] | None = None
        # Bulk jobs and ops reads (imports, rollbacks, bindings, audit scans) are not latency
        # bound: a chunk queued behind thousands of writes gets ten write deadlines.
        self._bulk_deadline_s = settings.write_deadline_ms / 1000 * BULK_ACK_FACTOR
        self.fence: WriteFence = NO_FENCE
        """Asked before every status write; an issuer of a city endpoint sets its keeper here."""
        # The WAIT-acknowledged writes, by script text; each adapter registers its own.
        self._acked: dict[str, Script] = {}

    def _acknowledged(self, *texts: str) -> None:
        """Register write scripts that :meth:`_write_then_wait` runs."""
        for text in texts:
            self._acked[text] = self._fast.script(text)

    # Plumbing: deadlines, error translation, scripts.

    async def _bounded(self, work: Callable[[], Awaitable[T]], deadline_ms: int, what: str) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            # The client's own deadline (the same one, inside ``work``) ends a call first: it
            # counts the failure in the shard's breaker and asks for the slot map again, which
            # a cancellation from out here would skip. This one is the backstop.
            async with asyncio.timeout(deadline_ms / 1000 + BACKSTOP_S):
                result = await work()
            outcome = "ok"
            return result
        except TimeoutError as exc:
            raise StoreUnavailable(f"store {what} failed: timed out") from exc
        finally:
            STORE_LATENCY.labels(what, outcome).observe(time.perf_counter() - started)

    async def _hot(self) -> FastCluster:
        """The cluster client, its slot map read on first use.

        Concurrent first calls share one start, and none waits past the read deadline for it.
        """
        if self._fast_started:
            return self._fast
        if self._fast_starting is None or self._fast_starting.done():
            # Its connections outlive the request that started them: not in its log context.
            self._fast_starting = asyncio.get_running_loop().create_task(
                self._fast.start(), context=contextvars.Context()
            )
            self._fast_starting.add_done_callback(consume_outcome)
        try:
            async with asyncio.timeout(self._settings.read_deadline_ms / 1000):
                await asyncio.shield(self._fast_starting)
        except TimeoutError:
            raise StoreUnavailable("store not reachable within the deadline") from None
        self._fast_started = True
        return self._fast

    async def _write_then_wait(
        self,
        script: str,
        key_list: list[str],
        args: list[Any],
        wrote: Callable[[Any], bool] = lambda result: True,
        on_written: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run a write script and WAIT for ``replicas_to_ack`` replicas on its connection.

        WAIT counts the replicas that have the writes of *its own connection*, so both
        commands leave together (:meth:`FastCluster.evalsha_then_wait`); a MOVED or ASK fails
        the call (a resend is safe). ``wrote(result)`` says whether the script changed
        anything: a refusal (stale version, unknown subject) needs no replica and is answered
        as such even while one lags. ``on_written(result)`` runs once the primary answered
        that it wrote, before the WAIT's answer is looked at: what the primary has stays
        written even when no replica confirms it in time.
        """
        fast = await self._hot()
        settings = self._settings
        result, acked = await fast.evalsha_then_wait(
            self._acked[script],
            key_list,
            args,
            settings.replicas_to_ack,
            settings.replica_ack_timeout_ms,
            deadline_s=settings.write_deadline_ms / 1000,
        )
        if not wrote(result):
            return result
        if on_written is not None:
            on_written(result)
        if int(fast.reply_or_raise(acked, "WAIT")) < settings.replicas_to_ack:
            raise WriteNotReplicated("no replica confirmed the write in time")
        return result

    async def _replicated(self, fast: FastCluster, written: list[str], bulk: bool = False) -> None:
        # A bulk chunk is thousands of writes: its replica gets longer to catch up than one.
        timeout_ms = self._settings.replica_ack_timeout_ms * (BULK_ACK_FACTOR if bulk else 1)
        acked = await fast.wait_for_keys(written, self._settings.replicas_to_ack, timeout_ms)
        if acked < self._settings.replicas_to_ack:
            raise WriteNotReplicated("no replica confirmed the batch's writes in time")

    async def ping(self, *, every: bool = True) -> int:
        """PING every primary; how many did not answer (``every``: none may be silent)."""

        async def work() -> int:
            return await (await self._hot()).ping(every=every)

        return await self._bounded(work, self._settings.read_deadline_ms, "ping")

    async def close(self) -> None:
        """Close every connection, failing the calls still waiting."""
        await self._fast.aclose()


def _fields(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat field-value reply (HGETALL, a stream entry's fields) as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _text_fields(flat: Sequence[bytes]) -> dict[str, str]:
    """A flat field-value reply (HGETALL, a stream entry's fields) as text."""
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def _fenced_off(token: WriterToken) -> NotWriter:
    return NotWriter(
        f"a newer writer of city {token.city} wrote this subject: this endpoint's epoch "
        f"{token.epoch} is fenced off"
    )
