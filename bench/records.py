"""The topic library's benchmark: stream to store on one core, 10⁸ scans, the four questions.

    python -m bench.records [--phase ingest|lag|load|queries|all] [--rows 100000000]

Phases (``all`` runs them in this order; every figure is a list of rounds and their median):

* ``ingest``: a throwaway 3 + 3 Redis Cluster (TLS, ACL) is filled with ``--entries`` packed
  scans across the 13 cities' streams (not timed), then this process is pinned to one core
  (every thread, chDB's included) and the records consumer runs cycles until the streams are
  drained. Entries/s of wall time, and entries per CPU-second of the whole process
  (``getrusage(RUSAGE_SELF)``), also counting the merges that follow until the engine is idle.
  Goal: at least 150,000 scans/s on one core.
* ``lag``: writers (``bench.scanfeed``, another process, on the other core with Redis) append
  at ``--lag-rate`` scans a second (Suzhou's design peak is 15 % of 90,000) while the consumer
  runs as the records service runs it; the age of the oldest waiting entry and the entries
  waiting (``codeengine_records_lag_*``) are sampled every ``LAG_SAMPLE_S``.
* ``load``: ``--rows`` scans over 28 days generated inside the engine (``INSERT .. SELECT ..
  FROM numbers()``, :mod:`bench.records_data`) into ``--path`` (kept, and reused while it
  holds the same rows; ``--reload`` forces it). Load time, rows, bytes on disk and per row.
* ``queries``: 20 different queries each of a popular venue's hour, a typical venue's hour, a
  subject's 14 days and a city's per-minute counts of a day, and contacts of several subjects
  over 14 days, picked from the data with a seeded RNG; median and max of each.

The JSON goes to ``bench/results/records-<UTC stamp>.json`` and ``records-latest.json``.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import uvloop

from bench import records_data, records_queries
from bench.scanfeed import fill
from codeengine.code.errors import StoreUnavailable
from codeengine.code.model import CITIES
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.records.consumer import RecordsConsumer
from codeengine.records.engine import EngineError, RecordsEngine, open_engine
from codeengine.records.schema import SCANS
from codeengine.settings import RecordsSettings
from codeengine.store.cluster import FastCluster

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCHEMA = "codeengine.bench.records/1"
PHASES = ("ingest", "lag", "load", "queries")

INGEST_GOAL_PER_S = 150_000
DESIGN_SCANS_PER_S = 90_000
"""The province's verifies a second in the daily mix at the design target (docs/capacity.md)."""
LAG_SAMPLE_S = 0.25
INGEST_DATABASE = "bench_ingest"
LOAD_DATABASE = "bench"
MERGES_IDLE_POLL_S = 0.2
NODE_TIMEOUT_MS = 30_000
MAX_FAILED_CYCLES = 20
RETRY_PAUSE_S = 1.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pin(pid: int, cores: set[int]) -> None:
    """Pin every thread of a process (a thread made later inherits its maker's cores)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cores)


def _wait_replicas(cluster: DevCluster) -> None:
    """Until every replica has what its master has: the fill's replication is the fill's work,
    not the drain's (on two cores the replicas catch up on the core Redis shares)."""
    nodes = [
        redis.Redis(host=host, port=port, **cluster.redis_py_options())
        for host, port in cluster.startup_nodes
    ]
    try:
        while True:
            behind = 0
            for node in nodes:
                info = node.info("replication")
                if info.get("role") == "master":
                    offset = int(info["master_repl_offset"])
                    for key, value in info.items():
                        if key.startswith("slave") and isinstance(value, dict):
                            behind += offset - int(value["offset"])
            if not behind:
                return
            time.sleep(MERGES_IDLE_POLL_S)
    finally:
        for node in nodes:
            node.close()


def _processes_cpu_s(cluster: DevCluster) -> float:
    """CPU seconds the cluster's redis-servers have used (all their threads)."""
    ticks = 0
    for proc in cluster.processes():
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {"rounds": list(values), "median": statistics.median(values)}


