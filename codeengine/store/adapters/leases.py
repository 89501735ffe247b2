"""Per-city write leases: the store side of the fence keeper (:mod:`codeengine.store.fence`).

Owns the six keys of ``keyspace.fence_keys``: lease, epoch counter, switch log, both
heartbeats and the planned hold.
"""

from __future__ import annotations

__all__ = ["LeaseAdapter"]

import asyncio
from typing import Any

from codeengine.code.errors import StoreUnavailable
from codeengine.code.fencing import Lease, Role, Switch, role_of
from codeengine.store import keyspace
from codeengine.store.adapters._base import Adapter, StoreSettings, _text_fields
from codeengine.store.scripts import FENCE_HANDOVER, FENCE_TICK


class LeaseAdapter(Adapter):
    """Lease beats, handovers and the lease's state, for the keeper and ops."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._fence_tick = self._fast.script(FENCE_TICK)
        self._fence_handover = self._fast.script(FENCE_HANDOVER)

    async def fence_tick(
        self, city: int, role: Role, lease_ms: int, handback_ms: int, may_take: bool = True
    ) -> Lease:
        """One beat of an endpoint of ``city``: renew, take or hand back its write lease.

        ``may_take`` false keeps a backup from taking a free lease (early after its start).
        """
        await self._hot()
        reply = await self._fence_tick(
            list(keyspace.fence_keys(city)),
            [role.value, lease_ms, handback_ms, "1" if may_take else "0"],
        )
        return _lease(reply)

    async def fence_replicated(self, city: int) -> bool:
        """Whether a replica has this process's writes of the city's lease (WAIT after a grant)."""
        fast = await self._hot()
        lease_key = keyspace.fence_keys(city)[0]
        settings = self._settings
        try:
            acked = await fast.wait_for_keys(
                [lease_key], settings.replicas_to_ack, settings.replica_ack_timeout_ms
            )
        except StoreUnavailable:
            return False
        return acked >= settings.replicas_to_ack

    async def fence_handover(self, city: int, to: Role, hold_ms: int, lease_ms: int) -> Lease:
        """Move the lease to ``to`` and hold it there for ``hold_ms`` (0: lift the hold)."""
        await self._hot()
        reply = await self._fence_handover(
            list(keyspace.fence_keys(city)), [to.value, hold_ms, lease_ms],
            deadline_s=self._bulk_deadline_s,
        )  # fmt: skip
        return _lease(reply)

    async def fence_state(self, city: int, switches: int = 20) -> tuple[Lease, list[Switch]]:
        """The city's lease and its latest switches, newest first (for ops and drills)."""
        fast = await self._hot()
        lease_key, _, log_key, _, hold_key, _ = keyspace.fence_keys(city)
        deadline_s = self._bulk_deadline_s
        (owner, epoch), ttl, hold, rows = await asyncio.gather(
            fast.execute(lease_key, "HMGET", lease_key, "owner", "epoch", deadline_s=deadline_s),
            fast.execute(lease_key, "PTTL", lease_key, deadline_s=deadline_s),
            fast.execute(lease_key, "GET", hold_key, deadline_s=deadline_s),
            fast.execute(lease_key, "XREVRANGE", log_key, "+", "-", "COUNT", switches,
                         deadline_s=deadline_s),
        )  # fmt: skip
        lease = _lease([owner or b"", int(epoch or 0), ttl, hold or b""])
        log = []
        for _id, flat in rows:
            fields = _text_fields(flat)
            to = role_of(fields.get("to", ""))
            if to is None:
                continue
            log.append(
                Switch(int(fields["at"]) / 1000, role_of(fields.get("from", "")), to,
                       int(fields["epoch"]), fields.get("why", ""))
            )  # fmt: skip
        return lease, log


def _lease(reply: Any) -> Lease:
    owner, epoch, ttl, hold = reply
    return Lease(role_of(owner), int(epoch), max(0, int(ttl)), role_of(hold))
