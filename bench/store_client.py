"""Client CPU per GET on a throwaway Redis Cluster: redis-py asyncio cluster vs FastCluster.

    python -m bench.store_client [--ops 20000] [--setup both|secure|plain]

Runs on uvloop, as the services do, at concurrency 1 and 50. CPU is this process's
``time.process_time()`` over the measured GETs (the redis-servers are other processes), so
the number is what the hot path pays in the service, not the round trip's latency.
``--setup both`` (the default) measures on a secure cluster (TLS, the services' ACL user, as
everywhere by default) and on a plain one (no TLS, no login), one after the other: the
difference is what TLS costs the client per GET.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop
from redis.asyncio.cluster import ClusterNode, RedisCluster

from codeengine.ops.devcluster import DevCluster, RedisPyOptions, find_free_base_port
from codeengine.store.cluster import FastCluster
from codeengine.store.security import StoreSecurity

KEY_COUNT = 1000
VALUE = b"v" * 160  # About a displayed token's size.
CONCURRENCIES = (1, 50)
WARMUP_OPS = 1000

Get = Callable[[str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Result:
    """One client at one concurrency."""

    client: str
    setup: str
    """``secure`` (TLS and the services' login) or ``plain``."""
    concurrency: int
    ops: int
    cpu_us_per_get: float
    gets_per_s: float


async def measure(get: Get, keys: Sequence[str], concurrency: int, ops: int) -> tuple[float, float]:
    """CPU microseconds per GET and GETs per second, with ``concurrency`` tasks sharing ``ops``."""
    per_task = ops // concurrency

    async def worker(offset: int) -> None:
        for i in range(per_task):
            key = keys[(offset + i * 7) % len(keys)]
            if await get(key) != VALUE:
                raise AssertionError(f"wrong value for {key}")

    async def batch() -> None:
        await asyncio.gather(*(worker(n * 13) for n in range(concurrency)))

    done = per_task * concurrency
    cpu, wall = time.process_time(), time.perf_counter()
    await batch()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / done * 1e6, done / wall


async def bench_client(
    name: str, setup: str, get: Get, keys: Sequence[str], ops: int
) -> list[Result]:
    """Warm up, then measure one client at every concurrency."""
    await measure(get, keys, 10, WARMUP_OPS)
    results = []
    for concurrency in CONCURRENCIES:
        cpu_us, rate = await measure(get, keys, concurrency, ops)
        results.append(Result(name, setup, concurrency, ops, cpu_us, rate))
    return results


async def run_all(
    nodes: Sequence[tuple[str, int]],
    ops: int,
    setup: str,
    security: StoreSecurity,
    options: RedisPyOptions,
) -> list[Result]:
    """Load the keys, then measure each client in turn on the running loop."""
    keys = [f"bench:{i}" for i in range(KEY_COUNT)]
    fast = FastCluster(nodes, deadline_s=2.0, security=security)
    await fast.start()
    await asyncio.gather(*(fast.execute(k, "SET", k, VALUE) for k in keys))
    results = await bench_client("FastCluster (RESP2, hiredis)", setup, fast.get, keys, ops)
    await fast.aclose()
    for label, protocol in (("redis-py RedisCluster (defaults)", None), ("protocol=3", 3)):
        client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in nodes], protocol=protocol, **options
        )
        await client.initialize()
        name = label if protocol is None else f"redis-py RedisCluster ({label})"
        results += await bench_client(name, setup, client.get, keys, ops)
        await client.aclose()
    return results


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| client | setup | concurrency | GETs | client CPU µs/GET | GETs/s (wall) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in sorted(results, key=lambda r: (r.concurrency, r.client, r.setup)):
        lines.append(
            f"| {r.client} | {r.setup} | {r.concurrency} | {r.ops} | {r.cpu_us_per_get:.1f} "
            f"| {r.gets_per_s:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Start a throwaway cluster, measure, print the table, stop the cluster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000, help="GETs per measurement")
    parser.add_argument("--setup", choices=("both", "secure", "plain"), default="both")
    args = parser.parse_args(argv)
    setups = ("secure", "plain") if args.setup == "both" else (args.setup,)
    results: list[Result] = []
    for setup in setups:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as directory:
            cluster = DevCluster(Path(directory), find_free_base_port(), secure=setup == "secure")
            cluster.start()
            try:
                security, options = cluster.client_security(), cluster.redis_py_options()
                work = run_all(cluster.startup_nodes, args.ops, setup, security, options)
                results += uvloop.run(work)
            finally:
                cluster.stop()
    print(table(results))


if __name__ == "__main__":
    main()
