"""Fencing: at any instant one endpoint of a city (primary or backup) accepts writes.

The right to write is a **lease** in the store, one per city, held by a role and numbered by an
**epoch** that grows with every change of holder. Every issuer process of a city endpoint runs a
:class:`FenceKeeper`, which beats every ``renew_ms``:

* the holder renews the lease; a free lease goes to the primary, or to the backup when the
  primary has stopped beating (it died: the lease and its beat expire after ``lease_ms``);
* a backup that holds the lease hands it back once the primary has been beating again for
  ``handback_ms``: the same hysteresis the failover client applies before it switches back;
* ops can move it on purpose (``POST /v1/ops/cities/{city}/handover``), with a hold that
  keeps it there.

Two guards stop a writer that lost its lease (a primary frozen, cut off, or just restarted):

1. A process writes only while its own lease is valid by its own monotonic clock, counted
   from *before* the beat that renewed it, so it stops believing before the store lets go.
2. Every status write carries the writer's epoch; the record keeps the highest epoch of each
   city that wrote it and the write script refuses a lower one (``fenced`` in
   ``lua/audit.lua``). A primary that comes back with an old epoch cannot overwrite what its
   backup wrote.

Audit entries name the writer and its epoch, so a drill can check that no entry of an old epoch
was written after the switch.
"""

from __future__ import annotations

__all__ = ["FenceKeeper"]

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from codeengine.code.errors import CodeEngineError, NotWriter
from codeengine.code.fencing import FenceSettings, Lease, Role, WriterToken

if TYPE_CHECKING:
    from codeengine.store.redisstore import RedisStore

log = logging.getLogger("codeengine.store.fence")

FENCE_SWITCHES = Counter(
    "codeengine_fence_switches_total",
    "Changes of a city's write-lease holder seen by this process, by city and new holder.",
    ["city", "to"],
)
FENCE_WRITER = Gauge(
    "codeengine_fence_writer",
    "1 while this process holds its city's write lease, else 0.",
    ["city", "role"],
    multiprocess_mode="max",
)


class FenceKeeper:
    """This process's side of its city's lease: beats, and answers whether it may write."""

    def __init__(
        self,
        store: RedisStore,
        city: int,
        role: Role,
        settings: FenceSettings,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.city = city
        self.role = role
        self.name = f"{city}/{role}"
        self._settings = settings
        self._monotonic = monotonic
        self._valid_until = 0.0
        self._epoch = 0
        self.lease: Lease | None = None
        self._seen_at = 0.0
        self._started = monotonic()
        self._beaten = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer_gauge = FENCE_WRITER.labels(str(city), role.value)

    @property
    def draining(self) -> bool:
        """A planned handover holds the lease for the other endpoint: clients should move."""
        return self.lease is not None and self.lease.held_for is self.role.other

    def holds(self) -> bool:
        return self._monotonic() < self._valid_until

    async def beat(self) -> Lease:
        """One beat: renew, take or hand back the lease as the rules say; the lease after it."""
        sent = self._monotonic()
        # A backup that just started does not take a lease nobody holds: the primary, started
        # at the same moment, may not have beaten yet (a cold start would begin on the backup).
        settled = sent - self._started >= self._settings.lease_ms / 1000
        lease = await self._store.fence_tick(
            self.city, self.role, self._settings.lease_ms, self._settings.handback_ms, settled
        )
        previous, self.lease, self._seen_at = self.lease, lease, sent
        changed = previous is None or (previous.owner, previous.epoch) != (lease.owner, lease.epoch)
        if lease.owner is self.role and lease.ttl_ms > 0:
            if changed and not await self._store.fence_replicated(self.city):
                # A new epoch that no replica has could be handed out again after a failover
                # of the lease's shard: not trusted until a later beat finds it replicated.
                self.lease = previous
                self._valid_until = 0.0
                return lease
            # Valid from the moment the beat was sent, never past what the store grants.
            margin_s = self._settings.renew_ms / 1000
            self._valid_until = sent + min(lease.ttl_ms, self._settings.lease_ms) / 1000 - margin_s
            self._epoch = lease.epoch
        else:
            self._valid_until = 0.0
        if changed:
            if lease.owner is not None:
                FENCE_SWITCHES.labels(str(self.city), lease.owner.value).inc()
            log.warning(
                "city %s write lease: %s (epoch %d) as seen by %s",
                self.city,
                lease.owner or "nobody",
                lease.epoch,
                self.name,
            )
        # Every beat wakes the writers waiting for the lease: a renewal after a late beat
        # makes this endpoint a writer again without any change of holder or epoch.
        self._beaten.set()
        self._beaten = asyncio.Event()
        self._writer_gauge.set(1 if self.holds() else 0)
        return lease

    def _other_holds_beyond(self, seconds: float) -> bool:
        """Whether the other endpoint holds the lease for longer than ``seconds`` from now."""
        lease = self.lease
        if lease is None or lease.owner is not self.role.other or lease.held_for is self.role:
            return False
        if lease.held_for is self.role.other:
            return True  # a planned hold keeps it there
        remaining = lease.ttl_ms / 1000 - (self._monotonic() - self._seen_at)
        return remaining > seconds

    async def writer(self) -> WriterToken:
        """The token for a write now, waiting up to ``write_wait_ms`` for the lease.

        Waits only while the lease may come here within the wait: it is free, held here but
        not yet renewed, or held by the other endpoint with less time left than the wait (a
        takeover after the primary died). Otherwise NotWriter at once, naming the holder.
        """
        deadline = self._monotonic() + self._settings.write_wait_ms / 1000
        while not self.holds():
            left = deadline - self._monotonic()
            if left <= 0 or self._other_holds_beyond(left):
                holder = self.lease.owner if self.lease is not None else None
                raise NotWriter(writer=holder.value if holder else "")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beaten.wait(), left)
        return WriterToken(str(self.city), self._epoch, self.name)

    async def run(self) -> None:
        """Beat until cancelled; a failed beat is logged (once a second at most) and retried."""
        last_logged = 0.0
        while True:
            try:
                await self.beat()
            except (CodeEngineError, OSError) as exc:
                self._writer_gauge.set(1 if self.holds() else 0)
                now = self._monotonic()
                if now - last_logged >= 1.0:
                    last_logged = now
                    log.warning("city %s lease beat failed: %s", self.city, exc)
            await asyncio.sleep(self._settings.renew_ms / 1000)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
