"""HTTP throughput of the services beside floors measured in the same run (wrk, real cluster).

    python -m bench.http [--duration S] [--warmup S] [--connections N] [--workers 1,2]
                         [--scenarios display,generate,generate-new] [--rounds R]
                         [--profile NAME | --profiles international,national]

Starts a throwaway Redis Cluster, the floors (``bench/floors.py``) and the issuer as real worker
processes, drives each scenario with wrk, and reports requests/s, p50/p99 latency and server CPU
microseconds per request (``utime + stime`` of the server processes from ``/proc/PID/stat``, over
the measured run, divided by the requests wrk completed). Every operation is shown as a ratio to
the *framework floor* (bare aiohttp + uvloop, small JSON) and the *store floor* (the same plus
one raw RESP GET) of the same worker count, measured minutes apart on the same machine.

The servers, the load and the store are pinned to different cores where the machine has enough
(:func:`plan_pinning`). The results go to ``bench/results/`` as JSON, with the machine's facts.
See ``bench/README.md`` for what each number means.

The cluster is secure, as everywhere by default (TLS, the services' ACL user). Unless
``--no-plain``, at the first worker count display and verify (those of them asked for) each
run again right after their own run, against a second, plain cluster (no TLS, no login) with
servers of its own, and the report gives each one's secure/plain ratio of requests/s
(:func:`security_costs`): what TLS and ACL cost the services.

With ``--profiles``, each cryptographic profile gets a cluster, keys and servers of its own,
and every round measures the floors once, then each scenario in each profile in turn; the JSON
keeps the first profile's figures where a one-profile file has them and each profile's under
``profiles`` (:func:`profile_sections`), in ``profiles-latest.json``.
"""

from __future__ import annotations

__all__ = [
    "GOAL_DISPLAY_VS_FRAMEWORK",
    "SCENARIOS",
    "Goal",
    "Measurement",
    "Pinning",
    "Row",
    "ScaleOut",
    "SecurityCost",
    "WrkStats",
    "figures",
    "format_profiles",
    "format_report",
    "goals",
    "job_notes",
    "main",
    "parse_profiles",
    "parse_wrk",
    "plan_pinning",
    "profile_sections",
    "scale_out",
    "security_costs",
    "stat_cpu_ticks",
    "summarise",
]

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from codeengine.code.identifiers import make_resident_id
from codeengine.code.profile import ProfileName, profile_named
from codeengine.code.suites import DEFAULT_SUITE, SigningSuite
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.ops.devsecrets import DEV_SCOPES, ensure_dev_material
from codeengine.ops.harness import (
    Group,
    HarnessError,
    answers_ok,
    check_alive,
    spawn,
    wait_until,
)
from codeengine.settings import load_settings

BENCH_DIR = Path(__file__).resolve().parent
WRK_DIR = BENCH_DIR / "wrk"
RESULTS_DIR = BENCH_DIR / "results"
SCHEMA = "codeengine.bench.http/1"

GOAL_DISPLAY_VS_FRAMEWORK = 0.6
GOAL_SCENARIOS = ("display", "verify")
"""The operations whose goal is a share of the framework floor (issues 3 and 4)."""
FRAMEWORK, STORE = "framework-floor", "store-floor"
PLAIN_SUFFIX = "-plain"
"""A scenario's name with this suffix ran against the plain cluster."""
GOAL_SECURE_VS_PLAIN = 0.85
"""TLS and ACL may cost display and verify at most 15% of their requests/s."""
SUBJECT_COUNT = 1000
NEW_IDS_PER_S = 8000  # More than generate reaches here; past the list, posts wrap to repeats.
DISPLAY_HALF_LIFE_S = 60  # display_ttl_s / 2 with the default settings the bench starts with.
BENCH_RATE_PER_S = 10_000_000  # Per client: the rate limit must never be what is measured.
WRK_TIMEOUT = "5s"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
SATURATED = 0.85  # Below this share of its cores busy, the server was not the bottleneck.
NOISY = 0.1  # Cores busy with other processes (or stolen) past which a run is flagged noisy.


class BenchError(RuntimeError):
    """The harness could not run: a tool is missing, a server did not start, wrk failed."""


# --- Pure parts: parsing, accounting, ratios, formatting (unit-tested, no I/O). ------------------

_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"
_REQUESTS_RE = re.compile(rf"^\s*(\d+) requests in {_TIME},", re.M)
_RPS_RE = re.compile(r"^Requests/sec:\s*([\d.]+)", re.M)
_LATENCY_RE = re.compile(rf"^\s*Latency\s+{_TIME}\s+{_TIME}\s+{_TIME}", re.M)
_PERCENTILE_RE = re.compile(rf"^\s*(50|75|90|99)(?:\.0+)?%\s+{_TIME}\s*$", re.M)
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_STATUS_RE = re.compile(r"^status (\d{3}): (\d+)$", re.M)
_COUNT_RE = re.compile(r"^count ([a-z][a-z-]*): (\d+)$", re.M)


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNIT_S[unit]


def _ms(value: str, unit: str) -> float:
    return round(_seconds(value, unit) * 1e3, 6)  # wrk prints 2 decimals: no float dust


@dataclass(frozen=True, slots=True)
class WrkStats:
    """What one wrk run reported (``--latency`` output, plus the scripts' status lines)."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_avg_ms: float
    latency_max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: Mapping[str, int] = field(default_factory=dict)
    statuses: Mapping[int, int] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    """What a script counted in the answers (``count NAME: N`` lines), e.g. degraded verdicts."""

    @property
    def errors(self) -> int:
        """Responses that were not 2xx/3xx, and socket errors of every kind."""
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(text: str) -> WrkStats:
    """Parse wrk's ``--latency`` report; BenchError if a line it always prints is missing."""
    requests, rps, latency = (
        _REQUESTS_RE.search(text),
        _RPS_RE.search(text),
        _LATENCY_RE.search(text),
    )
    percentiles = {int(m[1]): _ms(m[2], m[3]) for m in _PERCENTILE_RE.finditer(text)}
    if requests is None or rps is None or latency is None or set(percentiles) != {50, 75, 90, 99}:
        raise BenchError(f"unexpected wrk output:\n{text[-2000:]}")
    sockets = _SOCKET_RE.search(text)
    socket_errors = {}
    if sockets is not None:
        kinds = ("connect", "read", "write", "timeout")
        socket_errors = {kind: int(sockets[i + 1]) for i, kind in enumerate(kinds)}
    non_2xx = _NON_2XX_RE.search(text)
    return WrkStats(
        requests=int(requests[1]),
        duration_s=_seconds(requests[2], requests[3]),
        requests_per_s=float(rps[1]),
        latency_avg_ms=_ms(latency[1], latency[2]),
        latency_max_ms=_ms(latency[5], latency[6]),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=socket_errors,
        statuses={int(m[1]): int(m[2]) for m in _STATUS_RE.finditer(text)},
        counts={m[1]: int(m[2]) for m in _COUNT_RE.finditer(text)},
    )


def stat_cpu_ticks(stat: str) -> int:
    """``utime + stime`` (clock ticks, all threads) from the text of ``/proc/PID/stat``."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # Fields 14 and 15; fields[0] is field 3.


@dataclass(frozen=True, slots=True)
class MachineTicks:
    """The machine-wide CPU counters of ``/proc/stat`` (clock ticks, all cores summed)."""

    busy: int
    """user + nice + system + irq + softirq: time some process or the kernel ran."""
    steal: int
    """Time the hypervisor ran someone else while this machine wanted to run."""
    used_by_core: Mapping[int, int] = field(default_factory=dict)
    """Per core: busy plus steal, i.e. time the core was not free for our servers."""


def parse_proc_stat(text: str) -> MachineTicks:
    """The ``cpu`` lines of ``/proc/stat``: the aggregate, and each core's use."""
    total: MachineTicks | None = None
    by_core: dict[int, int] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *values = line.split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
        busy = user + nice + system + irq + softirq
        if name == "cpu":
            total = MachineTicks(busy, steal)
        else:
            by_core[int(name[3:])] = busy + steal
    if total is None:
        raise BenchError("no aggregate cpu line in /proc/stat")
    return replace(total, used_by_core=by_core)