@contextlib.contextmanager
def _cluster(workdir: Path) -> Iterator[DevCluster]:
    cluster = DevCluster(workdir / "cluster", find_free_base_port()).start()
    try:
        _patient(cluster)
        yield cluster
    finally:
        cluster.stop()


def _patient(cluster: DevCluster) -> None:
    """A node timeout of ``NODE_TIMEOUT_MS`` on every node: the dev cluster's 2 s (which the
    failover drills need) failed a master over when six nodes shared one busy core, and a
    failover in the middle of a run delivers entries again that the old master had delivered
    (its last acknowledgements had not reached the replica)."""
    for host, port in cluster.startup_nodes:
        node = redis.Redis(host=host, port=port, **cluster.redis_py_options())
        try:
            node.config_set("cluster-node-timeout", NODE_TIMEOUT_MS)
        finally:
            node.close()


def _records_client(cluster: DevCluster) -> FastCluster:
    return FastCluster(
        cluster.startup_nodes, security=cluster.client_security("records"), deadline_s=10.0
    )


def _fresh_database(engine: RecordsEngine, database: str) -> RecordsEngine:
    engine.command(f"DROP DATABASE IF EXISTS {database}")
    engine.database = database
    engine.ensure_schema()
    return engine


def _wait_merges(engine: RecordsEngine) -> None:
    """Until the engine merges nothing of the database (the end of the work an insert leaves)."""
    while engine.rows(
        "SELECT count() FROM system.merges WHERE database = {db:String}", {"db": engine.database}
    )[0][0]:
        time.sleep(MERGES_IDLE_POLL_S)


