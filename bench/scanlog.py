"""The most scans one verifier worker's scan-log writer takes, on a throwaway Redis Cluster.

    python -m bench.scanlog [--step-s 3] [--lag-ms 0,20] [--in-flight 1,8]

The writer (``verifier.scanlog.ScanLogWriter``, the services' flush interval and buffer) runs
on uvloop as in a worker, against a secure 3 + 3 cluster (TLS, the services' ACL user). A
producer on the same loop adds scans at a paced rate (rate x elapsed time, so a late loop turn
adds more at once, as verifies do), rising step by step; a step passes when no scan was
dropped (a writer that falls behind fills its buffer of 50,000 within a step or two).
``--lag-ms`` makes the loop busy for that long per turn (a worker overloaded with verifies:
each round trip then waits a turn), ``--in-flight`` sets how many batches a flush has out at
once (1: the former writer, one batch after another). Each in-flight bound also reports its
burst rate: a buffer of ``scan_buffer_max`` scans written from full to empty.

It then measures what an entry takes in a stream (``MEMORY USAGE`` over ``XLEN``), for the
stream cap's sizing (docs/configuration.md). The JSON goes to
``bench/results/scanlog-<UTC time>.json`` and ``scanlog-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import uvloop
from prometheus_client import REGISTRY

from codeengine.code.scans import ScanEntry
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.settings import VerifierSettings
from codeengine.store import keyspace
from codeengine.store.redisstore import RedisStore, StoreSettings
from codeengine.store.streamlog import LogPolicy, StreamLogWriter
from verifier.scanlog import SCAN_METRICS

RESULTS = Path(__file__).parent / "results"
CITIES = (320100, 320200, 320300, 320400, 320500, 320600, 320700)
"""Cities the scans spread over: each city is a stream, so a flush has a call per city."""
RATES = (10_000, 20_000, 40_000, 80_000, 120_000, 160_000, 240_000)
"""Scans a second offered, step by step, until a step fails."""
PRODUCER_TICK_S = 0.005
ENTRY = ScanEntry("terminal-0001", "venue-000001", 320500, 1_800_000_000_000,
                  "AAECAwQFBgcICQoL", "VALID", "green")  # fmt: skip
"""About the size of a real scan: 13 and 12 character terminal and venue ids, a pseudonym."""


@dataclass(frozen=True, slots=True)
class Step:
    """One offered rate for one combination."""

    lag_ms: int
    in_flight: int
    rate: int
    offered: int
    dropped: int
    waiting_at_end: int
    passed: bool


@dataclass(frozen=True, slots=True)
class Burst:
    """A full buffer written from full to empty."""

    lag_ms: int
    in_flight: int
    entries: int
    seconds: float
    per_s: float
    cpu_us_per_entry: float


def packed_entries() -> list[tuple[int, bytes]]:
    """One packed entry per city, reused: the writer's cost, not packing's."""
    return [ENTRY._replace(city=city).packed() for city in CITIES]


async def hog(lag_s: float, stop: asyncio.Event) -> None:
    """Keep the loop busy ``lag_s`` per turn, as verifies do in an overloaded worker."""
    while not stop.is_set():
        until = time.perf_counter() + lag_s
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


def dropped_so_far() -> int:
    """The scans this process dropped (the services' counter)."""
    return int(REGISTRY.get_sample_value("codeengine_scans_dropped_total") or 0)


def scan_writer(store: RedisStore, policy: LogPolicy) -> StreamLogWriter:
    """The verifier's scan-log writer with ``policy`` (``ScanLogWriter`` takes settings)."""
    return StreamLogWriter("scan", store.append_scans, policy, SCAN_METRICS)


async def paced_step(writer: StreamLogWriter, rate: int, step_s: float, lag_ms: int) -> Step:
    """Offer ``rate`` scans a second for ``step_s`` with the writer running."""
    entries = packed_entries()
    dropped_before = dropped_so_far()
    stop = asyncio.Event()
    hogging = asyncio.ensure_future(hog(lag_ms / 1000, stop)) if lag_ms else None
    started = time.perf_counter()
    added = 0
    while (elapsed := time.perf_counter() - started) < step_s:
        due = int(rate * elapsed)
        for i in range(added, due):
            writer.add_packed(entries[i % len(entries)])
        added = due
        await asyncio.sleep(PRODUCER_TICK_S)
    stop.set()
    if hogging is not None:
        await hogging
    waiting = len(writer)
    dropped = dropped_so_far() - dropped_before
    # A writer that falls behind fills its buffer and drops: 50,000 scans fill in a few
    # seconds at these rates. What waits at the end says how close it came.
    passed = dropped == 0
    # Let the writer empty its buffer before the next step.
    for _ in range(200):
        if not len(writer):
            break
        await asyncio.sleep(0.05)
    return Step(lag_ms, 0, rate, added, dropped, waiting, passed)


async def burst(store: RedisStore, policy: LogPolicy) -> Burst:
    """Write one full buffer with nothing else on the loop; entries a second and CPU."""
    writer = scan_writer(store, policy)
    entries = packed_entries()
    count = policy.buffer_max
    for i in range(count):
        writer.add_packed(entries[i % len(entries)])
    cpu, wall = time.process_time(), time.perf_counter()
    while len(writer):
        await writer.flush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Burst(0, policy.in_flight, count, wall, count / wall, cpu / count * 1e6)


async def bytes_per_entry(store: RedisStore, cluster: DevCluster) -> dict[str, float]:
    """MEMORY USAGE of one city's stream over its length, and the packed entry's size."""
    key = keyspace.scan_log_key(CITIES[0])
    fast = await store._hot()
    address = fast.primary_for(key)
    assert address is not None
    # The admin user's: the services' user may not run XLEN or MEMORY.
    length = int(cluster.command(address[1], "XLEN", key))
    usage = int(cluster.command(address[1], "MEMORY", "USAGE", key, "SAMPLES", "0"))
    return {
        "stream_entries": length,
        "stream_bytes": usage,
        "bytes_per_entry": usage / length,
        "packed_entry_bytes": len(ENTRY.pack()),
    }


async def run(
    cluster: DevCluster, lags: Sequence[int], in_flights: Sequence[int], step_s: float
) -> dict[str, object]:
    """Every combination: its burst, then its paced steps until one fails."""
    store = RedisStore(
        StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
    )
    settings = VerifierSettings()
    steps: list[Step] = []
    bursts: list[Burst] = []
    try:
        for in_flight in in_flights:
            policy = LogPolicy(
                settings.scan_flush_ms,
                settings.scan_buffer_max,
                settings.scan_log_max_age_s,
                in_flight=in_flight,
            )
            bursts.append(await burst(store, policy))
            for lag_ms in lags:
                writer = scan_writer(store, policy)
                writer.start()
                try:
                    for rate in RATES:
                        step = await paced_step(writer, rate, step_s, lag_ms)
                        steps.append(replace(step, in_flight=in_flight))
                        print(steps[-1], flush=True)
                        if not step.passed:
                            break
                finally:
                    await writer.stop()
        memory = await bytes_per_entry(store, cluster)
    finally:
        await store.close()
    best = {
        f"lag_{lag}ms_in_flight_{n}": max(
            (s.rate for s in steps if s.lag_ms == lag and s.in_flight == n and s.passed),
            default=0,
        )
        for lag in lags
        for n in in_flights
    }
    return {
        "steps": [asdict(s) for s in steps],
        "bursts": [asdict(b) for b in bursts],
        "most_per_s_without_drops": best,
        "memory": memory,
        "step_s": step_s,
        "flush_ms": settings.scan_flush_ms,
        "buffer_max": settings.scan_buffer_max,
        "cities": len(CITIES),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Start a throwaway cluster, measure, write the JSON, stop the cluster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-s", type=float, default=3.0, help="seconds per offered rate")
    parser.add_argument("--lag-ms", default="0,20", help="loop busy time per turn, ms")
    parser.add_argument("--in-flight", default="1,8", help="batches a flush has out at once")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    lags = [int(x) for x in args.lag_ms.split(",")]
    in_flights = [int(x) for x in args.in_flight.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as directory:
        cluster = DevCluster(Path(directory), find_free_base_port(), secure=True)
        cluster.start()
        try:
            result = uvloop.run(run(cluster, lags, in_flights, args.step_s))
        finally:
            cluster.stop()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result["command"] = " ".join(["python -m bench.scanlog", *(argv or sys.argv[1:])])
    text = json.dumps(result, indent=2) + "\n"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"scanlog-{stamp}.json").write_text(text)
    (args.output_dir / "scanlog-latest.json").write_text(text)
    print(json.dumps(result["most_per_s_without_drops"], indent=2))
    print(json.dumps(result["bursts"], indent=2))
    print(json.dumps(result["memory"], indent=2))


if __name__ == "__main__":
    main()
