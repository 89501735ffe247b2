"""Per-city write leases and fencing epochs, on the real cluster.

Each scenario drives the two keepers of one city by calling ``beat()`` itself, so that it
decides when a primary "dies" (stops beating) and comes back. No scenario waits for time to
pass: the keepers run on a clock the test moves, and the store's side of time (its keys' TTLs
and the heartbeat's start, on Redis's own clock) is moved by the test too. A lease that "runs
out" is one whose keys the test removes, after checking that they carry the TTL that would
have removed them; a primary that "has beaten for the hand-back period" is one whose heartbeat
start the test moves back. The lease lasts a minute, so no stall of a busy machine expires it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from codeengine.code.errors import NotWriter
from codeengine.code.fencing import FenceSettings, Role, WriterToken
from codeengine.code.model import Colour
from codeengine.ops.devcluster import DevCluster
from codeengine.store import keyspace
from codeengine.store.fence import FenceKeeper
from codeengine.store.redisstore import RedisStore
from tests.integration.apps import Clock, admin_redis
from tests.integration.test_redisstore import change, new_subject, opened, record

pytestmark = pytest.mark.cluster

FAST = FenceSettings(lease_ms=60_000, renew_ms=300, handback_ms=60_000, write_wait_ms=1000)
"""A lease and a hand-back period that no stall of a test outlasts: the test moves time."""

HANG_GUARD_S = 10.0
"""Only against a hang: what the keepers wait for comes from the test, not from time passing."""


async def fresh_city(cluster: DevCluster, city: int) -> None:
    """Forget the city's lease, epoch and switch log (the session's cluster is shared)."""
    async with admin_redis(cluster) as client:
        await client.delete(*keyspace.fence_keys(city))


async def run_out(cluster: DevCluster, city: int, role: Role) -> None:
    """``role`` stopped beating a lease period ago: its heartbeat, and its lease if it held it,
    are gone, as the TTLs they carry (checked here) would have had them."""
    lease, _, _, primary_up, _, backup_up = keyspace.fence_keys(city)
    beat = primary_up if role is Role.PRIMARY else backup_up
    async with admin_redis(cluster) as client:
        held = await client.hget(lease, "owner") == role.value.encode()
        for key in (beat, lease) if held else (beat,):
            assert 0 < await client.pttl(key) <= FAST.lease_ms, f"{key} would not run out"
            await client.delete(key)


async def backdate_primary_beat(cluster: DevCluster, city: int, ms: int) -> None:
    """The primary has been beating for ``ms`` longer than it has: the store's hand-back
    period counts from its heartbeat's start, on Redis's clock."""
    primary_up = keyspace.fence_keys(city)[3]
    async with admin_redis(cluster) as client:
        since = await client.get(primary_up)
        assert since is not None, "the primary is not beating"
        await client.set(primary_up, int(since) - ms, keepttl=True)


class _Stale:
    """A writer that still believes in an epoch it lost: a primary frozen past its lease."""

    def __init__(self, token: WriterToken) -> None:
        self.token = token

    async def writer(self) -> WriterToken:
        return self.token


def _pair(store: RedisStore, city: int, clock: Clock) -> tuple[FenceKeeper, FenceKeeper]:
    return (
        FenceKeeper(store, city, Role.PRIMARY, FAST, monotonic=clock),
        FenceKeeper(store, city, Role.BACKUP, FAST, monotonic=clock),
    )


@asynccontextmanager
async def fenced_store(cluster: DevCluster) -> AsyncIterator[RedisStore]:
    """A store whose replica acknowledgements may take a busy machine's time: a grant is
    trusted once a replica has it, and a late acknowledgement must not look like a lost one."""
    async with opened(cluster, replica_ack_timeout_ms=10_000) as store:
        yield store


def test_the_backup_takes_the_lease_only_when_the_primary_stops(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        city = 320200
        await fresh_city(cluster, city)
        clock = Clock(now=1000.0)
        async with fenced_store(cluster) as store:
            primary, backup = _pair(store, city, clock)
            first = await primary.beat()
            assert (first.owner, first.epoch) == (Role.PRIMARY, 1)
            assert 0 < first.ttl_ms <= FAST.lease_ms
            assert (await backup.beat()).owner is Role.PRIMARY
            assert primary.holds() and not backup.holds()
            with pytest.raises(NotWriter) as refused:
                await asyncio.wait_for(backup.writer(), HANG_GUARD_S)
            assert refused.value.writer == "primary"
            # The primary stops beating. A beat before its lease runs out in the store, it
            # stops believing in it.
            clock.now += (FAST.lease_ms - FAST.renew_ms) / 1000
            assert not primary.holds(), "a holder stops believing before the store lets go"
            assert (await store.fence_state(city))[0].owner is Role.PRIMARY
            clock.now += FAST.renew_ms / 1000
            await run_out(cluster, city, Role.PRIMARY)
            taken = await backup.beat()
            assert (taken.owner, taken.epoch) == (Role.BACKUP, 2)
            token = await backup.writer()
            assert token == WriterToken(str(city), 2, f"{city}/backup")
            lease, log = await store.fence_state(city)
            assert lease.owner is Role.BACKUP
            assert [(s.source, s.to, s.epoch, s.why) for s in log] == [
                (Role.PRIMARY, Role.BACKUP, 2, "lease_expired"),
                (None, Role.PRIMARY, 1, "start"),
            ]

    run(scenario())


def test_a_returning_primary_gets_the_lease_back_after_the_handback_period(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        city = 320300
        await fresh_city(cluster, city)
        clock = Clock(now=1000.0)
        async with fenced_store(cluster) as store:
            primary, backup = _pair(store, city, clock)
            fresh = await backup.beat()
            assert fresh.owner is None, "a backup just started leaves a free lease alone"
            clock.now += FAST.lease_ms / 1000
            await backup.beat()  # running a lease period, no primary beating: it takes it
            assert backup.holds()
            came_back = await primary.beat()
            assert came_back.owner is Role.BACKUP, "no hand-back before the period"
            assert not primary.holds()
            # Twenty seconds before the period ends (no stall of a test lasts that long).
            await backdate_primary_beat(cluster, city, FAST.handback_ms - 20_000)
            await primary.beat()
            assert (await backup.beat()).owner is Role.BACKUP, "still none shortly before it"
            assert backup.holds()
            await backdate_primary_beat(cluster, city, 20_000)
            await primary.beat()
            assert (await backup.beat()).owner is Role.PRIMARY, "handed back by the holder"
            assert (await primary.beat()).owner is Role.PRIMARY
            assert primary.holds() and not backup.holds()
            _, log = await store.fence_state(city)
            assert (log[0].to, log[0].why) == (Role.PRIMARY, "handback")

    run(scenario())


def test_a_write_with_an_older_epoch_cannot_overwrite_the_backups(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        city = 320400
        await fresh_city(cluster, city)
        clock = Clock(now=1000.0)
        async with fenced_store(cluster) as store:
            primary, backup = _pair(store, city, clock)
            await primary.beat()
            store.fence = primary
            subject = new_subject()
            await store.create_subject(record(subject), "issuer")
            await store.set_status(change(subject, 1, Colour.YELLOW, "op-primary"))
            old_token = await primary.writer()
            clock.now += FAST.lease_ms / 1000
            await run_out(cluster, city, Role.PRIMARY)
            await backup.beat()
            store.fence = backup
            await store.set_status(change(subject, 2, Colour.RED, "op-backup"))
            # The old primary wakes up still holding its epoch and writes.
            store.fence = _Stale(old_token)
            with pytest.raises(NotWriter):
                await store.set_status(change(subject, 3, Colour.GREEN, "op-zombie"))
            stored = await store.get_subject(subject)
            assert stored is not None and (stored.colour, stored.version) == (Colour.RED, 3)
            trail = await store.audit_trail(subject)
            assert [(e.op_id, e.writer, e.epoch) for e in trail] == [
                ("", f"{city}/primary", 1),
                ("op-primary", f"{city}/primary", 1),
                ("op-backup", f"{city}/backup", 2),
            ]

    run(scenario())


def test_a_planned_handover_moves_writes_and_holds_them(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        city = 320500
        await fresh_city(cluster, city)
        clock = Clock(now=1000.0)
        async with fenced_store(cluster) as store:
            primary, backup = _pair(store, city, clock)
            await primary.beat()
            await backup.beat()
            held = await store.fence_handover(city, Role.BACKUP, 60_000, FAST.lease_ms)
            # Only the hold is set: the holder still writes until its own beat passes it on,
            # so there is no instant with two writers.
            assert (held.owner, held.epoch, held.held_for) == (Role.PRIMARY, 1, Role.BACKUP)
            assert primary.holds()
            await backup.beat()  # sees the hold for it: its writes now wait for the lease
            backup_waits = asyncio.create_task(backup.writer())
            await asyncio.sleep(0)
            moved = await primary.beat()
            assert (moved.owner, moved.epoch) == (Role.BACKUP, 2)
            assert primary.draining and not primary.holds()
            with pytest.raises(NotWriter):
                await primary.writer()
            await backup.beat()
            token = await asyncio.wait_for(backup_waits, HANG_GUARD_S)
            assert token.epoch == 2, "a writer waiting for a held lease gets it"
            # The hold keeps it there however long the primary beats.
            await backdate_primary_beat(cluster, city, FAST.handback_ms)
            for _ in range(2):
                await primary.beat()
                assert (await backup.beat()).owner is Role.BACKUP
            lifted = await store.fence_handover(city, Role.BACKUP, 0, FAST.lease_ms)
            assert lifted.held_for is None
            assert (await backup.beat()).owner is Role.PRIMARY, "hand-back once the hold lifts"
            _, log = await store.fence_state(city)
            assert [s.why for s in log[:2]] == ["handback", "planned"]

    run(scenario())


def test_fence_settings_refuse_a_lease_shorter_than_three_beats() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(FAST, lease_ms=400)


def test_a_write_at_the_backup_waits_out_a_dying_lease_but_not_a_live_one(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        city = 320600
        await fresh_city(cluster, city)
        clock = Clock(now=1000.0)
        wait_s = FAST.write_wait_ms / 1000
        async with fenced_store(cluster) as store:
            primary, backup = _pair(store, city, clock)
            await primary.beat()
            await backup.beat()
            # A minute left on the primary's lease: more than the wait. The clock stands
            # still, so a writer that waited instead would wait until the hang guard.
            with pytest.raises(NotWriter):
                await asyncio.wait_for(backup.writer(), HANG_GUARD_S)
            # The primary stops beating: half a wait before its lease runs out, a write waits.
            clock.now += FAST.lease_ms / 1000 - wait_s / 2
            waiting = asyncio.create_task(backup.writer())
            await asyncio.sleep(0)  # its first step: refused (done) or waiting
            assert not waiting.done(), "a write waits for a lease that runs out within the wait"
            clock.now += wait_s / 2
            await run_out(cluster, city, Role.PRIMARY)
            backup.start()  # the backup beats on its own from here
            try:
                token = await asyncio.wait_for(waiting, HANG_GUARD_S)
            finally:
                await backup.stop()
            assert (token.epoch, token.writer) == (2, f"{city}/backup")

    run(scenario())


def test_a_hold_for_an_endpoint_that_is_not_beating_never_leaves_the_city_without_a_writer(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        city = 320700
        await fresh_city(cluster, city)
        async with fenced_store(cluster) as store:
            primary, backup = _pair(store, city, Clock(now=1000.0))
            await primary.beat()
            # Ops hold the city for the backup, whose endpoint is down: no beat from it.
            await store.fence_handover(city, Role.BACKUP, 60_000, FAST.lease_ms)
            kept = await primary.beat()
            assert (kept.owner, kept.epoch, kept.held_for) == (Role.PRIMARY, 1, Role.BACKUP)
            assert primary.holds(), "not handed to an endpoint that is not there"
            # The backup comes up and beats: now the plan goes ahead.
            await backup.beat()
            moved = await primary.beat()
            assert (moved.owner, moved.epoch) == (Role.BACKUP, 2)
            await backup.beat()
            assert backup.holds()
            # Then the backup dies with the hold still on: once its lease and beat run out,
            # the primary takes the city's writes back instead of leaving nobody.
            await run_out(cluster, city, Role.BACKUP)
            back = await primary.beat()
            assert (back.owner, back.epoch, back.held_for) == (Role.PRIMARY, 3, Role.BACKUP)
            _, log = await store.fence_state(city)
            assert [(s.to, s.why) for s in log[:2]] == [
                (Role.PRIMARY, "lease_expired"),
                (Role.BACKUP, "planned"),
            ]

    run(scenario())