def cpu_us_per_request(cpu_s: float, requests: int) -> float:
    """CPU microseconds per request; NaN when no request completed."""
    return cpu_s * 1e6 / requests if requests else float("nan")


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which cores the servers, the load (wrk) and the store (redis-servers) may run on.

    ``None`` means not pinned: every core. The Python servers are what is measured, so they get
    cores of their own first; wrk and the redis-servers share the rest.
    """

    server: tuple[int, ...] | None
    load: tuple[int, ...] | None
    store: tuple[int, ...] | None

    @property
    def note(self) -> str:
        """One line saying how the cores were shared."""
        if self.server is None:
            return "not pinned: too few cores for the servers and the load to have their own"
        shared = " (shared)" if self.load == self.store else ""
        return f"servers on cores {_cores(self.server)}; wrk on {_cores(self.load)}; " + (
            f"redis on {_cores(self.store)}{shared}"
        )


def _cores(cores: tuple[int, ...] | None) -> str:
    return "all" if cores is None else ",".join(map(str, cores))


def plan_pinning(cpus: Sequence[int], workers: int) -> Pinning:
    """One core per server worker, then wrk and redis on the rest (split when there are two+)."""
    if len(cpus) <= workers:
        return Pinning(None, None, None)
    server, rest = tuple(cpus[:workers]), tuple(cpus[workers:])
    if len(rest) == 1:
        return Pinning(server, rest, rest)
    half = len(rest) // 2
    return Pinning(server, rest[:half], rest[half:])


@dataclass(frozen=True, slots=True)
class Measurement:
    """One scenario at one worker count: wrk's figures and the CPU the processes spent."""

    scenario: str
    workers: int
    wrk: WrkStats
    server_cpu_s: float
    store_cpu_s: float
    load_cpu_s: float
    server_cores: int
    """How many cores the server processes could use (their pinned set, or all)."""
    pinned: bool = True
    """Whether the servers had cores of their own (else wrk and redis share theirs)."""
    machine_cpu_s: float = 0.0
    """Every process's CPU over the run, ours included (from /proc/stat)."""
    steal_s: float = 0.0
    window_s: float = 0.0
    """Wall time between the CPU snapshots (wrk's run plus its start and exit)."""
    server_cores_used_s: float = 0.0
    """CPU every process (and steal) took on the servers' pinned cores: were they crowded?"""
    notes: tuple[str, ...] = ()
    rounds_rps: tuple[float, ...] = ()
    """Requests/s of every round, when the run had more than one (this is the median one)."""

    @property
    def other_cpu_s(self) -> float:
        """CPU that neither the servers, the store nor wrk spent: other processes' noise."""
        return max(0.0, self.machine_cpu_s - self.server_cpu_s - self.store_cpu_s - self.load_cpu_s)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report: a measurement with its per-request costs and ratios."""

    scenario: str
    workers: int
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    latency_max_ms: float
    server_cpu_us_per_request: float
    store_cpu_us_per_request: float
    load_cpu_us_per_request: float
    server_cores_busy: float
    other_cores_busy: float
    """Cores that other processes kept busy during the run (noise), with steal time."""
    vs_framework_floor: float | None
    vs_store_floor: float | None
    cpu_vs_framework_floor: float | None
    errors: int
    statuses: dict[int, int]
    rounds_requests_per_s: list[float]
    notes: list[str]


def _ratio(value: float, base: float | None) -> float | None:
    return value / base if base else None


def median_round(rounds: Sequence[Measurement]) -> Measurement:
    """Of one scenario's rounds, the one with the median requests/s (the lower of two middles),
    carrying every round's requests/s."""
    if not rounds:
        raise ValueError("no rounds")
    ordered = sorted(rounds, key=lambda m: m.wrk.requests_per_s)
    chosen = ordered[(len(ordered) - 1) // 2]
    if len(rounds) == 1:
        return chosen
    return replace(chosen, rounds_rps=tuple(m.wrk.requests_per_s for m in rounds))


def summarise(measurements: Sequence[Measurement]) -> list[Row]:
    """Per-request costs, and each measurement's ratio to the floors of its own worker count."""
    by_key = {(m.scenario, m.workers): m for m in measurements}
    rows = []
    for m in measurements:
        framework, store = by_key.get((FRAMEWORK, m.workers)), by_key.get((STORE, m.workers))
        server_us = cpu_us_per_request(m.server_cpu_s, m.wrk.requests)
        framework_us = (
            cpu_us_per_request(framework.server_cpu_s, framework.wrk.requests)
            if framework
            else None
        )
        notes = list(m.notes)
        seconds = m.wrk.duration_s or float("inf")
        busy = m.server_cpu_s / seconds
        other = (m.other_cpu_s + m.steal_s) / (m.window_s or seconds)
        if m.pinned and busy < SATURATED * m.server_cores:
            used = m.server_cores_used_s / (m.window_s or seconds)
            if used >= SATURATED * m.server_cores:
                notes.append(
                    f"servers got {busy:.2f} of their {m.server_cores} core(s), which were "
                    f"{used:.2f} busy: other processes crowded them out"
                )
            else:
                notes.append(
                    f"servers {busy:.2f} of {m.server_cores} core(s) busy: not server-bound "
                    "(latency, the load or the store set the pace)"
                )
        if other > NOISY:
            notes.append(f"other processes and steal took {other:.2f} cores: noisy")
        if len(m.rounds_rps) > 1:
            spread = ", ".join(f"{rps:,.0f}" for rps in m.rounds_rps)
            notes.append(f"median of {len(m.rounds_rps)} rounds (req/s: {spread})")
        rows.append(
            Row(
                scenario=m.scenario,
                workers=m.workers,
                requests=m.wrk.requests,
                duration_s=m.wrk.duration_s,
                requests_per_s=m.wrk.requests_per_s,
                p50_ms=m.wrk.p50_ms,
                p90_ms=m.wrk.p90_ms,
                p99_ms=m.wrk.p99_ms,
                latency_max_ms=m.wrk.latency_max_ms,
                server_cpu_us_per_request=server_us,
                store_cpu_us_per_request=cpu_us_per_request(m.store_cpu_s, m.wrk.requests),
                load_cpu_us_per_request=cpu_us_per_request(m.load_cpu_s, m.wrk.requests),
                server_cores_busy=busy,
                other_cores_busy=other,
                vs_framework_floor=_ratio(
                    m.wrk.requests_per_s, framework.wrk.requests_per_s if framework else None
                ),
                vs_store_floor=_ratio(
                    m.wrk.requests_per_s, store.wrk.requests_per_s if store else None
                ),
                cpu_vs_framework_floor=_ratio(server_us, framework_us),
                errors=m.wrk.errors,
                statuses=dict(m.wrk.statuses),
                rounds_requests_per_s=list(m.rounds_rps),
                notes=notes,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Goal:
    """The goal the issue sets, reported and never asserted."""

    workers: int
    ratio: float
    threshold: float
    met: bool
    scenario: str = "display"

    @property
    def text(self) -> str:
        """One line for the report."""
        verdict = "met" if self.met else "NOT met"
        what = "cached display" if self.scenario == "display" else self.scenario
        return (
            f"{what} >= {self.threshold:.2f} x framework floor, {self.workers} worker(s): "
            f"{self.ratio:.2f} ({verdict})"
        )


def goals(rows: Sequence[Row], threshold: float = GOAL_DISPLAY_VS_FRAMEWORK) -> list[Goal]:
    """The display and verify goals at each worker count where the floor was measured too."""
    found = []
    for row in rows:
        if row.scenario in GOAL_SCENARIOS and row.vs_framework_floor is not None:
            ratio = row.vs_framework_floor
            found.append(Goal(row.workers, ratio, threshold, ratio >= threshold, row.scenario))
    return found


@dataclass(frozen=True, slots=True)
class ScaleOut:
    """Scale-out efficiency: N-worker req/s / (N * 1-worker req/s); 1.0 is perfect."""

    scenario: str
    workers: int
    one_worker_rps: float
    rps: float

    @property
    def efficiency(self) -> float:
        """The ratio itself."""
        return self.rps / (self.workers * self.one_worker_rps)


def scale_out(rows: Sequence[Row]) -> list[ScaleOut]:
    """Each scenario measured at one worker and at more, compared."""
    single = {row.scenario: row.requests_per_s for row in rows if row.workers == 1}
    return [
        ScaleOut(row.scenario, row.workers, single[row.scenario], row.requests_per_s)
        for row in rows
        if row.workers > 1 and single.get(row.scenario)
    ]


@dataclass(frozen=True, slots=True)
class SecurityCost:
    """A scenario on the secure cluster (TLS + ACL) beside the same on the plain one."""

    scenario: str
    workers: int
    secure_rps: float
    plain_rps: float
    secure_cpu_us: float
    plain_cpu_us: float
    threshold: float = GOAL_SECURE_VS_PLAIN

    @property
    def ratio(self) -> float:
        """Secure requests/s over plain requests/s; 1.0 means TLS and ACL cost nothing."""
        return self.secure_rps / self.plain_rps if self.plain_rps else float("nan")

    @property
    def cpu_ratio(self) -> float:
        """Plain server CPU per request over secure: the same ratio as the servers' capacity,
        steadier than requests/s when other processes crowd the run (the two runs are minutes
        apart, and the noise of one need not be the other's)."""
        return self.plain_cpu_us / self.secure_cpu_us if self.secure_cpu_us else float("nan")

    @property
    def met(self) -> bool:
        """Whether the ratio reaches the goal."""
        return self.ratio >= self.threshold

    @property
    def text(self) -> str:
        """One line for the report."""
        verdict = "met" if self.met else "NOT met"
        return (
            f"{self.scenario} secure/plain, {self.workers} worker(s): {self.ratio:.2f} "
            f"(goal >= {self.threshold:.2f}, {verdict}; {self.secure_rps:,.0f} vs "
            f"{self.plain_rps:,.0f} req/s; by server CPU {self.cpu_ratio:.2f}: "
            f"{self.secure_cpu_us:.1f} vs {self.plain_cpu_us:.1f} µs/req)"
        )


def security_costs(rows: Sequence[Row]) -> list[SecurityCost]:
    """Each scenario that also ran on the plain cluster, with its secure run beside it."""
    secure = {(row.scenario, row.workers): row for row in rows}
    found = []
    for row in rows:
        if not row.scenario.endswith(PLAIN_SUFFIX):
            continue
        base = row.scenario.removesuffix(PLAIN_SUFFIX)
        twin = secure.get((base, row.workers))
        if twin is not None:
            found.append(
                SecurityCost(
                    base,
                    row.workers,
                    twin.requests_per_s,
                    row.requests_per_s,
                    twin.server_cpu_us_per_request,
                    row.server_cpu_us_per_request,
                )
            )
    return found


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:,.{digits}f}"


def format_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table, one line per scenario and worker count."""
    lines = [
        "| workers | operation | req/s | p50 ms | p99 ms | server CPU µs/req "
        "| x framework floor | x store floor | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workers} | {r.scenario} | {_num(r.requests_per_s, 0)} | {_num(r.p50_ms)} "
            f"| {_num(r.p99_ms)} | {_num(r.server_cpu_us_per_request, 1)} "
            f"| {_num(r.vs_framework_floor)} | {_num(r.vs_store_floor)} | {r.errors} |"
        )
    return "\n".join(lines)


def format_report(rows: Sequence[Row], facts: Mapping[str, Any] | None = None) -> str:
    """The table, the goal, the scale-out efficiencies and the notes, as printed."""
    parts = [format_table(rows), ""]
    parts += [f"Goal (reported, not asserted): {goal.text}" for goal in goals(rows)]
    parts += [f"TLS + ACL (reported, not asserted): {c.text}" for c in security_costs(rows)]
    scaled = scale_out(rows)
    if scaled:
        parts += ["", "| operation | workers | 1-worker req/s | req/s | scale-out efficiency |"]
        parts.append("|---|---:|---:|---:|---:|")
        parts += [
            f"| {s.scenario} | {s.workers} | {_num(s.one_worker_rps, 0)} | {_num(s.rps, 0)} "
            f"| {_num(s.efficiency)} |"
            for s in scaled
        ]
    notes = [f"- {r.scenario} ({r.workers}w): {note}" for r in rows for note in r.notes]
    if notes:
        parts += ["", "Notes:", *notes]
    if facts:
        parts += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items())]
    return "\n".join(parts)


def job_notes(job: WrkJob, stats: WrkStats) -> list[str]:
    """What the run's counts say about the scenario: whether a list of distinct requests ran
    out (its repeats were cached displays), and how many answers were degraded."""
    notes = []
    if job.distinct is not None and stats.requests > job.distinct:
        repeated = stats.requests - job.distinct
        notes.append(
            f"the list of {job.distinct:,} ran out: {repeated:,} of {stats.requests:,} requests "
            "repeated one (a display of a code already signed)"
        )
    if "degraded" in stats.counts:
        degraded = stats.counts["degraded"]
        notes.append(f"{degraded:,} of {stats.requests:,} answers degraded")
    return notes


def status_note(statuses: Mapping[int, int]) -> str:
    """How the responses split by status, e.g. ``201: 9,800 (98.0%), 200: 200 (2.0%)``."""
    total = sum(statuses.values())
    return ", ".join(
        f"{status}: {count:,} ({100 * count / total:.1f}%)"
        for status, count in sorted(statuses.items(), key=lambda kv: -kv[1])
    )


def fresh_resident_ids(region: str = "320104", first: date = date(1950, 1, 1)) -> Iterator[str]:
    """Valid resident IDs, never the same twice: 1,000 per birth date, dates counting up."""
    for day in itertools.count():
        born = first + timedelta(days=day)
        for seq in range(1000):
            yield make_resident_id(region, born, seq)


def parse_profiles(text: str) -> tuple[str, ...]:
    """``"international,national"`` to the profiles' names, in order; each known, no repeats."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    known = [p.value for p in ProfileName]
    unknown = [n for n in names if n not in known]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--profiles {text!r}: distinct names from {', '.join(known)}"
        )
    return names


def parse_workers(text: str) -> list[int]:
    """``"1,2"`` to ``[1, 2]``; each a positive count, no repeats."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers {text!r}: comma-separated counts") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"--workers {text!r}: distinct positive counts")
    return counts


# --- Scenarios. ----------------------------------------------------------------------------------


@dataclass
class Fixture:
    """What the scenarios share across worker counts: keys, subjects, fresh IDs, files."""

    workdir: Path
    keys: dict[str, str]
    ids: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    fresh: Iterator[str] = field(default_factory=fresh_resident_ids)
    threads: int = 1
    issuer_url: str = ""
    """Where the issuer of this worker count listens (verify scenarios get their codes there)."""
    profile: str = "international"
    """The services' ``crypto.profile``: each profile has a cluster and a fixture of its own."""
    cluster: DevCluster | None = None
    """The store of this fixture's services: the degraded scenario makes it unreachable."""
    load_s: int = 0
    """Seconds of load a measurement gives (warm-up and run): what a fresh pool must cover."""
    refresh_pool: list[str] = field(default_factory=list)
    """Subjects never displayed yet, for display-refresh; each wrk job takes its share."""
    _files: Iterator[int] = field(default_factory=itertools.count)

    def data_file(self, name: str, lines: Sequence[str]) -> Path:
        """A new file of ``lines`` for a wrk script to read."""
        path = self.workdir / f"{name}-{next(self._files)}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path


@dataclass(frozen=True, slots=True)
class WrkJob:
    """One wrk invocation's target: a path, or a Lua script with its data file."""

    path: str
    script: str | None = None
    data: Path | None = None
    scope: str | None = None
    extra_args: tuple[str, ...] = ()
    """Arguments for the Lua script after the data file and the thread count."""
    distinct: int | None = None
    """How many requests the job holds before it repeats one (None: repeats are expected)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One operation under load: the server it needs and what wrk sends to it."""

    name: str
    server: str
    job: Callable[[Fixture, int], WrkJob]
    """The wrk job for a run of the given seconds (called for the warm-up and the run)."""
    prepare: Callable[[Fixture, str], None] | None = None
    check: Callable[[Fixture, str], list[str]] | None = None
    """After the run: notes on what the run did (e.g. whether the display cache held)."""


def _display_job(fixture: Fixture, seconds: int) -> WrkJob:
    paths = [f"/v1/subjects/{subject}/code" for subject in fixture.subjects]
    return WrkJob("/", "display.lua", fixture.data_file("display", paths), "display")


def _generate_repeat_job(fixture: Fixture, seconds: int) -> WrkJob:
    return WrkJob("/", "generate.lua", fixture.data_file("generate", fixture.ids), "generate")


def _generate_new_job(fixture: Fixture, seconds: int) -> WrkJob:
    ids = list(itertools.islice(fixture.fresh, NEW_IDS_PER_S * max(1, seconds)))
    return WrkJob("/", "generate.lua", fixture.data_file("generate-new", ids), "generate")


def _prepare_display(fixture: Fixture, base_url: str) -> None:
    _ensure_subjects(fixture, base_url)
    # Sign (or re-sign, past half-life) every code now, so the run reads cached codes only.
    fixture.tokens = asyncio.run(_show_codes(base_url, fixture.keys["display"], fixture.subjects))


def _check_display(fixture: Fixture, base_url: str) -> list[str]:
    tokens = asyncio.run(_show_codes(base_url, fixture.keys["display"], fixture.subjects))
    same = sum(a == b for a, b in zip(tokens, fixture.tokens, strict=True))
    note = f"{same}/{len(tokens)} codes unchanged after the run"
    return [note + (" (cached throughout)" if same == len(tokens) else " (some were re-signed)")]


def _prepare_generate(fixture: Fixture, base_url: str) -> None:
    _ensure_subjects(fixture, base_url)


VERIFY_BATCH = 100
"""Codes per request in the verify-batch scenario; its codes/s is req/s times this."""


def _prepare_verify(fixture: Fixture, base_url: str) -> None:
    # Codes the issuer handed out just now: valid for the whole run (120 s lifetime).
    _ensure_subjects(fixture, fixture.issuer_url)
    fixture.tokens = asyncio.run(
        _show_codes(fixture.issuer_url, fixture.keys["display"], fixture.subjects)
    )


def _verify_job(fixture: Fixture, seconds: int) -> WrkJob:
    return WrkJob("/", "verify.lua", fixture.data_file("verify", fixture.tokens), "verify")


def _verify_batch_job(fixture: Fixture, seconds: int) -> WrkJob:
    data = fixture.data_file("verify-batch", fixture.tokens)
    return WrkJob("/", "verify.lua", data, "verify", extra_args=(str(VERIFY_BATCH),))


REFRESH_PER_S = {"international": 8000, "national": 3000}
"""Fresh subjects made per second of load for display-refresh, by profile: above what one
worker signs and stores a second here (Ed25519 signs about 50,000/s, SM2 about 3,000/s). Past
them the list wraps, those displays are cached, and a note says how many."""
CREATE_CONCURRENCY = 32
"""Generate calls in flight while the fixture makes the fresh subjects (set-up, unmeasured)."""
CREATE_ATTEMPTS = 5


def _prepare_display_refresh(fixture: Fixture, base_url: str) -> None:
    # Subjects never displayed: each display signs a code and stores it, as a display past
    # the half-life does (a first display and a refresh run the same path, successor_at and
    # replace_display), so every request of the run pays a signature.
    count = REFRESH_PER_S[fixture.profile] * max(1, fixture.load_s)
    ids = list(itertools.islice(fixture.fresh, count))
    key = fixture.keys["generate"]
    made = asyncio.run(_create_subjects(base_url, key, ids, CREATE_CONCURRENCY))
    fixture.refresh_pool = made


def _display_refresh_job(fixture: Fixture, seconds: int) -> WrkJob:
    take = REFRESH_PER_S[fixture.profile] * max(1, seconds)
    subjects, fixture.refresh_pool = fixture.refresh_pool[:take], fixture.refresh_pool[take:]
    if not subjects:
        raise BenchError("display-refresh: no fresh subjects left (prepare makes them)")
    paths = [f"/v1/subjects/{subject}/code" for subject in subjects]
    data = fixture.data_file("display-refresh", paths)
    return WrkJob("/", "display.lua", data, "display", distinct=len(paths))


DEGRADED_MARGIN_S = 3
"""The store stays paused this long past the warm-up and the run, for wrk's start and exit."""
STORE_BACK_TIMEOUT_S = 60.0


def _prepare_verify_degraded(fixture: Fixture, base_url: str) -> None:
    _prepare_verify(fixture, base_url)
    cluster = fixture.cluster
    if cluster is None:
        raise BenchError("verify-degraded needs the fixture's cluster")
    # CLIENT PAUSE holds every client command of each primary back, the verifier's among
    # them, while the cluster bus goes on: no failover starts, and the store is unreachable
    # for as long as the pause lasts. The verifier's shard breakers open within the warm-up,
    # so the run measures what it does then: the precheck and the signature, no store.
    pause_ms = str((fixture.load_s + DEGRADED_MARGIN_S) * 1000)
    for port in cluster.masters():
        if cluster.command(port, "CLIENT", "PAUSE", pause_ms, "ALL").strip() != "OK":
            raise BenchError(f"CLIENT PAUSE refused on port {port}")


def _check_verify_degraded(fixture: Fixture, base_url: str) -> list[str]:
    """Wait until the store answers again and a verify is live: the next scenario needs it."""
    cluster = fixture.cluster
    assert cluster is not None
    # A PING waits behind the pause (each try up to its timeout) and answers once it ends.
    ports = cluster.masters()
    deadline = time.monotonic() + STORE_BACK_TIMEOUT_S
    while not all(cluster.ping(port) for port in ports):
        if time.monotonic() > deadline:
            raise BenchError("the store did not come back after the degraded run")
    cluster.wait_healthy()
    token = fixture.tokens[0]
    while asyncio.run(_verify_degraded(base_url, fixture.keys["verify"], token)):
        if time.monotonic() > deadline:
            raise BenchError("the verifier still answers degraded after the store came back")
    return []


async def _verify_degraded(base_url: str, key: str, token: str) -> bool:
    """Whether the verifier answers this code degraded (or not at all) now."""
    body = {"code": token, "terminal": "bench", "venue": "bench", "city": 320100}
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(f"{base_url}/v1/verify", json=body) as response,
    ):
        if response.status != 200:
            return True
        return bool((await response.json())["degraded"])


