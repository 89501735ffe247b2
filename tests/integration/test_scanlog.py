"""The scan log writer against the real cluster: a burst is written whole; with one shard down
healthy cities are written once, none lost, and what waits shows in
``codeengine_scans_backlog``; scans are dropped only while the store is unreachable and the
buffer full, counted and logged as a count."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

import pytest
from prometheus_client import REGISTRY

from codeengine.code.errors import StoreUnavailable
from codeengine.code.model import CITIES
from codeengine.code.scans import ScanEntry
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.settings import VerifierSettings
from codeengine.store import keyspace
from codeengine.store.redisstore import RedisStore, StoreSettings
from codeengine.store.streamlog import DROP_LOG_INTERVAL_S
from verifier.scanlog import ScanLogWriter

pytestmark = pytest.mark.cluster


def entries(city: int, venue: str, count: int) -> list[ScanEntry]:
    return [
        ScanEntry("t", venue, city, 1_800_000_000_000 + i, "AAECAwQFBgcICQoL", "VALID", "green")
        for i in range(count)
    ]


async def count_venue(store: RedisStore, city: int, venue: str) -> int:
    window = await store.read_scans(city, 0, 2**62, 100_000)
    return sum(e.venue == venue for e in window.entries)


def test_one_paused_shard_delays_only_its_city(cluster: DevCluster) -> None:
    async def scenario() -> None:
        store = RedisStore(
            StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
        )
        try:
            fast = await store._hot()
            owner = {c: fast.primary_for(keyspace.scan_log_key(c)) for c in CITIES}
            down, up = next(
                (a, b) for a, b in itertools.permutations(CITIES, 2) if owner[a] != owner[b]
            )
            port = owner[down]
            assert port is not None
            venue = f"v-{os.urandom(4).hex()}"
            writer = ScanLogWriter(store, VerifierSettings())
            for entry in entries(down, venue, 5) + entries(up, venue, 7):
                writer.add(entry)
            with cluster.paused(port[1]):
                with pytest.raises(StoreUnavailable):
                    await writer.flush()
                assert len(writer) == 5, "only the paused city's entries wait"
                assert REGISTRY.get_sample_value("codeengine_scans_backlog") == 5
            assert await count_venue(store, up, venue) == 7
            for _ in range(50):
                try:
                    await writer.flush()
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.1)
            assert len(writer) == 0
            assert REGISTRY.get_sample_value("codeengine_scans_backlog") == 0
            assert await count_venue(store, down, venue) == 5
            assert await count_venue(store, up, venue) == 7, "nothing was written twice"
        finally:
            await store.close()
        cluster.wait_healthy()

    asyncio.run(scenario())


def store_for(cluster: DevCluster) -> RedisStore:
    return RedisStore(
        StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
    )


def dropped() -> float:
    return REGISTRY.get_sample_value("codeengine_scans_dropped_total") or 0.0


async def count_recent(store: RedisStore, city: int, venue: str, since_ms: int) -> int:
    window = await store.read_scans(city, since_ms, 2**62, 200_000)
    assert not window.truncated
    return sum(e.venue == venue for e in window.entries)


def test_a_burst_larger_than_a_flush_and_scans_added_during_it_are_all_written(
    cluster: DevCluster,
) -> None:
    async def scenario() -> None:
        store = store_for(cluster)
        since_ms = int(time.time() * 1000) - 60_000
        cities = list(CITIES)[:3]
        venue = f"v-{os.urandom(4).hex()}"
        before = dropped()
        try:
            writer = ScanLogWriter(store, VerifierSettings())
            # Far more than one round of batches in flight (MAX_IN_FLIGHT x FLUSH_BATCH).
            for city in cities:
                for entry in entries(city, venue, 12_000):
                    writer.add(entry)
            flushing = asyncio.ensure_future(writer.flush())
            await asyncio.sleep(0)  # the flush has taken the buffer and sent its first batches
            for entry in entries(cities[0], venue, 2_000):
                writer.add(entry)
            await flushing
            assert len(writer) == 2_000, "what came during the flush waits for the next one"
            await writer.flush()
            assert len(writer) == 0
            counts = [await count_recent(store, c, venue, since_ms) for c in cities]
            assert counts == [14_000, 12_000, 12_000]
            assert dropped() == before, "nothing dropped while the store answers"
        finally:
            await store.close()

    asyncio.run(scenario())


def test_scans_are_dropped_only_when_the_store_is_unreachable_and_the_buffer_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        # Nothing listens there: every flush finds the store unreachable.
        store = RedisStore(StoreSettings(nodes=(("127.0.0.1", find_free_base_port(count=1)),)))
        now = [1000.0]
        writer = ScanLogWriter(store, VerifierSettings(scan_buffer_max=1000), clock=lambda: now[0])
        subject = "AAECAwQFBgcICQoL"
        before = dropped()
        try:
            for entry in entries(320100, "v", 1000):
                writer.add(entry)
            with pytest.raises(StoreUnavailable):
                await writer.flush()
            assert (len(writer), dropped() - before) == (1000, 0), "full, nothing dropped yet"
            for entry in entries(320100, "v", 30):
                writer.add(entry)
            with caplog.at_level(logging.WARNING, logger="codeengine.streamlog"):
                with pytest.raises(StoreUnavailable):
                    await writer.flush()
                assert (len(writer), dropped() - before) == (1000, 30), "the oldest 30 dropped"
                for entry in entries(320100, "v", 20):
                    writer.add(entry)
                with pytest.raises(StoreUnavailable):
                    await writer.flush()  # within the log interval: counted, not logged
                now[0] += DROP_LOG_INTERVAL_S
                for entry in entries(320100, "v", 5):
                    writer.add(entry)
                with pytest.raises(StoreUnavailable):
                    await writer.flush()
            assert dropped() - before == 55
            lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
            assert lines == [
                "scan log: 30 entries dropped, buffer of 1000 full (store unavailable)",
                "scan log: 25 entries dropped, buffer of 1000 full (store unavailable)",
            ]
            assert not any(subject in r.getMessage() for r in caplog.records)
        finally:
            await store.close()

    asyncio.run(scenario())
