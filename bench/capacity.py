"""The capacity plan for 200,000 requests a second, computed from a throughput results file.

    python -m bench.capacity [--results bench/results/latest.json] [--output docs/capacity.md]

Nothing in ``docs/capacity.md`` is typed by hand: this command writes it from the per-request
CPU costs that ``python -m bench.http`` measured (``make capacity`` runs it), and a test
checks the page still matches the results file it names.

The arithmetic, for each operation of the daily mix:

* requests/s = target * the operation's share of the mix;
* service cores = requests/s * server CPU µs per request / 10⁶ / planned utilisation;
* Redis cores = requests/s * store CPU µs per request / 10⁶ / planned utilisation.

One worker process per core (SO_REUSEPORT), so processes = cores, rounded up per service.
Redis runs one thread per process, so masters = Redis cores rounded up, at least three, each
with one replica. A backup pool large enough for the largest city's share lets any one city's
primary fail. Locust workers come from the per-core rate docs/performance.md gives.

The records tier (cores and disk for 28 days of scans) comes from what ``python -m
bench.records`` measured, in ``bench/results/records-latest.json``, when that file is there;
the cryptographic profiles' section from a run of both profiles,
``bench/results/profiles-latest.json`` (``bench/capacity_profiles.py``), when that one is.
"""

from __future__ import annotations

__all__ = ["Inputs", "Plan", "largest_city_share", "main", "plan", "records_tier", "render"]

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeengine.code.cities import load_cities

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = Path("bench/results/latest.json")
DEFAULT_OUTPUT = Path("docs/capacity.md")

TARGET_RPS = 200_000
PEAK_FACTOR = 3
UTILISATION = 0.7
"""Planned CPU use of a core: queueing delay grows fast above about 70 %."""
LOCUST_RPS_PER_CORE = 5_700
"""One FastHttpUser worker process per core (docs/performance.md; this class of machine)."""
CORE_BUDGET = 16
MIN_MASTERS = 3

MIX: Mapping[str, float] = {"display": 0.50, "verify": 0.45, "generate": 0.03, "convert": 0.02}
"""The daily mix of ``loadtests/locustfile.py`` (``DailyMixUser``), justified there."""
SERVICE = {"display": "issuer", "generate": "issuer", "convert": "issuer", "verify": "verifier"}
MEASURED_AS = {
    "display": "display",
    "verify": "verify",
    "generate": "generate-new",
    # No wrk scenario converts; a conversion is the same versioned write acknowledged after
    # WAIT as a new subject's, so generate-new's cost stands in for it.
    "convert": "generate-new",
}


@dataclass(frozen=True)
class Inputs:
    """What the plan needs from one results file: per-request CPU of each measured scenario."""

    source: str
    date: str
    commit: str
    machine: str
    server_us: Mapping[str, float]
    store_us: Mapping[str, float]
    rps: Mapping[str, float]
    scale_out: Mapping[str, float]

    @classmethod
    def from_results(cls, document: Mapping[str, Any], source: str) -> Inputs:
        """Read the one-worker rows (the per-core cost) of a ``bench.http`` results file."""
        rows = {r["scenario"]: r for r in document["results"] if r["workers"] == 1}
        needed = {"framework-floor", *MEASURED_AS.values()}
        missing = sorted(needed - rows.keys())
        if missing:
            raise ValueError(f"{source} has no one-worker results for {', '.join(missing)}")
        machine = document.get("machine", {})
        return cls(
            source=source,
            date=str(machine.get("date", "unknown")),
            commit=str(machine.get("git_commit", "unknown")),
            machine=f"{machine.get('nproc', '?')} cores, {machine.get('cpu_model', 'unknown')}",
            server_us={k: float(r["server_cpu_us_per_request"]) for k, r in rows.items()},
            store_us={k: float(r["store_cpu_us_per_request"]) for k, r in rows.items()},
            rps={k: float(r["requests_per_s"]) for k, r in rows.items()},
            scale_out={
                str(s["scenario"]): float(s["efficiency"]) for s in document.get("scale_out", [])
            },
        )