def _verify_degraded_job(fixture: Fixture, seconds: int) -> WrkJob:
    data = fixture.data_file("verify-degraded", fixture.tokens)
    return WrkJob("/", "verify.lua", data, "verify", extra_args=("1", "degraded"))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(FRAMEWORK, "framework", lambda f, s: WrkJob("/floor")),
        Scenario(STORE, "store", lambda f, s: WrkJob("/store-floor")),
        Scenario("display", "issuer", _display_job, _prepare_display, _check_display),
        Scenario("display-refresh", "issuer", _display_refresh_job, _prepare_display_refresh),
        Scenario("generate", "issuer", _generate_repeat_job, _prepare_generate),
        Scenario("generate-new", "issuer", _generate_new_job, _prepare_generate),
        Scenario("verify", "verifier", _verify_job, _prepare_verify),
        Scenario("verify-batch", "verifier", _verify_batch_job, _prepare_verify),
        Scenario(
            "verify-degraded",
            "verifier",
            _verify_degraded_job,
            _prepare_verify_degraded,
            _check_verify_degraded,
        ),
    )
}
DEFAULT_SCENARIOS = "display,generate,generate-new,verify,verify-batch"


def resolve_scenarios(text: str) -> list[Scenario]:
    """The floors first (always), then the named scenarios in the order given."""
    names = [FRAMEWORK, STORE] + [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return [SCENARIOS[n] for n in dict.fromkeys(names)]


# --- Servers. ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one kind of server process; N of them share a port (SO_REUSEPORT)."""

    module: tuple[str, ...]
    ready_path: str
    port_env: str | None = None
    """The setting that names the port; None: the port is passed as ``--port``."""


SERVERS = {
    "framework": ServerSpec(("bench.floors", "--kind", "framework"), "/floor"),
    "store": ServerSpec(("bench.floors", "--kind", "store"), "/store-floor"),
    "issuer": ServerSpec(
        ("codeengine.web.worker", "--service", "issuer"),
        "/readyz",
        "CODEENGINE_SERVICE_ISSUER_PORT",
    ),
    "verifier": ServerSpec(
        ("codeengine.web.worker", "--service", "verifier"),
        "/readyz",
        "CODEENGINE_SERVICE_VERIFIER_PORT",
    ),
}


def _taskset(cores: tuple[int, ...] | None) -> list[str]:
    return [] if cores is None else ["taskset", "-c", _cores(cores)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerGroup:
    """``workers`` processes of one server kind on one port, pinned to the server cores."""

    def __init__(self, name: str, workers: int, env: Mapping[str, str], logdir: Path) -> None:
        self.name, self.spec, self.workers = name, SERVERS[name], workers
        self.port = _free_port()
        self.env = dict(env)
        if self.spec.port_env:
            self.env[self.spec.port_env] = str(self.port)
        self.logs = [logdir / f"{name}-{workers}w-{i}.log" for i in range(workers)]
        self.group = Group()

    @property
    def url(self) -> str:
        """The base URL all the processes share."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, cores: tuple[int, ...] | None) -> None:
        """Start every process; they bind with SO_REUSEPORT."""
        argv = [*_taskset(cores), sys.executable, "-m", *self.spec.module]
        if self.spec.port_env is None:
            argv += ["--port", str(self.port)]
        for log in self.logs:
            # Fresh logs: readiness reads them, and a log of an earlier run would lie.
            child = spawn(self.name, argv, self.env, log, append=False, cwd=BENCH_DIR.parent)
            self.group.add(child)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Every process listening (its log says so), then the ready path answering 200."""
        ready = self.url + self.spec.ready_path

        def listening_and_ready() -> bool:
            logs = (log.read_text(errors="replace") for log in self.logs)
            # Fresh connections land on any worker: a few in a row cover them with luck.
            return all("serving on" in text for text in logs) and all(
                answers_ok(ready) for _ in range(9)
            )

        try:
            wait_until(self.group.children, listening_and_ready, timeout_s, self.name, 0.2)
        except HarnessError as exc:
            raise BenchError(str(exc)) from exc

    def check_alive(self) -> None:
        """BenchError, with the log's tail, if any process has exited."""
        try:
            check_alive(self.group.children)
        except HarnessError as exc:
            raise BenchError(str(exc)) from exc

    def pids(self) -> list[int]:
        """The processes' ids (taskset execs the server, so the id is the server's)."""
        return [child.pid for child in self.group.children]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL past the timeout."""
        self.group.stop(STOP_TIMEOUT_S)
        self.group.children.clear()


def _pin(pids: Sequence[int], cores: tuple[int, ...] | None, every: Sequence[int]) -> None:
    """Pin every thread of each process (``None``: allow every core again)."""
    target = set(every if cores is None else cores)
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(task.name), target)


def _cpu_s(pids: Sequence[int]) -> float:
    ticks = sum(stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) for pid in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> MachineTicks:
    return parse_proc_stat(Path("/proc/stat").read_text())


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- The fixture's HTTP calls (set-up only, never measured). --------------------------------------


async def _create_subjects(
    base_url: str, key: str, ids: Sequence[str], concurrency: int = 16
) -> list[str]:
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(identifier: str) -> str:
            body = {"kind": "person", "id": identifier, "city": 320100}
            async with limit:
                # A generate is idempotent: a 503 (a replica's acknowledgement late under the
                # set-up's burst) is asked again, as a client would after its Retry-After.
                for attempt in range(CREATE_ATTEMPTS):
                    async with session.post(f"{base_url}/v1/subjects", json=body) as response:
                        if response.status in (200, 201):
                            return str((await response.json())["subject"])
                        if response.status != 503 or attempt == CREATE_ATTEMPTS - 1:
                            raise BenchError(f"generate answered {response.status}")
                    await asyncio.sleep(0.1 * (attempt + 1))
                raise AssertionError("unreachable")

        return list(await asyncio.gather(*(one(i) for i in ids)))


async def _show_codes(base_url: str, key: str, subjects: Sequence[str]) -> list[str]:
    limit = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(subject: str) -> str:
            url = f"{base_url}/v1/subjects/{subject}/code"
            async with limit, session.get(url) as response:
                if response.status != 200:
                    raise BenchError(f"display answered {response.status}")
                return str((await response.json())["token"])

        return list(await asyncio.gather(*(one(s) for s in subjects)))


def _ensure_subjects(fixture: Fixture, base_url: str) -> None:
    if fixture.subjects:
        return
    fixture.ids = [make_resident_id("320102", date(1990, 1, 1), seq) for seq in range(1000)]
    fixture.subjects = asyncio.run(
        _create_subjects(base_url, fixture.keys["generate"], fixture.ids)
    )


# --- The run. ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The command line, parsed."""

    duration_s: int
    warmup_s: int
    connections: int
    workers: list[int]
    scenarios: list[Scenario]
    output_dir: Path
    rounds: int = 1
    fast_lane: bool = True
    """Whether the services serve display and verify on the fast lane (``service.fast_lane``)."""
    overload: bool = False
    """Whether to run ``bench/overload.py`` after the scenarios (scrapes and a crowd)."""
    plain: bool = True
    """Whether display and verify run again on a plain cluster, for the secure/plain ratio."""
    profiles: tuple[str, ...] = ("international",)
    """The services' ``crypto.profile`` values: each profile gets a cluster, keys and servers
    of its own (a store keeps the profile it was seeded in); the floors run once for all."""


@dataclass
class Stack:
    """What runs during one worker count: the cluster, the server groups, the pinning."""

    cluster: DevCluster
    groups: dict[str, ServerGroup]
    pinning: Pinning
    threads: int


def _wrk(
    stack: Stack, fixture: Fixture, job: WrkJob, base_url: str, seconds: int, conns: int
) -> str:
    argv = [*_taskset(stack.pinning.load), "wrk", "-t", str(stack.threads), "-c", str(conns)]
    argv += ["-d", f"{seconds}s", "--latency", "--timeout", WRK_TIMEOUT]
    if job.script:
        argv += ["-s", str(WRK_DIR / job.script)]
    argv.append(base_url + job.path)
    if job.data is not None:
        argv += ["--", str(job.data), str(stack.threads), *job.extra_args]
    env = dict(os.environ)
    if job.scope:
        env["BENCH_AUTH"] = f"Bearer {fixture.keys[job.scope]}"
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def _measure(
    scenario: Scenario, workers: int, stack: Stack, fixture: Fixture, opts: Options
) -> Measurement:
    group = stack.groups[scenario.server]
    if scenario.prepare:
        scenario.prepare(fixture, group.url)
    if opts.warmup_s:
        warm = scenario.job(fixture, opts.warmup_s)
        _wrk(stack, fixture, warm, group.url, opts.warmup_s, opts.connections)
    job = scenario.job(fixture, opts.duration_s)
    store_pids = [proc.pid for proc in stack.cluster.processes()]
    machine, started = _machine_ticks(), time.monotonic()
    before = (_cpu_s(group.pids()), _cpu_s(store_pids), _children_cpu_s())
    out = _wrk(stack, fixture, job, group.url, opts.duration_s, opts.connections)
    after = (_cpu_s(group.pids()), _cpu_s(store_pids), _children_cpu_s())
    machine_after, window_s = _machine_ticks(), time.monotonic() - started
    tick = os.sysconf("SC_CLK_TCK")
    group.check_alive()
    stats = parse_wrk(out)
    notes = scenario.check(fixture, group.url) if scenario.check else []
    if stats.statuses:
        notes.append("responses " + status_note(stats.statuses))
    if scenario.name == "display" and opts.warmup_s + opts.duration_s > DISPLAY_HALF_LIFE_S - 5:
        notes.append("run longer than the codes' half-life: includes re-signing")
    notes += job_notes(job, stats)
    cores = len(stack.pinning.server) if stack.pinning.server else len(os.sched_getaffinity(0))
    return Measurement(
        scenario=scenario.name,
        workers=workers,
        wrk=stats,
        server_cpu_s=after[0] - before[0],
        store_cpu_s=after[1] - before[1],
        load_cpu_s=after[2] - before[2],
        server_cores=min(cores, workers),
        pinned=stack.pinning.server is not None,
        machine_cpu_s=(machine_after.busy - machine.busy) / tick,
        server_cores_used_s=sum(
            machine_after.used_by_core.get(core, 0) - machine.used_by_core.get(core, 0)
            for core in stack.pinning.server or ()
        )
        / tick,
        steal_s=(machine_after.steal - machine.steal) / tick,
        window_s=window_s,
        notes=tuple(notes),
    )


def _service_env(
    cluster: DevCluster,
    workdir: Path,
    workers: int,
    fast_lane: bool = True,
    profile: str = "international",
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEENGINE_")}
    # The cluster's nodes, and its TLS files and the services' login when it is secure.
    env.update(cluster.client_env())
    env.update(
        {
            "CODEENGINE_KEYS_KEYRING_FILE": str(workdir / "keys" / "keyring.json"),
            "CODEENGINE_KEYS_KEK_FILE": str(workdir / "keys" / "kek"),
            "CODEENGINE_KEYS_PEPPER_FILE": str(workdir / "keys" / "pepper"),
            "CODEENGINE_KEYS_ALIAS_KEY_FILE": str(workdir / "keys" / "alias-key"),
            "CODEENGINE_KEYS_RECORD_MAC_FILE": str(workdir / "keys" / "record-mac.json"),
            "CODEENGINE_KEYS_AUDIT_MAC_FILE": str(workdir / "keys" / "audit-mac.json"),
            "CODEENGINE_KEYS_CHECKPOINT_KEY_FILE": str(workdir / "keys" / "checkpoint.pem"),
            "CODEENGINE_KEYS_TRUST_ANCHOR_FILE": str(workdir / "keys" / "trust-anchor.json"),
            "CODEENGINE_KEYS_CREDENTIALS_FILE": str(workdir / "credentials.json"),
            "CODEENGINE_SERVICE_WORKERS": str(workers),
            "CODEENGINE_SERVICE_FAST_LANE": "true" if fast_lane else "false",
            "CODEENGINE_CRYPTO_PROFILE": profile,
        }
    )
    return env


def _write_material(workdir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Dev keys, and credentials whose rate limit the bench never reaches; the keys by scope."""
    keys = {scope: os.urandom(24).hex() for scope in DEV_SCOPES}
    clients = [
        {"client": f"bench-{scope}", "scopes": [scope], "key": key, "rate_per_s": BENCH_RATE_PER_S}
        for scope, key in keys.items()
    ]
    path = Path(env["CODEENGINE_KEYS_CREDENTIALS_FILE"])
    path.write_text(json.dumps({"note": "bench only", "clients": clients}))
    path.chmod(0o600)
    ensure_dev_material(load_settings(env=env))
    return keys


@dataclass
class Twin:
    """The plain cluster and its fixture: display and verify measured again on it."""

    cluster: DevCluster
    fixture: Fixture


FLOOR_SERVERS = ("framework", "store")
"""The floors' servers: they run once per worker count, whatever the profiles."""


def _run_workers(
    workers: int,
    fixtures: Sequence[Fixture],
    opts: Options,
    log: Callable[[str], None],
    twin: Twin | None = None,
) -> tuple[dict[str, list[Measurement]], Pinning]:
    """Every scenario at one worker count, ``opts.rounds`` times, in each profile's fixture
    (the floors once, on the first one's cluster); with a ``twin``, display and verify each
    run again on the plain cluster right after the first profile's secure run, so that the
    two share the machine's conditions as closely as runs can.

    Returns each profile's median rounds, the floors in every profile's list.
    """
    cpus = sorted(os.sched_getaffinity(0))
    pinning = plan_pinning(cpus, workers)
    threads = max(1, min(len(pinning.load or cpus), opts.connections))
    needed = dict.fromkeys(s.server for s in opts.scenarios)
    if "verifier" in needed:
        # The verifier reads the trust list the issuer publishes, and verify runs need codes.
        needed["issuer"] = None
    # The issuer first: it seeds the keyring in the store that the others may read.
    order = sorted(needed, key=lambda name: name != "issuer")
    first = fixtures[0]
    stacks = {
        f.profile: _stack(f, workers, order, f is first, pinning, threads, opts.fast_lane)
        for f in fixtures
    }
    twins = [s for s in opts.scenarios if s.name in GOAL_SCENARIOS] if twin else []
    twin_groups: dict[str, ServerGroup] = {}
    if twin is not None and twins:
        _pin([proc.pid for proc in twin.cluster.processes()], pinning.store, cpus)
        twin_env = _service_env(twin.cluster, first.workdir, workers, opts.fast_lane, first.profile)
        twin_groups = {
            name: ServerGroup(name, workers, twin_env, twin.fixture.workdir)
            for name in order
            if name in ("issuer", "verifier")
        }
    log(f"{workers} worker(s): {pinning.note}")
    every = [g for stack in stacks.values() for g in stack.groups.values()]
    every += twin_groups.values()
    rounds: dict[tuple[str, str], list[Measurement]] = {}
    tagged = len(fixtures) > 1
    try:
        for group in every:
            group.start(pinning.server)
        for group in every:
            group.wait_ready()
        pairs = [(f, stacks[f.profile].groups) for f in fixtures]
        for fixture, groups in [*pairs, *([(twin.fixture, twin_groups)] if twin else [])]:
            if "issuer" in groups:
                fixture.issuer_url = groups["issuer"].url
        for number in range(opts.rounds):
            for scenario in opts.scenarios:
                runs = [
                    (fixture, scenario, stacks[fixture.profile])
                    for fixture in (fixtures if scenario.server not in FLOOR_SERVERS else [first])
                ]
                if twin is not None and scenario in twins:
                    runs.insert(1, _plain_run(scenario, twin, twin_groups, pinning, threads))
                for with_fixture, measured, on in runs:
                    m = _measure(measured, workers, on, with_fixture, opts)
                    where = f" [{with_fixture.profile}]" if tagged else ""
                    log(
                        f"  {measured.name}{where} (round {number + 1}): "
                        f"{m.wrk.requests_per_s:,.0f} req/s, p99 {m.wrk.p99_ms:.2f} ms, "
                        f"server {cpu_us_per_request(m.server_cpu_s, m.wrk.requests):.1f} µs/req"
                    )
                    rounds.setdefault((with_fixture.profile, measured.name), []).append(m)
    finally:
        for group in every:
            group.stop()
    return medians_by_profile([f.profile for f in fixtures], rounds), pinning


def _plain_run(
    scenario: Scenario,
    twin: Twin,
    groups: dict[str, ServerGroup],
    pinning: Pinning,
    threads: int,
) -> tuple[Fixture, Scenario, Stack]:
    """The scenario again on the plain cluster, under its ``-plain`` name."""
    plain = replace(scenario, name=scenario.name + PLAIN_SUFFIX)
    return twin.fixture, plain, Stack(twin.cluster, groups, pinning, threads)


def _stack(
    fixture: Fixture,
    workers: int,
    order: Sequence[str],
    floors: bool,
    pinning: Pinning,
    threads: int,
    lane: bool,
) -> Stack:
    """The server groups of one profile's fixture (the floors' only where ``floors``), its
    cluster pinned to the store's cores."""
    cpus = sorted(os.sched_getaffinity(0))
    assert fixture.cluster is not None
    _pin([proc.pid for proc in fixture.cluster.processes()], pinning.store, cpus)
    env = _service_env(fixture.cluster, fixture.workdir, workers, lane, fixture.profile)
    names = [n for n in order if floors or n not in FLOOR_SERVERS]
    groups = {name: ServerGroup(name, workers, env, fixture.workdir) for name in names}
    return Stack(fixture.cluster, groups, pinning, threads)


def medians_by_profile(
    profiles: Sequence[str], rounds: Mapping[tuple[str, str], Sequence[Measurement]]
) -> dict[str, list[Measurement]]:
    """Each profile's median rounds, in the order measured; the floors ran once, and every
    profile's list carries them, so that each is complete on its own."""
    found: dict[str, list[Measurement]] = {profile: [] for profile in profiles}
    for (profile, name), measured_rounds in rounds.items():
        median = median_round(measured_rounds)
        for into in found.values() if name in (FRAMEWORK, STORE) else [found[profile]]:
            into.append(median)
    return found


def _command_output(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (result.stdout + result.stderr).strip()


def parse_cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` in ``/proc/cpuinfo``, or "unknown"."""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return match[1].strip() if match else "unknown"


def machine_facts() -> dict[str, Any]:
    """The machine and the versions that the numbers depend on."""
    redis_server = re.search(r"v=(\S+)", _command_output(["redis-server", "--version"]))
    wrk = _command_output(["wrk", "--version"]).splitlines()
    commit = _command_output(["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"])
    return {
        "nproc": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "cpu_model": parse_cpu_model(Path("/proc/cpuinfo").read_text()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": importlib.metadata.version("aiohttp"),
        "uvloop": importlib.metadata.version("uvloop"),
        "redis_py": importlib.metadata.version("redis"),
        "hiredis": importlib.metadata.version("hiredis"),
        "redis_server": redis_server[1] if redis_server else "unknown",
        "wrk": wrk[0].split(" [")[0] if wrk else "unknown",
        "git_commit": commit or None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def build_document(
    facts: Mapping[str, Any], opts: Options, pinnings: Mapping[int, Pinning], rows: Sequence[Row]
) -> dict[str, Any]:
    """The JSON document saved under ``bench/results/``: the first profile's rows at the top,
    where one-profile readers find them."""
    return {
        "schema": SCHEMA,
        "machine": dict(facts),
        "config": {
            "duration_s": opts.duration_s,
            "warmup_s": opts.warmup_s,
            "connections": opts.connections,
            "rounds": opts.rounds,
            "fast_lane": opts.fast_lane,
            "plain_comparison": opts.plain,
            "workers": opts.workers,
            "scenarios": [s.name for s in opts.scenarios],
            "profiles": list(opts.profiles),
            "pinning": {str(w): {**asdict(p), "note": p.note} for w, p in pinnings.items()},
        },
        **figures(rows),
    }


def figures(rows: Sequence[Row]) -> dict[str, Any]:
    """The rows and what follows from them, as a results document holds them."""
    return {
        "results": [asdict(row) for row in rows],
        "goals": [{**asdict(goal), "text": goal.text} for goal in goals(rows)],
        "scale_out": [{**asdict(s), "efficiency": s.efficiency} for s in scale_out(rows)],
        "secure_vs_plain": [
            {**asdict(c), "ratio": c.ratio, "cpu_ratio": c.cpu_ratio, "met": c.met, "text": c.text}
            for c in security_costs(rows)
        ],
    }


def profile_sections(
    rows: Mapping[str, Sequence[Row]], crypto: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The ``profiles`` key of a run of several profiles: each profile's figures under its
    name, shaped as a one-profile document's (the shared floors in each), with its crypto
    floor, so that a reader of one profile reads it as it reads a whole file."""
    return {name: {**figures(found), "crypto_floor": dict(crypto[name])}
            for name, found in rows.items()}  # fmt: skip


def format_profiles(rows: Mapping[str, Sequence[Row]]) -> str:
    """The profiles side by side, one worker: each operation's requests/s and server CPU per
    request in each, and the CPU ratio of every other profile to the first."""
    names = list(rows)
    by_profile = {n: {r.scenario: r for r in found if r.workers == 1} for n, found in rows.items()}
    first = names[0]
    header = "| operation | " + " | ".join(f"{n} req/s | {n} µs/req" for n in names)
    header += "".join(f" | {n} ÷ {first} (CPU)" for n in names[1:]) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(names) + len(names) - 1)]
    for scenario, base in by_profile[first].items():
        cells = []
        for name in names:
            row = by_profile[name].get(scenario)
            cells += [_num(row.requests_per_s, 0), _num(row.server_cpu_us_per_request, 1)] if row \
                else ["-", "-"]  # fmt: skip
        for name in names[1:]:
            row = by_profile[name].get(scenario)
            ratio = _ratio(row.server_cpu_us_per_request, base.server_cpu_us_per_request) \
                if row else None  # fmt: skip
            cells.append(_num(ratio))
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PROFILES_LATEST = "profiles-latest.json"
"""Where a run of several profiles goes beside its timestamped file: ``latest.json``, which the
capacity plan's tiers and the deployment's replica counts follow, stays a one-profile run."""


def save(document: Mapping[str, Any], output_dir: Path) -> Path:
    """Write the results as a timestamped file and as ``latest.json`` (a run of several
    profiles: ``http-profiles-*.json`` and ``profiles-latest.json``); the timestamped path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"
    several = "profiles" in document
    path = output_dir / (f"http-profiles-{stamp}.json" if several else f"http-{stamp}.json")
    path.write_text(text)
    (output_dir / (PROFILES_LATEST if several else "latest.json")).write_text(text)
    return path


def json_safe(value: Any) -> Any:
    """NaN (a run with no requests) as null, so the JSON stays standard."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None) -> Options:
    """The command line as Options; argparse exits with a message on a bad value."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.http", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--workers", type=parse_workers, default=[1, 2], help="e.g. 1,2")
    parser.add_argument(
        "--scenarios",
        type=resolve_scenarios,
        default=resolve_scenarios(DEFAULT_SCENARIOS),
        help=f"comma-separated, from {', '.join(SCENARIOS)} (the floors always run)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="run every scenario N times; report the median"
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--no-fast-lane",
        dest="fast_lane",
        action="store_false",
        help="serve display and verify through aiohttp alone (service.fast_lane = false)",
    )
    parser.add_argument(
        "--no-overload",
        dest="overload",
        action="store_false",
        help="skip bench/overload.py (a /metrics scrape loop beside verify; 4,000 connections)",
    )
    parser.add_argument(
        "--no-plain",
        dest="plain",
        action="store_false",
        help="skip the second, plain cluster (no TLS, no ACL) and the secure/plain ratios",
    )
    choices = [p.value for p in ProfileName]
    parser.add_argument(
        "--profile",
        choices=choices,
        default=None,
        help="the services' crypto.profile (national: SM2 keys, HMAC-SM3, SM4-GCM)",
    )
    parser.add_argument(
        "--profiles",
        type=parse_profiles,
        default=None,
        help="several profiles in one run, e.g. international,national: each its own cluster "
        "and servers, the floors once; JSON to profiles-latest.json",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.connections < 1 or args.rounds < 1:
        parser.error("--duration, --connections, --rounds must be positive, --warmup not negative")
    if args.profile is not None and args.profiles is not None:
        parser.error("--profile and --profiles: give one of them")
    profiles = args.profiles or (args.profile or ProfileName.INTERNATIONAL.value,)
    return Options(
        duration_s=args.duration,
        warmup_s=args.warmup,
        connections=args.connections,
        workers=args.workers,
        scenarios=args.scenarios,
        output_dir=args.output_dir,
        rounds=args.rounds,
        fast_lane=args.fast_lane,
        overload=args.overload,
        plain=args.plain,
        profiles=profiles,
    )


def run(
    opts: Options, log: Callable[[str], None]
) -> tuple[dict[str, list[Measurement]], dict[int, Pinning]]:
    """Start a cluster per profile, then each worker count's servers in turn; every
    measurement, by profile (the floors in each)."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(
                f"{tool} not found: `apt-get install -y {tool}` (make bench-http does)"
            )
    measurements: dict[str, list[Measurement]] = {profile: [] for profile in opts.profiles}
    pinnings: dict[int, Pinning] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        clusters: list[DevCluster] = []
        fixtures: list[Fixture] = []
        plain: Twin | None = None
        load_s = opts.warmup_s + opts.duration_s
        try:
            for profile in opts.profiles:
                # One profile keeps the folder layout of a one-profile run.
                home = workdir if len(opts.profiles) == 1 else workdir / profile
                home.mkdir(exist_ok=True)
                cluster = DevCluster(home / "cluster", find_free_base_port())
                clusters.append(cluster)
                cluster.start()
                keys = _write_material(home, _service_env(cluster, home, 1, profile=profile))
                fixtures.append(Fixture(home, keys, profile=profile, cluster=cluster,
                                        load_s=load_s))  # fmt: skip
            first = fixtures[0]
            if opts.plain and any(s.name in GOAL_SCENARIOS for s in opts.scenarios):
                log("plain cluster (no TLS, no ACL) for the secure/plain ratios")
                port = find_free_base_port()
                plain_cluster = DevCluster(workdir / "cluster-plain", port, secure=False)
                clusters.append(plain_cluster)
                twin_fixture = Fixture(workdir / "plain", first.keys, profile=first.profile,
                                       cluster=plain_cluster, load_s=load_s)  # fmt: skip
                plain = Twin(plain_cluster, twin_fixture)
                plain.fixture.workdir.mkdir()
                plain_cluster.start()
            for index, workers in enumerate(opts.workers):
                twin = plain if index == 0 else None
                found, pinnings[workers] = _run_workers(workers, fixtures, opts, log, twin)
                for profile, measured in found.items():
                    measurements[profile] += measured
        finally:
            for cluster in clusters:
                cluster.stop()
    return measurements, pinnings


CRYPTO_ROUNDS = 5
CRYPTO_OPS = 1000


def crypto_floor(suite: SigningSuite = DEFAULT_SUITE) -> dict[str, float]:
    """The signing suite's raw sign and verify rates on one core, best of a few rounds.

    Process CPU time, on a Sig_structure-sized message: what signing or checking one code costs
    before any engine code, beside which display's re-signing and offline verification stand.
    """
    private = suite.generate(os.urandom)
    message = bytes(range(100))
    signature = private.sign(message)
    rates: dict[str, float] = {}
    for name, work in (
        ("sign_per_s", lambda: private.sign(message)),
        ("verify_per_s", lambda: private.public.verify(signature, message)),
    ):
        best = float("inf")
        for _ in range(CRYPTO_ROUNDS):
            begun = time.process_time()
            for _ in range(CRYPTO_OPS):
                work()
            best = min(best, time.process_time() - begun)
        rates[name] = CRYPTO_OPS / best
    return {"suite": suite.jose_alg, **rates}  # type: ignore[dict-item]


def format_crypto(floor: Mapping[str, Any]) -> str:
    """The crypto floor line of the report."""
    return (
        f"Crypto floor ({floor['suite']}, one core, same run): sign {floor['sign_per_s']:,.0f}/s "
        f"({1e6 / floor['sign_per_s']:.0f} µs), verify {floor['verify_per_s']:,.0f}/s "
        f"({1e6 / floor['verify_per_s']:.0f} µs)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the report, save the JSON; 2 if the harness itself could not run."""
    opts = parse_args(argv)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    facts = machine_facts()
    try:
        measurements, pinnings = run(opts, log)
    except BenchError as exc:
        print(f"bench.http: {exc}", file=sys.stderr)
        return 2
    by_profile = {name: summarise(found) for name, found in measurements.items()}
    first = opts.profiles[0]
    rows = by_profile[first]
    log("crypto floor")
    cryptos = {name: crypto_floor(profile_named(name).suite) for name in opts.profiles}
    crypto = cryptos[first]
    document = build_document(facts, opts, pinnings, rows)
    document["crypto_floor"] = crypto
    if len(opts.profiles) > 1:
        document["profiles"] = profile_sections(by_profile, cryptos)
    overload = None
    if opts.overload:
        # Imported here: bench.overload builds on this module.
        from bench.overload import CROWD, IN_FLIGHT, LAG_MS, format_overload, run_overload

        log("overload: a /metrics scrape loop beside verify, then a crowd of connections")
        try:
            overload = run_overload(opts.duration_s, CROWD, IN_FLIGHT, LAG_MS, log)
        except BenchError as exc:
            # The scenarios' figures are kept: minutes of measurement are not lost to a late
            # failure, and the document says what failed.
            print(f"bench.http: overload: {exc}", file=sys.stderr)
            document["overload_error"] = str(exc)
            path = save(json_safe(document), opts.output_dir)
            print(f"Saved the scenarios' figures to {path}; overload failed", file=sys.stderr)
            return 2
        document["overload"] = overload
    path = save(json_safe(document), opts.output_dir)
    shown = {k: facts[k] for k in ("nproc", "cpu_model", "python", "aiohttp", "uvloop")}
    for name, found in by_profile.items():
        if len(by_profile) > 1:
            print(f"\n## Profile: {name}\n")
        print(format_report(found, shown))
        print(format_crypto(cryptos[name]))
    if len(by_profile) > 1:
        print(f"\n## The profiles side by side (one worker)\n\n{format_profiles(by_profile)}")
    lane = "on" if opts.fast_lane else "off (--no-fast-lane: aiohttp alone)"
    print(f"Services' fast lane for display and verify: {lane}")
    if overload is not None:
        print(f"\nOverload (bench/overload.py, one verifier worker):\n{format_overload(overload)}")
    took = time.monotonic() - started
    latest = PROFILES_LATEST if len(by_profile) > 1 else "latest.json"
    print(f"\nSaved {path} (and {path.parent / latest}); took {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
