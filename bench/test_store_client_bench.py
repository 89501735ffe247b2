"""Micro-benchmark of 50 concurrent GETs on the hot-path client and on redis-py (uvloop).

Under ``--benchmark-disable`` each runs once as a smoke test; the asserts check every value.
``python -m bench.store_client`` measures client CPU per GET, which is the number that matters.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import uvloop
from pytest_benchmark.fixture import BenchmarkFixture
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.store.cluster import FastCluster

pytestmark = pytest.mark.cluster

CONCURRENCY = 50
KEYS = [f"bench:{i}" for i in range(CONCURRENCY)]
VALUES = [f"value-{i}".encode() * 16 for i in range(CONCURRENCY)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[DevCluster]:
    """A throwaway cluster for this module (``bench/`` cannot see the tests' session cluster);
    secure, as every cluster is by default."""
    directory = Path(tempfile.mkdtemp(prefix="cluster-", dir=os.environ.get("CE_TEST_CLUSTER_DIR")))
    (directory / "owner").write_text(str(os.getpid()))
    dev = DevCluster(directory=directory, base_port=find_free_base_port()).start()
    try:
        yield dev
    finally:
        dev.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One uvloop for the module, so that clients and their connections outlive a round."""
    event_loop = uvloop.new_event_loop()
    yield event_loop
    event_loop.close()


async def set_all(set_: Callable[[str, bytes], Awaitable[object]]) -> None:
    await asyncio.gather(*(set_(k, v) for k, v in zip(KEYS, VALUES, strict=True)))


def concurrent_gets(
    loop: asyncio.AbstractEventLoop, get: Callable[[str], Awaitable[object]]
) -> Callable[[], list[object]]:
    async def round_() -> list[object]:
        return list(await asyncio.gather(*(get(key) for key in KEYS)))

    return lambda: loop.run_until_complete(round_())


def test_fastcluster_50_concurrent_gets(
    benchmark: BenchmarkFixture, cluster: DevCluster, loop: asyncio.AbstractEventLoop
) -> None:
    client = FastCluster(cluster.startup_nodes, deadline_s=2.0, security=cluster.client_security())
    loop.run_until_complete(client.start())
    try:
        loop.run_until_complete(set_all(lambda k, v: client.execute(k, "SET", k, v)))
        assert benchmark(concurrent_gets(loop, client.get)) == VALUES
    finally:
        loop.run_until_complete(client.aclose())


def test_redis_py_50_concurrent_gets_for_comparison(
    benchmark: BenchmarkFixture, cluster: DevCluster, loop: asyncio.AbstractEventLoop
) -> None:
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes],
        **cluster.redis_py_options(),
    )
    try:
        # redis-py can leak AttributeError or RuntimeError while 50 tasks open its first
        # connections at once, or when a MOVED from a cluster still settling makes it close
        # connections under commands in flight (docs/architecture.md, pitfalls; seen in a CI run).
        # The comparison is about warm connections, so warm up.
        for attempt in range(3):
            try:
                loop.run_until_complete(set_all(client.set))
                break
            except (AttributeError, RuntimeError, RedisError):
                if attempt == 2:
                    raise
        assert benchmark(concurrent_gets(loop, client.get)) == VALUES
    finally:
        loop.run_until_complete(client.aclose())