@dataclass(frozen=True)
class Load:
    """One load level's sizing."""

    name: str
    rps: float
    per_operation: Mapping[str, tuple[float, float, float]]
    """Operation: requests/s, service cores, Redis cores."""
    issuer_processes: int
    verifier_processes: int
    redis_masters: int
    redis_replicas: int
    backup_processes: int
    locust_workers: int

    @property
    def service_processes(self) -> int:
        """Issuer and verifier processes, the backup pool included."""
        return self.issuer_processes + self.verifier_processes + self.backup_processes

    @property
    def total_cores(self) -> int:
        """Service processes plus Redis processes (one core each), load generators excluded."""
        return self.service_processes + self.redis_masters + self.redis_replicas


@dataclass(frozen=True)
class Plan:
    """The daily mix and the peak, and whether the daily mix fits the core budget."""

    inputs: Inputs
    daily: Load
    peak: Load
    mean_server_us: float
    floor_us: float

    @property
    def fits_budget(self) -> bool:
        """Whether the daily mix fits in ``CORE_BUDGET`` cores of the measured class."""
        return self.daily.total_cores <= CORE_BUDGET


def largest_city_share() -> float:
    """The largest city's share of the province's traffic, by residents (the city table)."""
    residents = [city.residents_millions for city in load_cities().values()]
    return max(residents) / sum(residents)


def _load(
    name: str, rps: float, inputs: Inputs, measured_as: Mapping[str, str] = MEASURED_AS
) -> Load:
    per_operation: dict[str, tuple[float, float, float]] = {}
    cores = {"issuer": 0.0, "verifier": 0.0}
    redis = 0.0
    for operation, share in MIX.items():
        scenario = measured_as[operation]
        op_rps = rps * share
        service = op_rps * inputs.server_us[scenario] / 1e6 / UTILISATION
        store = op_rps * inputs.store_us[scenario] / 1e6 / UTILISATION
        per_operation[operation] = (op_rps, service, store)
        cores[SERVICE[operation]] += service
        redis += store
    issuer, verifier = math.ceil(cores["issuer"]), math.ceil(cores["verifier"])
    # Any one city's primary may fail: a shared backup pool carries the largest city's share.
    backup = math.ceil((cores["issuer"] + cores["verifier"]) * largest_city_share())
    masters = max(MIN_MASTERS, math.ceil(redis))
    return Load(
        name=name,
        rps=rps,
        per_operation=per_operation,
        issuer_processes=issuer,
        verifier_processes=verifier,
        redis_masters=masters,
        redis_replicas=masters,
        backup_processes=backup,
        locust_workers=math.ceil(rps / LOCUST_RPS_PER_CORE),
    )


def plan(
    inputs: Inputs, target_rps: float = TARGET_RPS, measured_as: Mapping[str, str] = MEASURED_AS
) -> Plan:
    """Size the fleet for ``target_rps`` in the daily mix and at the peak; ``measured_as``
    names the scenario whose cost stands for each operation (e.g. a display that signs)."""
    mean = sum(share * inputs.server_us[measured_as[op]] for op, share in MIX.items())
    return Plan(
        inputs=inputs,
        daily=_load("daily mix", target_rps, inputs, measured_as),
        peak=_load(f"peak ({PEAK_FACTOR}x)", target_rps * PEAK_FACTOR, inputs, measured_as),
        mean_server_us=mean,
        floor_us=inputs.server_us["framework-floor"],
    )


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _verdict(result: Plan) -> list[str]:
    daily = result.daily
    if result.fits_budget:
        return [
            f"The daily mix fits in {CORE_BUDGET} cores of this class: it needs "
            f"{daily.total_cores}."
        ]
    floor_cores = TARGET_RPS * result.floor_us / 1e6
    # Everything a request may cost, service and Redis together, for the mix to fit.
    budget_us = CORE_BUDGET * UTILISATION * 1e6 / TARGET_RPS
    lines = [
        f"**The daily mix does not fit in {CORE_BUDGET} cores of this class: it needs "
        f"{daily.total_cores}.** The cost in the way is the CPU a request takes in the "
        f"service process: {_n(result.mean_server_us, 1)} µs on average over the mix, "
        f"against a budget of {_n(budget_us, 1)} µs a request for service and Redis together "
        f"({CORE_BUDGET} cores at {UTILISATION:.0%} for {TARGET_RPS:,} requests/s).",
        "",
        f"* The framework floor alone (a bare aiohttp + uvloop handler) is "
        f"{_n(result.floor_us, 1)} µs a request: {TARGET_RPS:,} requests/s of nothing but "
        f"that would take {_n(floor_cores, 1)} cores before any work, "
        f"{_n(floor_cores / UTILISATION, 1)} at {UTILISATION:.0%} utilisation.",
    ]
    if result.floor_us >= budget_us:
        lines.append(
            "* The budget is below the framework floor: no handler in this stack can meet it, "
            "whatever it does. Reaching it needs an HTTP layer cheaper than aiohttp's (a "
            "compiled server in front of the Python services), not a faster handler."
        )
    else:
        lines.append(
            f"* The budget leaves {_n(budget_us - result.floor_us, 1)} µs a request above the "
            "framework floor for the engine's own work and Redis."
        )
    return lines


