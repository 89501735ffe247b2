"""Scan stream entries as the verifiers write them, for the records benchmark.

    python -m bench.scanfeed --cluster-dir DIR --base-port PORT --rate 90000 --seconds 30

Run as a command, it is the writers of the lag measurement: it appends generated scans to the
13 cities' streams at ``--rate`` scans a second for ``--seconds``, shared among the cities by
residents (Suzhou's 15 % of 90,000 is about 13,500 a second), every ``FLUSH_MS`` as the
verifiers' scan logs flush (one script call per city and ``FLUSH_BATCH`` entries), and prints
what it wrote as one JSON line. :func:`fill` is the same writing, as fast as it goes, for the
backlog the ingest measurement drains.
"""

from __future__ import annotations

__all__ = ["CITY_SHARES", "ScanMaker", "fill", "main"]

import argparse
import asyncio
import base64
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import uvloop

from codeengine.code.cities import load_cities
from codeengine.code.scans import PackedScan, ScanEntry
from codeengine.ops.devcluster import DevCluster
from codeengine.store.redisstore import RedisStore, StoreSettings
from codeengine.store.streamlog import FLUSH_BATCH

FLUSH_MS = 100
"""How often the writers flush: each verifier worker's ``scan_flush_ms`` is of this order."""
MAX_AGE_MS = 3_600_000
"""The streams' age cap while the benchmark writes (``append_scans``' ``max_age_ms``): an hour,
so nothing it writes is trimmed before it is read."""
FILL_CONCURRENCY = 8
"""Calls of ``append_scans`` in flight while filling."""

CITY_SHARES: Mapping[int, float] = {
    int(code): city.residents_millions / sum(c.residents_millions for c in load_cities().values())
    for code, city in load_cities().items()
}
"""Each city's share of the province's scans, by residents."""


class ScanMaker:
    """Plausible scans: skewed venues and subjects, mostly VALID and green; seeded."""

    def __init__(self, seed: int, venues_per_city: int = 20_000, subjects: int = 400_000) -> None:
        self._random = random.Random(seed)
        self._venues = venues_per_city
        # Pseudonyms: 16 URL-safe base64 characters of 12 bytes, as a subject's keyed hash is.
        self._subjects = [
            base64.urlsafe_b64encode(self._random.randbytes(12)).decode() for _ in range(subjects)
        ]
        self._cities = list(CITY_SHARES)
        self._weights = list(CITY_SHARES.values())

    def city_counts(self, total: int) -> dict[int, int]:
        """``total`` scans shared among the cities by residents (rounded, at least 0)."""
        return {city: round(total * share) for city, share in CITY_SHARES.items()}

    def packed(self, city: int, count: int, at_ms: int) -> list[PackedScan]:
        """``count`` scans of ``city`` at about ``at_ms``, packed as the verifiers write them."""
        rnd = self._random.random
        venues, subjects = self._venues, self._subjects
        out: list[PackedScan] = []
        for i in range(count):
            venue = int(venues * rnd() ** 3)
            roll = rnd()
            reason, colour = (
                ("VALID", "green")
                if roll < 0.97
                else ("VALID", "yellow")
                if roll < 0.985
                else ("VALID", "red")
                if roll < 0.988
                else ("EXPIRED", "")
            )
            entry = ScanEntry(
                f"T{city}-{venue:06d}-{i % 4}",
                f"V{city}-{venue:06d}",
                city,
                at_ms,
                subjects[int(rnd() * len(subjects))],
                reason,
                colour,
            )
            out.append(entry.packed())
        return out


def _store(cluster: DevCluster) -> RedisStore:
    return RedisStore(
        StoreSettings(
            nodes=tuple(cluster.startup_nodes),
            write_deadline_ms=10_000,
            security=cluster.client_security(),
        )
    )


async def _append(store: RedisStore, batch: list[PackedScan]) -> int:
    failed = await store.append_scans(batch, MAX_AGE_MS, os.urandom(8).hex())
    if failed:
        raise RuntimeError(f"{len(failed)} scans were not written")
    return len(batch)


async def fill(cluster: DevCluster, total: int, seed: int, now_ms: int) -> int:
    """Append about ``total`` scans to the cities' streams as fast as they go; how many."""
    maker = ScanMaker(seed)
    store = _store(cluster)
    written = 0
    try:
        chunks: list[list[PackedScan]] = []
        for city, count in maker.city_counts(total).items():
            for start in range(0, count, FLUSH_BATCH * 8):
                size = min(FLUSH_BATCH * 8, count - start)
                chunks.append(maker.packed(city, size, now_ms + start))
        for first in range(0, len(chunks), FILL_CONCURRENCY):
            group = chunks[first : first + FILL_CONCURRENCY]
            written += sum(await asyncio.gather(*(_append(store, c) for c in group)))
    finally:
        await store.close()
    return written


async def write_at_rate(cluster: DevCluster, rate: float, seconds: float, seed: int) -> int:
    """Append ``rate`` scans a second for ``seconds``, a flush every ``FLUSH_MS``; how many.

    A flush that falls behind is followed at once by the next, so a slow moment is caught up
    rather than lost; the JSON line says what rate was reached.
    """
    maker = ScanMaker(seed)
    store = _store(cluster)
    per_flush = maker.city_counts(round(rate * FLUSH_MS / 1000))
    written = 0
    started = time.monotonic()
    flushes = 0
    try:
        while time.monotonic() - started < seconds:
            due = started + flushes * FLUSH_MS / 1000
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            flushes += 1
            at_ms = int(time.time() * 1000)
            calls = []
            for city, count in per_flush.items():
                packed = maker.packed(city, count, at_ms)
                calls += [packed[i : i + FLUSH_BATCH] for i in range(0, len(packed), FLUSH_BATCH)]
            written += sum(await asyncio.gather(*(_append(store, c) for c in calls)))
    finally:
        await store.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Write at a rate; print ``{"written": N, "seconds": S}``."""
    parser = argparse.ArgumentParser(prog="bench.scanfeed", description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, required=True)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    cluster = DevCluster(args.cluster_dir, args.base_port)
    started = time.monotonic()
    written = uvloop.run(write_at_rate(cluster, args.rate, args.seconds, args.seed))
    print(json.dumps({"written": written, "seconds": time.monotonic() - started}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