class Pinning:
    """This process on one core, Redis (and the writers) on the others, if there are two."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cpus = sorted(os.sched_getaffinity(0))
        self._cluster = cluster
        self.pinned = len(self.cpus) >= 2
        self.consumer_core = self.cpus[0]
        self.other_cores = set(self.cpus[1:]) or set(self.cpus)

    def apply(self) -> None:
        if not self.pinned:
            return
        _pin(os.getpid(), {self.consumer_core})
        for proc in self._cluster.processes():
            _pin(proc.pid, self.other_cores)

    def release(self) -> None:
        _pin(os.getpid(), set(self.cpus))
        for proc in self._cluster.processes():
            _pin(proc.pid, set(self.cpus))

    def describe(self) -> dict[str, Any]:
        if not self.pinned:
            return {"pinned": False, "note": "one core available: nothing pinned"}
        return {
            "pinned": True,
            "consumer_core": self.consumer_core,
            "redis_and_writer_cores": sorted(self.other_cores),
        }


def _settings(path: Path, database: str, batch_max: int) -> RecordsSettings:
    return RecordsSettings(path=str(path), database=database, batch_max=batch_max)


async def _drain(consumer: RecordsConsumer) -> tuple[int, int, int]:
    """Cycles until the streams are drained: (entries moved, cycles, cycles failed).

    A failed cycle is taken again, as the records service takes it: on two cores the six
    redis-servers share one, and a call can outlast its deadline while the replicas catch up.
    """
    moved = cycles = failed = 0
    while True:
        try:
            step = await consumer.cycle()
        except (StoreUnavailable, EngineError):
            failed += 1
            if failed > MAX_FAILED_CYCLES:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        if not step:
            return moved, cycles, failed
        moved += step
        cycles += 1


def ingest(
    engine: RecordsEngine, cluster: DevCluster, path: Path, opts: argparse.Namespace
) -> dict[str, Any]:
    """Fill the streams, then drain them on one core; ``--rounds`` times."""
    pinning = Pinning(cluster)
    rounds: list[dict[str, Any]] = []
    for number in range(opts.rounds):
        _fresh_database(engine, INGEST_DATABASE)
        now_ms = int(time.time() * 1000)
        filled = uvloop.run(fill(cluster, opts.entries, opts.seed + number, now_ms))
        _wait_replicas(cluster)
        pinning.apply()
        try:
            rounds.append(uvloop.run(_ingest_round(engine, cluster, path, opts.batch_max)))
        finally:
            pinning.release()
        rounds[-1]["filled"] = filled
        if rounds[-1]["entries"] != filled:
            raise RuntimeError(f"{filled} entries written, {rounds[-1]['entries']} stored")
        print(
            f"ingest round {number + 1}: {rounds[-1]['entries']:,} entries in "
            f"{rounds[-1]['wall_s']:.2f} s: {rounds[-1]['entries_per_s']:,.0f}/s, "
            f"{rounds[-1]['entries_per_cpu_s']:,.0f} per CPU-s "
            f"({rounds[-1]['entries_per_cpu_s_with_merges']:,.0f} with merges)",
            flush=True,
        )
    per_s = [r["entries_per_s"] for r in rounds]
    return {
        "entries": opts.entries,
        "batch_max": opts.batch_max,
        "pinning": pinning.describe(),
        "rounds": rounds,
        "entries_per_s": _summary(per_s),
        "entries_per_cpu_s": _summary([r["entries_per_cpu_s"] for r in rounds]),
        "entries_per_cpu_s_with_merges": _summary(
            [r["entries_per_cpu_s_with_merges"] for r in rounds]
        ),
        "goal": {
            "entries_per_s": INGEST_GOAL_PER_S,
            "met": statistics.median(per_s) >= INGEST_GOAL_PER_S,
        },
    }


async def _ingest_round(
    engine: RecordsEngine, cluster: DevCluster, path: Path, batch_max: int
) -> dict[str, Any]:
    client = _records_client(cluster)
    await client.start()
    try:
        settings = _settings(path, engine.database, batch_max)
        consumer = RecordsConsumer(client, engine, settings, CITIES)
        await consumer.prepare()
        redis_cpu = _processes_cpu_s(cluster)
        cpu, started = _cpu_s(), time.perf_counter()
        moved, cycles, failed = await _drain(consumer)
        wall_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu
        redis_cpu_s = _processes_cpu_s(cluster) - redis_cpu
        await asyncio.to_thread(_wait_merges, engine)
        cpu_with_merges_s = _cpu_s() - cpu
    finally:
        await client.aclose()
    # What the table holds: a cycle taken again after a failure moves its entries uncounted.
    moved = engine.count(SCANS)
    return {
        "entries": moved,
        "cycles": cycles,
        "cycles_failed": failed,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_s_with_merges": cpu_with_merges_s,
        "redis_cpu_s": redis_cpu_s,
        "entries_per_s": moved / wall_s,
        "entries_per_cpu_s": moved / cpu_s,
        "entries_per_cpu_s_with_merges": moved / cpu_with_merges_s,
    }


def lag(
    engine: RecordsEngine, cluster: DevCluster, path: Path, opts: argparse.Namespace
) -> dict[str, Any]:
    """The lag a healthy consumer shows while writers append at ``--lag-rate``."""
    pinning = Pinning(cluster)
    rounds = []
    for number in range(opts.rounds):
        _fresh_database(engine, INGEST_DATABASE)
        pinning.apply()
        try:
            rounds.append(uvloop.run(_lag_round(engine, cluster, path, pinning, opts, number)))
        finally:
            pinning.release()
        r = rounds[-1]
        print(
            f"lag round {number + 1}: writers {r['written_per_s']:,.0f} scans/s; oldest waiting "
            f"p99 {r['oldest_age_s']['p99']:.2f} s, max {r['oldest_age_s']['max']:.2f} s; "
            f"entries waiting p99 {r['entries_waiting']['p99']:,.0f}, "
            f"max {r['entries_waiting']['max']:,.0f}",
            flush=True,
        )
    return {
        "target_rate_per_s": opts.lag_rate,
        "seconds": opts.lag_seconds,
        "sample_s": LAG_SAMPLE_S,
        "poll_ms": RecordsSettings().poll_ms,
        "batch_max": opts.batch_max,
        "pinning": pinning.describe(),
        "rounds": rounds,
        "written_per_s": _summary([r["written_per_s"] for r in rounds]),
        "oldest_age_s_max": _summary([r["oldest_age_s"]["max"] for r in rounds]),
        "oldest_age_s_p99": _summary([r["oldest_age_s"]["p99"] for r in rounds]),
        "entries_waiting_max": _summary([r["entries_waiting"]["max"] for r in rounds]),
        "entries_waiting_p99": _summary([r["entries_waiting"]["p99"] for r in rounds]),
        "suzhou_entries_waiting_max": _summary(
            [r["suzhou_entries_waiting"]["max"] for r in rounds]
        ),
    }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"p50": statistics.median(ordered), "p99": p99, "max": ordered[-1]}


async def _lag_round(
    engine: RecordsEngine,
    cluster: DevCluster,
    path: Path,
    pinning: Pinning,
    opts: argparse.Namespace,
    number: int,
) -> dict[str, Any]:
    client = _records_client(cluster)
    await client.start()
    settings = _settings(path, engine.database, opts.batch_max)
    consumer = RecordsConsumer(client, engine, settings, CITIES)
    await consumer.prepare()
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scanfeed", "--cluster-dir", str(cluster.directory),
        "--base-port", str(cluster.base_port), "--rate", str(opts.lag_rate),
        "--seconds", str(opts.lag_seconds), "--seed", str(opts.seed + 100 + number),
        stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    if pinning.pinned:
        _pin(writer.pid, pinning.other_cores)
    ages: list[float] = []
    waiting: list[float] = []
    suzhou: list[float] = []
    try:
        while writer.returncode is None:
            lags = [x for x in await consumer.measure_lag() if x.feed == "scans"]
            ages.append(max(x.oldest_age_s for x in lags))
            waiting.append(sum(x.entries for x in lags))
            suzhou.append(sum(x.entries for x in lags if x.city == 320500))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.wait(), LAG_SAMPLE_S)
        out, _ = await writer.communicate()
    finally:
        stop.set()
        await running
        await client.aclose()
    report = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "written": report["written"],
        "written_per_s": report["written"] / report["seconds"],
        "samples": len(ages),
        "committed": consumer.committed,
        "oldest_age_s": _percentiles(ages),
        "entries_waiting": _percentiles(waiting),
        "suzhou_entries_waiting": _percentiles(suzhou),
    }


def load(engine: RecordsEngine, opts: argparse.Namespace) -> dict[str, Any]:
    """Generate ``--rows`` scans over 28 days in the engine, unless they are there already."""
    engine.database = LOAD_DATABASE
    engine.ensure_schema()
    existing = engine.count(SCANS)
    reused = existing == opts.rows and not opts.reload
    load_s = cpu_s = None
    if not reused:
        _fresh_database(engine, LOAD_DATABASE)
        cpu, started = _cpu_s(), time.perf_counter()
        for day in range(records_data.DAYS):
            engine.command(records_data.insert_day(LOAD_DATABASE, day, opts.rows))
            print(f"load: day {day + 1} of {records_data.DAYS}", flush=True)
        inserted_s = time.perf_counter() - started
        _wait_merges(engine)
        load_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu
        print(f"load: {opts.rows:,} rows in {load_s:.1f} s (inserts {inserted_s:.1f} s)")
    # The load's own figures stay beside the data, so that a run reusing it reports them too.
    marker = opts.path / "bench-load.json"
    if reused and marker.exists():
        recorded = json.loads(marker.read_text())
        if recorded.get("rows") == opts.rows:
            load_s, cpu_s = recorded["load_s"], recorded["load_cpu_s"]
    elif not reused:
        marker.write_text(json.dumps({"rows": opts.rows, "load_s": load_s, "load_cpu_s": cpu_s}))
    days = engine.days(SCANS)
    rows = sum(n for _, n, _ in days)
    size = sum(b for _, _, b in days)
    return {
        "rows": rows,
        "days": len(days),
        "reused": reused,
        "load_s": load_s,
        "load_cpu_s": cpu_s,
        "rows_per_s": rows / load_s if load_s else None,
        "bytes_on_disk": size,
        "bytes_per_row": size / rows if rows else None,
        "per_day": [{"day": d, "rows": n, "bytes": b} for d, n, b in days],
        "generator": records_data.describe(opts.rows),
    }


def machine_facts() -> dict[str, Any]:
    import importlib.metadata
    import platform

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "nproc": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "chdb": importlib.metadata.version("chdb-core"),
        "clickhouse_connect": importlib.metadata.version("clickhouse-connect"),
        "git_commit": commit or None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(document: Mapping[str, Any], output_dir: Path) -> Path:
    """The results as ``records-<stamp>.json`` and ``records-latest.json``; the stamped path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    path = output_dir / f"records-{stamp}.json"
    path.write_text(text)
    (output_dir / "records-latest.json").write_text(text)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.records", description=__doc__.splitlines()[0])
    parser.add_argument("--phase", default="all", choices=(*PHASES, "all"))
    parser.add_argument("--rows", type=int, default=100_000_000, help="scans the load generates")
    parser.add_argument(
        "--entries", type=int, default=None, help="stream entries an ingest round drains "
        "(default: 3,000,000, or --rows if fewer)",
    )  # fmt: skip
    parser.add_argument("--batch-max", type=int, default=RecordsSettings().batch_max)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lag-rate", type=float, default=DESIGN_SCANS_PER_S)
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--queries", type=int, default=records_queries.REPEATS)
    parser.add_argument("--contacts", type=int, default=records_queries.CONTACT_SUBJECTS)
    parser.add_argument("--path", type=Path, default=ROOT / "var" / "bench-records")
    parser.add_argument("--reload", action="store_true", help="load again even if loaded")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    if opts.entries is None:
        opts.entries = min(3_000_000, opts.rows)
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the phases asked for; print each figure; save the JSON."""
    opts = parse_args(argv)
    phases = PHASES if opts.phase == "all" else (opts.phase,)
    opts.path.mkdir(parents=True, exist_ok=True)
    # chDB keeps one engine a process: every phase uses this one, each in a database of its own.
    engine = open_engine(_settings(opts.path, LOAD_DATABASE, opts.batch_max))
    document: dict[str, Any] = {"schema": SCHEMA, "machine": machine_facts(), "config": {
        "phases": list(phases), "rows": opts.rows, "entries": opts.entries,
        "batch_max": opts.batch_max, "rounds": opts.rounds, "lag_rate": opts.lag_rate,
        "lag_seconds": opts.lag_seconds, "queries": opts.queries, "seed": opts.seed,
    }}  # fmt: skip
    started = time.monotonic()
    try:
        if {"ingest", "lag"} & set(phases):
            with (
                tempfile.TemporaryDirectory(prefix="bench-records-") as tmp,
                _cluster(Path(tmp)) as cluster,
            ):
                if "ingest" in phases:
                    document["ingest"] = ingest(engine, cluster, opts.path, opts)
                if "lag" in phases:
                    document["lag"] = lag(engine, cluster, opts.path, opts)
            engine.command(f"DROP DATABASE IF EXISTS {INGEST_DATABASE}")
        if "load" in phases:
            document["load"] = load(engine, opts)
        if "queries" in phases:
            engine.database = LOAD_DATABASE
            document["queries"] = records_queries.measure(engine, opts, _summary)
    finally:
        engine.close()
    document["took_s"] = time.monotonic() - started
    path = save(document, opts.output_dir)
    print(f"saved {path} (and records-latest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