def render(result: Plan, command: str) -> str:
    """The Markdown page."""
    i = result.inputs
    lines = [
        "# Capacity plan: 200,000 requests a second",
        "",
        f"Generated by `{command}` from `{i.source}` (measured {i.date}, commit {i.commit}, "
        f"{i.machine}). Do not edit: rerun the command after `make bench-http`.",
        "",
        "## Inputs (one worker process on one core, from the results file)",
        "",
        "| operation | share of the mix | measured as | service CPU µs/req | Redis CPU µs/req |"
        " req/s per core |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for operation, share in MIX.items():
        scenario = MEASURED_AS[operation]
        lines.append(
            f"| {operation} | {share:.0%} | `{scenario}` | {_n(i.server_us[scenario], 1)} | "
            f"{_n(i.store_us[scenario], 1)} | {_n(i.rps[scenario])} |"
        )
    lines += [
        f"| framework floor | | `framework-floor` | {_n(result.floor_us, 1)} | | "
        f"{_n(i.rps['framework-floor'])} |",
        "",
        f"Mean service CPU over the mix: **{_n(result.mean_server_us, 1)} µs a request**. "
        f"Planned utilisation {UTILISATION:.0%} of each core. Redis CPU counts all six "
        "redis-servers of the test cluster (primaries and replicas) against the masters, "
        "which oversizes them a little. A conversion is measured as a new subject "
        "(`generate-new`): both are one versioned write acknowledged after `WAIT`.",
        "",
    ]
    if i.scale_out:
        lines.append(
            "Scale-out efficiency in the same file (2-worker req/s / (2 * 1-worker req/s)): "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(i.scale_out.items()))
            + ". On a 2-core machine the load generator and Redis share the cores with the "
            "second worker, so these understate what separate machines give; the plan "
            "assumes linear scale-out across machines."
        )
        lines.append("")
    lines += ["## Fleet", "", "| | " + " | ".join(load.name for load in (result.daily, result.peak))
              + " |", "|---|---:|---:|"]  # fmt: skip
    rows: Sequence[tuple[str, str]] = (
        ("requests/s", "rps"),
        ("issuer processes (one core each)", "issuer_processes"),
        ("verifier processes (one core each)", "verifier_processes"),
        (f"backup pool: the largest city's share ({largest_city_share():.1%})", "backup_processes"),
        ("Redis masters", "redis_masters"),
        ("Redis replicas", "redis_replicas"),
        ("**cores, services and Redis**", "total_cores"),
        (f"Locust worker cores ({LOCUST_RPS_PER_CORE:,} req/s each)", "locust_workers"),
    )
    for label, attribute in rows:
        values = [getattr(load, attribute) for load in (result.daily, result.peak)]
        lines.append(f"| {label} | " + " | ".join(_n(v) for v in values) + " |")
    lines += ["", "## Per operation (daily mix)", ""]
    lines += ["| operation | req/s | service cores | Redis cores |", "|---|---:|---:|---:|"]
    for operation, (rps, service, store) in result.daily.per_operation.items():
        lines.append(f"| {operation} | {_n(rps)} | {_n(service, 1)} | {_n(store, 2)} |")
    lines += ["", f"## Does it fit in {CORE_BUDGET} cores?", "", *_verdict(result), ""]
    lines += [
        "## How the numbers are made",
        "",
        "* operation req/s = target * share;",
        "* service cores = req/s * service CPU µs / 10⁶ / utilisation, summed per service and "
        "rounded up: one worker process per core;",
        "* Redis cores likewise from the Redis CPU; masters = that, rounded up, at least "
        f"{MIN_MASTERS}, each with one replica on a core of its own;",
        "* the backup pool is the service cores * the largest city's share of residents "
        "(`configs/cities/`), shared by all cities' backup endpoints, because one city's "
        "primary fails at a time;",
        f"* the peak is {PEAK_FACTOR}x the daily target in the same mix;",
        "* Locust worker cores = req/s / the per-core rate of one FastHttpUser worker.",
        "",
    ]
    return "\n".join(lines)


