"""The records consumer against the real cluster and the embedded engine: every entry stored
once, streams trimmed only behind what was stored, a cycle left by a crash finished without
doubles, foreign entries left out and counted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import msgpack
import pytest
from prometheus_client import REGISTRY

from codeengine.code.scans import ScanEntry
from codeengine.ops.devcluster import DevCluster
from codeengine.records.consumer import GROUP, INTENT_KEY, RecordsConsumer
from codeengine.records.engine import EngineError, RecordsEngine
from codeengine.records.feeds import CHANGE_FEED, SCAN_FEED
from codeengine.store.cluster import FastCluster
from codeengine.store.redisstore import RedisStore, StoreSettings
from tests.integration.records_support import engine_for, fresh_cities, records_settings

pytestmark = pytest.mark.cluster


@pytest.fixture
def engine() -> Iterator[RecordsEngine]:
    database = f"t_{os.urandom(4).hex()}"
    engine = engine_for(database)
    yield engine
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def scans(city: int, count: int, venue: str = "venue-1") -> list[ScanEntry]:
    return [
        ScanEntry(f"term-{i % 3}", venue, city, 1_800_000_000_000 + i, f"subj{i:012d}", "VALID",
                  "green")
        for i in range(count)
    ]  # fmt: skip


async def write(cluster: DevCluster, entries: list[ScanEntry]) -> None:
    store = RedisStore(
        StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
    )
    try:
        failed = await store.append_scans([e.packed() for e in entries], 1_000_000,
                                          os.urandom(8).hex())  # fmt: skip
        assert failed == []
    finally:
        await store.close()


def records_cluster(cluster: DevCluster) -> FastCluster:
    return FastCluster(cluster.startup_nodes, security=cluster.client_security("records"),
                       deadline_s=5.0)  # fmt: skip


async def stored_to_the_end(fast: FastCluster, key: str) -> bool:
    """Whether the group's position (what is stored) is the stream's last entry."""
    groups = await fast.execute(key, "XINFO", "GROUPS", key)
    (group,) = [dict(zip(g[::2], g[1::2], strict=True)) for g in groups]
    assert group[b"name"] == GROUP.encode()
    info = await fast.execute(key, "XINFO", "STREAM", key)
    last = dict(zip(info[::2], info[1::2], strict=True))[b"last-generated-id"]
    return bool(group[b"last-delivered-id"] == last)


def stored(engine: RecordsEngine, table: str = "scans") -> list[tuple[object, ...]]:
    return [tuple(r) for r in engine.rows(f"SELECT * FROM {engine.database}.{table} ORDER BY at")]


def test_every_entry_is_stored_once_and_the_streams_are_trimmed_behind(
    cluster: DevCluster, engine: RecordsEngine
) -> None:
    cities = fresh_cities(2)

    async def scenario() -> None:
        await write(cluster, scans(cities[0], 1500) + scans(cities[1], 40, "venue-2"))
        fast = records_cluster(cluster)
        await fast.start()
        try:
            consumer = RecordsConsumer(fast, engine, records_settings(engine.database), cities)
            await consumer.prepare()
            # batch_max is 1000: the first cycle takes 1000 of the first city, all 40 of the
            # second; the second cycle the rest.
            assert await consumer.cycle() == 1040
            waiting = {(x.feed, x.city): x.entries for x in await consumer.measure_lag()}
            assert waiting[("scans", cities[0])] == 500
            assert waiting[("scans", cities[1])] == 0
            assert await consumer.cycle() == 500
            assert await consumer.cycle() == 0
            for city in cities:
                assert await stored_to_the_end(fast, SCAN_FEED.key(city))
            lag = await consumer.measure_lag()
            assert {(x.feed, x.entries) for x in lag} == {("scans", 0), ("changes", 0)}
        finally:
            await fast.aclose()

    asyncio.run(scenario())
    rows = stored(engine)
    assert len(rows) == 1540
    assert len(set(rows)) == 1540
    first = engine.rows(
        f"SELECT terminal, venue, city, toUnixTimestamp64Milli(at), subject, reason, colour "
        f"FROM {engine.database}.scans ORDER BY at, city LIMIT 1"
    )[0]
    assert tuple(first) == (
        "term-0", "venue-1", cities[0], 1_800_000_000_000, "subj000000000000", "VALID", "green"
    )  # fmt: skip


def test_a_cycle_left_after_its_insert_is_finished_without_doubles(
    cluster: DevCluster, engine: RecordsEngine
) -> None:
    (city,) = fresh_cities(1)

    async def scenario() -> None:
        await write(cluster, scans(city, 300))
        fast = records_cluster(cluster)
        await fast.start()
        try:
            settings = records_settings(engine.database)
            crashed = RecordsConsumer(fast, engine, settings, [city])
            await crashed.prepare()
            # The first half of a cycle: read, intent written, inserted; then the process ends.
            crashed._intent_left = False
            reads = [await crashed._read(s) for s in crashed._streams]
            batch = {s: e for s, e in zip(crashed._streams, reads, strict=True) if e}
            token = "a" * 24
            ranges = [[f.key(c), e[0][0], e[-1][0]] for (f, c), e in batch.items()]
            await fast.execute(INTENT_KEY, "SET", INTENT_KEY,
                               msgpack.packb({"t": token, "r": ranges}))  # fmt: skip
            await crashed._insert(batch, token)
            assert len(stored(engine)) == 300
            await write(cluster, scans(city, 20, "venue-later"))
            restarted = RecordsConsumer(fast, engine, settings, [city])
            await restarted.prepare()
            assert await restarted.cycle() == 20
            assert await fast.get(INTENT_KEY) is None
            assert await stored_to_the_end(fast, SCAN_FEED.key(city))
        finally:
            await fast.aclose()

    asyncio.run(scenario())
    rows = stored(engine)
    assert len(rows) == 320
    assert len(set(rows)) == 320


def test_a_foreign_entry_is_left_out_and_counted(
    cluster: DevCluster, engine: RecordsEngine
) -> None:
    (city,) = fresh_cities(1)
    before = REGISTRY.get_sample_value("codeengine_records_unreadable_total", {"table": "scans"})

    async def scenario() -> None:
        await write(cluster, scans(city, 5))
        fast = records_cluster(cluster)
        await fast.start()
        admin = FastCluster(cluster.startup_nodes, security=cluster.client_security("admin"))
        await admin.start()
        key = SCAN_FEED.key(city)
        try:
            # Right header, wrong types: only the full check finds it.
            forged = b"\x97" + msgpack.packb(1)[0:0] + b"".join(msgpack.packb(x) for x in range(7))
            await admin.execute(key, "XADD", key, "*", "e", forged)
            await admin.execute(key, "XADD", key, "*", "e", b"not msgpack")
            await write(cluster, scans(city, 3, "venue-3"))
            consumer = RecordsConsumer(fast, engine, records_settings(engine.database), [city])
            await consumer.prepare()
            assert await consumer.cycle() == 10
        finally:
            await fast.aclose()
            await admin.aclose()

    asyncio.run(scenario())
    assert len(stored(engine)) == 8
    after = REGISTRY.get_sample_value("codeengine_records_unreadable_total", {"table": "scans"})
    assert (after or 0) - (before or 0) == 2


def test_change_entries_fill_the_changes_table(cluster: DevCluster, engine: RecordsEngine) -> None:
    (city,) = fresh_cities(1)

    async def scenario() -> None:
        admin = FastCluster(cluster.startup_nodes, security=cluster.client_security("admin"))
        await admin.start()
        key = CHANGE_FEED.key(city)
        row = [1_800_000_000_123, city, "AAECAwQFBgcICQoL", "convert", "green", "red", 2,
               "dev-convert", "CLOSE_CONTACT", "op-1"]  # fmt: skip
        try:
            await admin.execute(key, "XADD", key, "*", "e", msgpack.packb(row))
        finally:
            await admin.aclose()
        fast = records_cluster(cluster)
        await fast.start()
        try:
            consumer = RecordsConsumer(fast, engine, records_settings(engine.database), [city])
            await consumer.prepare()
            assert await consumer.cycle() == 1
        finally:
            await fast.aclose()

    asyncio.run(scenario())
    (got,) = stored(engine, "changes")
    assert got[1:] == (city, "AAECAwQFBgcICQoL", "convert", "green", "red", 2, "dev-convert",
                       "CLOSE_CONTACT", "op-1")  # fmt: skip


def test_a_failed_insert_loses_neither_its_batch_nor_the_next_one_read_beside_it(
    cluster: DevCluster, engine: RecordsEngine
) -> None:
    (city,) = fresh_cities(1)
    table = f"{engine.database}.scans"

    async def scenario() -> None:
        await write(cluster, scans(city, 2500))
        fast = records_cluster(cluster)
        await fast.start()
        try:
            consumer = RecordsConsumer(fast, engine, records_settings(engine.database), [city])
            await consumer.prepare()
            assert await consumer.cycle() == 1000  # and entries 1000..1999 read beside it
            engine.command(f"RENAME TABLE {table} TO {table}_away")
            # The second cycle's batch is under its intent, the third's read beside it; the
            # insert fails: neither stream position moves.
            with pytest.raises(EngineError):
                await consumer.cycle()
            engine.command(f"RENAME TABLE {table}_away TO {table}")
            assert await consumer.cycle() == 500  # the intent's 1000 again, then the rest
            key = SCAN_FEED.key(city)
            info = await fast.execute(key, "XINFO", "STREAM", key)
            length = dict(zip(info[::2], info[1::2], strict=True))[b"length"]
            assert length == 0  # trimmed behind what is stored
            assert await consumer.cycle() == 0
            assert await stored_to_the_end(fast, SCAN_FEED.key(city))
        finally:
            await fast.aclose()

    asyncio.run(scenario())
    rows = stored(engine)
    assert len(rows) == 2500
    assert len(set(rows)) == 2500


def test_a_batch_larger_than_a_trims_default_limit_is_trimmed_whole(
    cluster: DevCluster, engine: RecordsEngine
) -> None:
    # An approximate trim stops after 10,000 entries unless it is told otherwise.
    (city,) = fresh_cities(1)
    key = SCAN_FEED.key(city)

    async def scenario() -> int:
        await write(cluster, scans(city, 12_000))
        fast = records_cluster(cluster)
        await fast.start()
        try:
            settings = records_settings(engine.database, batch_max=20_000)
            consumer = RecordsConsumer(fast, engine, settings, [city])
            await consumer.prepare()
            assert await consumer.cycle() == 12_000
            info = await fast.execute(key, "XINFO", "STREAM", key)
            return int(dict(zip(info[::2], info[1::2], strict=True))[b"length"])
        finally:
            await fast.aclose()

    assert asyncio.run(scenario()) == 0
    assert len(stored(engine)) == 12_000
