"""The store adapter against the real Redis Cluster the session started."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from codeengine.code.errors import (
    StoreUnavailable,
    UnknownSubject,
    VersionConflict,
    WriteNotReplicated,
)
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.status import StatusChange, SubjectRecord
from codeengine.keyfiles import new_mac_keyset
from codeengine.ops.devcluster import DevCluster
from codeengine.store import keyspace
from codeengine.store.adapters._sealed import StoreKeys
from codeengine.store.redisstore import RedisStore, StoreSettings

pytestmark = pytest.mark.cluster

NOW = 1_800_000_000
KEYS = StoreKeys(new_mac_keyset(os.urandom), new_mac_keyset(os.urandom))
"""This module's MAC keys: its stores write and read only subjects it creates."""


def new_subject() -> SubjectId:
    return SubjectId(base64.urlsafe_b64encode(os.urandom(12)).rstrip(b"=").decode())


def record(subject: SubjectId, colour: Colour = Colour.GREEN) -> SubjectRecord:
    return SubjectRecord(subject, CodeKind.HEALTH, 320100, colour, 1, NOW)


def change(subject: SubjectId, if_version: int, colour: Colour, op_id: str) -> StatusChange:
    return StatusChange(subject, if_version, colour, op_id, "ops-1", "test", NOW + 10)


@asynccontextmanager
async def opened(cluster: DevCluster, **overrides: Any) -> AsyncIterator[RedisStore]:
    store = RedisStore(
        StoreSettings(
            nodes=tuple(cluster.startup_nodes), security=cluster.client_security(), **overrides
        )
    )
    store.keys = KEYS
    try:
        yield store
    finally:
        await store.close()


def test_create_is_idempotent_and_readable(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with opened(cluster) as store:
            subject = new_subject()
            assert await store.get_subject(subject) is None
            stored, created = await store.create_subject(record(subject), "issuer")
            # The record keeps the head of its audit chain: the MAC of the create entry.
            assert len(stored.head) == 32 and int(stored.head, 16) >= 0 and stored.entries == 1
            assert created and stored._replace(head="", entries=0) == record(subject)
            again, created_again = await store.create_subject(record(subject, Colour.RED), "issuer")
            assert not created_again
            assert again.colour is Colour.GREEN, "a repeat create must not overwrite"
            assert await store.get_subject(subject) == stored

    run(scenario())


def test_compare_and_set_accepts_only_the_current_version(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with opened(cluster) as store:
            subject = new_subject()
            await store.create_subject(record(subject), "issuer")
            result = await store.set_status(change(subject, 1, Colour.RED, "op-a"))
            assert (result.version, result.applied) == (2, True)
            with pytest.raises(VersionConflict) as stale:
                await store.set_status(change(subject, 1, Colour.YELLOW, "op-b"))
            assert stale.value.current_version == 2
            with pytest.raises(VersionConflict):
                await store.set_status(change(subject, 7, Colour.YELLOW, "op-c"))
            current = await store.get_subject(subject)
            assert current is not None
            assert (current.colour, current.version) == (Colour.RED, 2)
            newer = await store.set_status(change(subject, 2, Colour.GREEN, "op-d"))
            assert newer.version == 3

    run(scenario())


def test_resent_write_is_a_no_op(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with opened(cluster) as store:
            subject = new_subject()
            await store.create_subject(record(subject), "issuer")
            first = await store.set_status(change(subject, 1, Colour.RED, "op-1"))
            resent = await store.set_status(change(subject, 1, Colour.RED, "op-1"))
            assert first.applied and not resent.applied
            # Reusing the op id with another colour changes nothing and says what op-1 did.
            reused = await store.set_status(change(subject, 1, Colour.GREEN, "op-1"))
            assert (reused.applied, reused.colour) == (False, Colour.RED)
            marker = keyspace.op_key(subject, "op-1")
            master = store._fast.primary_for(marker)
            assert master is not None
            ttl = int(cluster.command(master[1], "TTL", marker).strip())
            assert 0 < ttl <= 86_400, "each operation marker expires on its own"
            assert resent.version == first.version == 2
            trail = await store.audit_trail(subject)
            assert [e.op for e in trail] == ["create", "status"]
            assert trail[1].old_colour is Colour.GREEN and trail[1].new_colour is Colour.RED
            assert (trail[1].actor, trail[1].op_id, trail[1].version) == ("ops-1", "op-1", 2)

    run(scenario())


def test_unknown_subject_is_refused(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with opened(cluster) as store:
            with pytest.raises(UnknownSubject):
                await store.set_status(change(new_subject(), 1, Colour.RED, "op-x"))

    run(scenario())


def test_write_without_a_replica_is_not_acknowledged(cluster: DevCluster) -> None:
    import asyncio

    async def scenario() -> None:
        async with opened(cluster, replica_ack_timeout_ms=200) as store:
            subject = new_subject()
            await store.create_subject(record(subject), "issuer")
            master = store._fast.primary_for(keyspace.subject_key(subject))
            assert master is not None
            (replica,) = cluster.replicas_of(master[1])
            with cluster.paused(replica):
                with pytest.raises(WriteNotReplicated):
                    await store.set_status(change(subject, 1, Colour.RED, "op-r"))
            # Once the replica is back, resending the same write is acknowledged, not repeated.
            for _ in range(50):
                try:
                    result = await store.set_status(change(subject, 1, Colour.RED, "op-r"))
                    break
                except WriteNotReplicated:
                    await asyncio.sleep(0.1)
            assert (result.version, result.applied) == (2, False)

    asyncio.run(scenario())


def test_unreachable_store_fails_fast_with_store_unavailable(run: Any) -> None:
    async def scenario() -> None:
        settings = StoreSettings(nodes=(("127.0.0.1", 1),), read_deadline_ms=200)
        store = RedisStore(settings)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get_subject(new_subject())
        assert time.monotonic() - started < 1.0
        await store.close()

    run(scenario())