DEFAULT_RECORDS = Path("bench/results/records-latest.json")
DEFAULT_PROFILES = Path("bench/results/profiles-latest.json")
"""A run of both cryptographic profiles (``python -m bench.http --profiles ...``)."""
RETENTION_DAYS = 28
"""Days of scans the topic library keeps (``records.retention_days``)."""


def records_tier(document: Mapping[str, Any], source: str) -> list[str]:
    """The records tier's section: cores and disk for the design load's scans, from what
    ``python -m bench.records`` measured (rows per CPU-second with merges, bytes per row)."""
    per_cpu_s = float(document["ingest"]["entries_per_cpu_s_with_merges"]["median"])
    bytes_per_row = float(document["load"]["bytes_per_row"])
    rows_loaded = int(document["load"]["rows"])
    date = document.get("machine", {}).get("date", "unknown")
    commit = document.get("machine", {}).get("git_commit", "unknown")
    scans_per_s = TARGET_RPS * MIX["verify"]
    lines = [
        "## Records tier (the topic library)",
        "",
        f"From `{source}` (measured {date}, commit {commit}; `python -m bench.records`): one "
        f"records process stores {_n(per_cpu_s)} scans per CPU-second, stream to store, with "
        f"the merges that followed each drain (median of the rounds), and {rows_loaded:,} "
        "generated scans "
        f"over 28 days take {_n(bytes_per_row, 1)} bytes a row on disk, projections included. "
        "Every verify is one scan.",
        "",
        "| | daily mix | peak (3x) |",
        "|---|---:|---:|",
    ]
    rates = (scans_per_s, scans_per_s * PEAK_FACTOR)
    cores = [math.ceil(rate / per_cpu_s / UTILISATION) for rate in rates]
    disk_tb = [rate * 86_400 * RETENTION_DAYS * bytes_per_row / 1e12 for rate in rates]
    lines += [
        "| scans/s | " + " | ".join(_n(r) for r in rates) + " |",
        f"| records cores (ingest, {UTILISATION:.0%} utilisation) | "
        + " | ".join(_n(c) for c in cores)
        + " |",
        f"| scans kept ({RETENTION_DAYS} days at this rate all day) | "
        + " | ".join(_n(r * 86_400 * RETENTION_DAYS / 1e9, 1) + " billion" for r in rates)
        + " |",
        f"| disk for {RETENTION_DAYS} days, one copy | "
        + " | ".join(_n(tb, 1) + " TB" for tb in disk_tb)
        + " |",
        "",
        "* records cores = scans/s / scans per CPU-second / utilisation, rounded up; queries "
        "come on top (each a fraction of a second of a core, docs/performance.md#records);",
        f"* disk = scans/s * 86,400 * {RETENTION_DAYS} * bytes per row, for one copy (a "
        "replicated cluster keeps two); the design rate all day long is the upper bound, a "
        "real day is quieter at night. The bytes per row were measured at "
        f"{_n(rows_loaded / 28 / 86_400)} scans/s on average, far sparser than the design "
        "rate: a venue's scans lie closer in time at the design rate, which the time column's "
        "delta coding favours, so this is the pessimistic figure.",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Write the capacity page from a results file."""
    parser = argparse.ArgumentParser(prog="bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES)
    args = parser.parse_args(argv)
    results = args.results if args.results.is_absolute() else ROOT / args.results
    try:
        document = json.loads(results.read_text())
        inputs = Inputs.from_results(document, args.results.as_posix())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench.capacity: cannot use {args.results}: {exc}", file=sys.stderr)
        return 2
    page = render(plan(inputs), "python -m bench.capacity")
    # Imported here: the profiles' section builds on this module's plan.
    from bench.capacity_profiles import profiles_tier

    for results, tier in ((args.records, records_tier), (args.profiles, profiles_tier)):
        path = results if results.is_absolute() else ROOT / results
        if not path.exists():
            continue
        try:
            page += "\n" + "\n".join(tier(json.loads(path.read_text()), results.as_posix()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"bench.capacity: cannot use {results}: {exc}", file=sys.stderr)
            return 2
    output = args.output if args.output.is_absolute() else ROOT / args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page)
    print(f"wrote {args.output} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
