"""The scan log writer when one shard is down: healthy cities are written once, none lost, and
what waits shows in ``codeengine_scans_backlog``."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from prometheus_client import REGISTRY

from codeengine.code.errors import StoreUnavailable
from codeengine.code.model import CITIES
from codeengine.code.scans import ScanEntry
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import VerifierSettings
from codeengine.store import keyspace
from codeengine.store.redisstore import RedisStore, StoreSettings
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
