"""Bulk conversion rate: a generated file of risk records imported into a real cluster.

    python -m bench.importer [--rows 1000000] [--people 250000] [--bad-every 100] [--no-changes]
                             [--profile international|national]

Writes a CSV of ``--rows`` records (every person gets close contact, a risk-area visit, a
positive and a negative test, in that order; one row in ``--bad-every`` is malformed), starts
a throwaway 3 + 3 Redis Cluster, and imports the file exactly as ``codeengine convert import``
does: streamed, checked row by row, applied in chunks of 2,000 (a Lua script call per primary
and 250 rows), every chunk acknowledged by a replica (``WAIT``), every changed row queued for
the change log and written to its city's change stream (``--no-changes``: without the change
log, as before it existed). Prints and saves rows/s to
``bench/results/import-latest.json``; the goal is 1,000,000 records in under 60 s. With
``--profile NAME`` the pseudonyms, record seals and audit chain are keyed with that profile's
MAC (national: HMAC-SM3) and the JSON goes to ``import-NAME-latest.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import uvloop
from prometheus_client import REGISTRY

from bench.record import save_latest
from codeengine.code.identifiers import make_resident_id
from codeengine.code.profile import ProfileName, profile_named
from codeengine.code.rules import load_rules
from codeengine.code.seal import MACKeyset
from codeengine.code.secret import Secret
from codeengine.keyfiles import new_mac_keyset
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.settings import ChangeLogSettings, ServiceSettings
from codeengine.store.adapters._sealed import StoreKeys
from codeengine.store.batches import Importer
from codeengine.store.redisstore import RedisStore, StoreSettings
from codeengine.web.worker import tune_gc
from issuer.changelog import ChangeLogWriter

GOAL_ROWS, GOAL_S = 1_000_000, 60.0
TYPES = ("close_contact", "risk_area_visit", "positive", "negative_test")
CITIES = (320100, 320200, 320500, 321300)


def write_file(path: Path, rows: int, people: int, bad_every: int, now: int) -> int:
    """The CSV; returns how many rows are malformed."""
    first = date(1950, 1, 1)
    ids = [
        make_resident_id("320106", first + timedelta(days=n // 900), 100 + n % 900)
        for n in range(people)
    ]
    bad = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("identifier,record_type,event_time,source,city\n")
        for i in range(rows):
            if bad_every and i % bad_every == bad_every - 1:
                out.write(f"{ids[i % people]},rumour,{now},bench,320100\n")
                bad += 1
                continue
            kind = TYPES[(i // people) % len(TYPES)]
            out.write(f"{ids[i % people]},{kind},{now - 86400},bench,{CITIES[i % 4]}\n")
    return bad


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cluster_cpu_s(cluster: DevCluster) -> float:
    total = 0
    for proc in cluster.processes():
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _keyset(profile: str) -> MACKeyset:
    """A fresh MAC keyset under the profile's MAC, as the key files load for that profile."""
    fresh = new_mac_keyset(os.urandom)
    return MACKeyset(fresh.current, fresh.keys, profile_named(profile).mac)


async def _import(
    cluster: DevCluster, path: Path, changes: bool, profile: str
) -> tuple[object, float, float, int]:
    settings = StoreSettings(
        nodes=tuple(cluster.startup_nodes),
        write_deadline_ms=5000,
        security=cluster.client_security(),
    )
    store = RedisStore(settings)
    # Records and audit entries are sealed and MACed as an issuer's importer does.
    store.keys = StoreKeys(_keyset(profile), _keyset(profile))
    writer = ChangeLogWriter(store, ChangeLogSettings()) if changes else None
    if writer is not None:
        store.changes = writer.add_packed
        writer.start()
    try:
        importer = Importer(
            store,
            load_rules(),
            Secret(os.urandom(32)),
            mac=profile_named(profile).mac,
            batch_id="bench",
            actor="bench",
        )
        cpu, started = time.process_time(), time.perf_counter()
        report = await importer.run(_lines(path), "csv")
        if writer is not None:
            await writer.stop()  # as the command does before it closes the store
        logged = int(REGISTRY.get_sample_value("codeengine_changes_logged_total") or 0)
        return report, time.perf_counter() - started, time.process_time() - cpu, logged
    finally:
        await store.close()


def main() -> None:
    """Generate, import, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=GOAL_ROWS)
    parser.add_argument("--people", type=int, default=250_000)
    parser.add_argument("--bad-every", type=int, default=100)
    parser.add_argument("--no-changes", action="store_true", help="keep no change log")
    parser.add_argument(
        "--profile",
        choices=[p.value for p in ProfileName],
        default=None,
        help="the crypto.profile to key pseudonyms, seals and the audit chain with "
        "(default international; named, the JSON goes to import-PROFILE-latest.json)",
    )
    args = parser.parse_args()
    profile = args.profile or ProfileName.INTERNATIONAL.value
    now = int(time.time())
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        path = Path(tmp) / "records.csv"
        bad = write_file(path, args.rows, args.people, args.bad_every, now)
        size = path.stat().st_size
        cluster = DevCluster(Path(tmp) / "cluster", find_free_base_port()).start()
        try:
            redis_before = _cluster_cpu_s(cluster)
            # As `codeengine convert import` does before it imports.
            tune_gc(ServiceSettings().gc_young_threshold)
            work = _import(cluster, path, not args.no_changes, profile)
            report, wall_s, client_cpu_s, changes = uvloop.run(work)
            redis_cpu_s = _cluster_cpu_s(cluster) - redis_before
        finally:
            cluster.stop()
    rate = args.rows / wall_s
    summary = report.to_json(with_errors=False)  # type: ignore[attr-defined]
    assert summary["bad"] == bad, (summary["bad"], bad)
    print(f"{profile} profile: {args.rows:,} rows ({bad:,} bad, {size / 1e6:.0f} MB) in "
          f"{wall_s:.1f} s: {rate:,.0f} rows/s; importer CPU {client_cpu_s:.1f} s, "
          f"Redis CPU {redis_cpu_s:.1f} s; {changes:,} changes logged")  # fmt: skip
    goal_rate = GOAL_ROWS / GOAL_S
    print(f"goal {GOAL_ROWS:,} rows in {GOAL_S:.0f} s ({goal_rate:,.0f} rows/s): "
          f"{'met' if rate >= goal_rate else 'NOT met'}")  # fmt: skip
    measured = {
        "profile": profile,
        "rows": args.rows,
        "people": args.people,
        "bad_rows": bad,
        "file_bytes": size,
        "wall_s": wall_s,
        "rows_per_s": rate,
        "importer_cpu_s": client_cpu_s,
        "redis_cpu_s": redis_cpu_s,
        "change_log": not args.no_changes,
        "changes_logged": changes,
        "report": summary,
        "goal": {"rows": GOAL_ROWS, "seconds": GOAL_S, "met": rate >= goal_rate},
    }
    # Without --profile the figures keep their file; a named profile's go to a file of its own,
    # so that a pair of profiles measured together stays together.
    kind = "import" if args.profile is None else f"import-{args.profile}"
    save_latest(kind, "bench.importer", {"nproc": os.cpu_count()}, measured)


if __name__ == "__main__":
    main()
