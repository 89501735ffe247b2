"""Overload: what a ``/metrics`` scrape loop costs verify, and verify at thousands of connections.

    python -m bench.overload [--duration S] [--crowd N] [--in-flight N] [--lag-ms N]
                             [--in-flight-only]

``python -m bench.http`` runs the same after its scenarios (``--no-overload`` skips it) and adds
the figures to its JSON (``overload``) and report. Both parts use one verifier worker pinned as
``bench.http`` pins it, a throwaway cluster, and codes an issuer hands out:

* **Scrapes beside verify.** The verifier runs as ``make run`` runs it with several workers
  (``PROMETHEUS_MULTIPROC_DIR`` set) and serves ``/metrics`` on its management port. First a
  wrk of 8 connections loops on ``/metrics`` alone, and the worker's CPU over it is the share
  of a core the loop takes; then verify under wrk alone and beside the loop, three times in
  turn. The rates move with the host's noise more than with the loop; the CPU share does not.
* **A crowd of connections.** ``bench/crowd.py`` (not wrk, which times every answer alike and
  cannot make the refused client itself wait) opens ``--crowd`` connections (4,000) of verify,
  one request at a time on each, once per admission setting: none, the in-flight limit, the
  loop-lag limit, and the in-flight limit with clients that ignore ``Retry-After``. The report
  gives requests served per second, the latency of the served ones (p50, p99, max), of the
  refused ones and of all (p99), answers by status, and timeouts (no answer in 5 s). The load
  comes from one address standing in for many, so the per-source cap is lifted for loopback.
  ``--in-flight-only`` runs just the two rows of the in-flight limit (clients that wait the
  Retry-After and clients that ask again at once), without the scrape part: a quick
  before/after of a change to how refusals are handled.
"""

from __future__ import annotations

__all__ = ["CrowdResult", "ScrapeResult", "format_overload", "main", "run_overload"]

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import http
from codeengine.ops.devcluster import DevCluster, find_free_base_port

SCRAPE_CONNECTIONS = 8
SCRAPE_PAIRS = 3
"""Verify alone, then with the scrape loop, this many times in turn."""
CROWD = 4000
IN_FLIGHT = 256
LAG_MS = 20
VERIFY_CONNECTIONS = 50


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """Verify's rate without and with a scrape loop beside it, in the same run."""

    verify_alone_per_s: list[float]
    verify_scraped_per_s: list[float]
    scrapes_per_s: list[float]
    idle_scrape_cpu_share: float
    """The share of one core the worker spent on the scrape loop alone (no verify load): what
    the loop takes from the hot path, free of the host's noise in the rates."""
    idle_scrapes_per_s: float

    @property
    def cost(self) -> float:
        """The share of verify's rate the loop took (mean of the pairs)."""
        alone = sum(self.verify_alone_per_s) / len(self.verify_alone_per_s)
        scraped = sum(self.verify_scraped_per_s) / len(self.verify_scraped_per_s)
        return 1 - scraped / alone


@dataclass(frozen=True, slots=True)
class CrowdResult:
    """One admission setting under a crowd of connections (``bench/crowd.py``'s figures)."""

    setting: str
    honour_retry_after: bool
    """Whether a refused client waited the answer's Retry-After before asking again."""
    connections: int
    seconds: float
    ok_per_s: float
    ok_p50_ms: float
    ok_p99_ms: float
    ok_max_ms: float
    """Latency of the requests served (200), from sending to the whole answer."""
    refused_p99_ms: float
    all_p99_ms: float
    statuses: Mapping[str, int]
    timeouts: int
    early: int = 0
    """Requests sent before the Retry-After of the refusal before them had passed."""
    ok_p99_after_retry_after_ms: float = 0.0
    """Served p99 counted from the later of sending and the end of that Retry-After."""


def raise_open_files(wanted: int) -> None:
    """Raise this process's open-file limit (wrk and the workers inherit it) towards ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _start(name: str, env: Mapping[str, str], workdir: Path, pinning: http.Pinning) -> Any:
    group = http.ServerGroup(name, 1, env, workdir)
    group.start(pinning.server)
    group.wait_ready()
    return group


def _scrape_loop(port: int, seconds: int, pinning: http.Pinning) -> subprocess.Popen[str]:
    argv = [*http._taskset(pinning.load), "wrk", "-t", "1", "-c", str(SCRAPE_CONNECTIONS)]
    argv += ["-d", f"{seconds}s", "--latency", f"http://127.0.0.1:{port}/metrics"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def measure_scrapes(
    stack: http.Stack, fixture: http.Fixture, env: Mapping[str, str], seconds: int, log: Any
) -> ScrapeResult:
    """Verify alone and beside a scrape loop of the management port, in turn."""
    port = http._free_port()
    multiproc = fixture.workdir / "metrics-verifier"
    multiproc.mkdir(exist_ok=True)
    env = {
        **env,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "CODEENGINE_SERVICE_VERIFIER_MANAGEMENT_PORT": str(port),
    }
    group = _start("verifier", env, fixture.workdir, stack.pinning)
    alone, scraped, scrapes = [], [], []
    try:
        job = http._verify_job(fixture, seconds)
        http._wrk(stack, fixture, job, group.url, 2, VERIFY_CONNECTIONS)  # warm-up
        loop = _scrape_loop(port, seconds, stack.pinning)
        cpu_before, began = http._cpu_s(group.pids()), time.monotonic()
        text, _ = loop.communicate(timeout=seconds + 60)
        idle_share = (http._cpu_s(group.pids()) - cpu_before) / (time.monotonic() - began)
        idle_scrapes = http.parse_wrk(text).requests_per_s
        log(f"  scrape loop alone: {idle_scrapes:,.1f} scrapes/s, worker CPU {idle_share:.1%}")
        for _ in range(SCRAPE_PAIRS):
            out = http._wrk(stack, fixture, job, group.url, seconds, VERIFY_CONNECTIONS)
            alone.append(http.parse_wrk(out).requests_per_s)
            loop = _scrape_loop(port, seconds + 2, stack.pinning)
            time.sleep(1.0)  # the loop running before verify is measured
            out = http._wrk(stack, fixture, job, group.url, seconds, VERIFY_CONNECTIONS)
            scraped.append(http.parse_wrk(out).requests_per_s)
            text, _ = loop.communicate(timeout=seconds + 60)
            scrapes.append(http.parse_wrk(text).requests_per_s)
            log(
                f"  verify alone {alone[-1]:,.0f}/s, beside {SCRAPE_CONNECTIONS} scraping "
                f"connections {scraped[-1]:,.0f}/s ({scrapes[-1]:,.1f} scrapes/s)"
            )
        group.check_alive()
    finally:
        group.stop()
    return ScrapeResult(alone, scraped, scrapes, idle_share, idle_scrapes)


def measure_crowd(
    stack: http.Stack,
    fixture: http.Fixture,
    env: Mapping[str, str],
    seconds: int,
    crowd: int,
    setting: str,
    overrides: Mapping[str, str],
    honour: bool,
    log: Any,
) -> CrowdResult:
    """Verify under ``crowd`` connections with one admission setting."""
    env = {
        **env,
        # One address stands in for many clients here.
        "CODEENGINE_SERVICE_UNLIMITED_SOURCES": "127.0.0.0/8",
        "CODEENGINE_SERVICE_MAX_CONNECTIONS": str(max(10_000, 2 * crowd)),
        "CODEENGINE_SERVICE_BACKLOG": str(max(1024, crowd)),
        **overrides,
    }
    group = _start("verifier", env, fixture.workdir, stack.pinning)
    try:
        job = http._verify_job(fixture, seconds)
        http._wrk(stack, fixture, job, group.url, 2, VERIFY_CONNECTIONS)  # warm-up
        argv = [*http._taskset(stack.pinning.load), sys.executable, "-m", "bench.crowd"]
        argv += [group.url, str(job.data), str(crowd), str(seconds)]
        if not honour:
            argv.append("--ignore-retry-after")
        env_client = {**os.environ, "BENCH_AUTH": f"Bearer {fixture.keys['verify']}"}
        try:
            result = subprocess.run(
                argv,
                env=env_client,
                capture_output=True,
                text=True,
                timeout=seconds + 120,
                check=False,
                cwd=http.BENCH_DIR.parent,
            )
        except subprocess.TimeoutExpired:
            raise http.BenchError(
                f"bench.crowd gave no answer within {seconds + 120} s (a loaded host?)"
            ) from None
        if result.returncode != 0:
            raise http.BenchError(f"bench.crowd failed: {result.stderr[-2000:]}")
        group.check_alive()
    finally:
        group.stop()
    figures = json.loads(result.stdout)
    by_status = figures["statuses"]
    ok = by_status.get("200", {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0})
    found = CrowdResult(
        setting=setting,
        honour_retry_after=honour,
        connections=crowd,
        seconds=seconds,
        ok_per_s=ok["count"] / seconds,
        ok_p50_ms=ok["p50_ms"],
        ok_p99_ms=ok["p99_ms"],
        ok_max_ms=ok["max_ms"],
        refused_p99_ms=by_status.get("503", {}).get("p99_ms", 0.0),
        all_p99_ms=figures["all"]["p99_ms"],
        statuses={status: found["count"] for status, found in by_status.items()},
        timeouts=figures["timeouts"],
        early=figures["early"],
        ok_p99_after_retry_after_ms=figures["ok_after_retry_after"]["p99_ms"],
    )
    waits = "waiting Retry-After" if honour else "asking again at once"
    log(
        f"  {crowd} connections, {setting}, clients {waits}: {found.ok_per_s:,.0f} OK/s, "
        f"served p50 {found.ok_p50_ms:.1f} ms, p99 {found.ok_p99_ms:.1f} ms, max "
        f"{found.ok_max_ms:.0f} ms; refused p99 {found.refused_p99_ms:.1f} ms; all p99 "
        f"{found.all_p99_ms:.1f} ms; {found.statuses}, timeouts {found.timeouts}; "
        f"{found.early} sent early, served p99 from the Retry-After's end "
        f"{found.ok_p99_after_retry_after_ms:.1f} ms"
    )
    return found


def crowd_settings(in_flight: int, lag_ms: int) -> list[tuple[str, dict[str, str], bool]]:
    """The admission settings compared under the crowd, and whether its clients honour
    Retry-After (a client that does not is also measured, with the in-flight limit)."""
    limit = {"CODEENGINE_SERVICE_MAX_IN_FLIGHT": str(in_flight)}
    return [
        ("no admission control", {"CODEENGINE_SERVICE_MAX_IN_FLIGHT": "0"}, True),
        (f"in flight <= {in_flight}", limit, True),
        (f"in flight <= {in_flight}", limit, False),
        (
            f"loop lag <= {lag_ms} ms",
            {
                "CODEENGINE_SERVICE_MAX_IN_FLIGHT": "0",
                "CODEENGINE_SERVICE_MAX_LOOP_LAG_MS": str(lag_ms),
            },
            True,
        ),
    ]


def run_overload(
    seconds: int,
    crowd: int,
    in_flight: int,
    lag_ms: int,
    log: Callable[[str], None],
    in_flight_only: bool = False,
) -> dict[str, Any]:
    """Both parts on a throwaway cluster; the figures as a JSON-ready document."""
    raise_open_files(2 * crowd + 4096)
    cpus = sorted(os.sched_getaffinity(0))
    pinning = http.plan_pinning(cpus, 1)
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        workdir = Path(tmp)
        cluster = DevCluster(workdir / "cluster", find_free_base_port()).start()
        try:
            http._pin([proc.pid for proc in cluster.processes()], pinning.store, cpus)
            env = http._service_env(cluster, workdir, 1)
            fixture = http.Fixture(workdir, http._write_material(workdir, env))
            threads = max(1, len(pinning.load or cpus))
            stack = http.Stack(cluster, {}, pinning, threads)
            issuer = _start("issuer", env, workdir, pinning)
            try:
                fixture.issuer_url = issuer.url
                http._prepare_verify(fixture, issuer.url)
                log(f"overload: {pinning.note}")
                settings = crowd_settings(in_flight, lag_ms)
                if in_flight_only:
                    scrapes = None
                    settings = [row for row in settings if row[0].startswith("in flight")]
                else:
                    scrapes = measure_scrapes(stack, fixture, env, seconds, log)
                crowds = [
                    measure_crowd(stack, fixture, env, seconds, crowd, name, overrides, honour, log)
                    for name, overrides, honour in settings
                ]
            finally:
                issuer.stop()
        finally:
            cluster.stop()
    scraped = None
    if scrapes is not None:
        scraped = {**asdict(scrapes), "cost": scrapes.cost, "connections": SCRAPE_CONNECTIONS}
    return {
        "scrape": scraped,
        "crowd": [asdict(found) for found in crowds],
        "duration_s": seconds,
    }


def _scrape_line(scrape: Mapping[str, Any]) -> str:
    return (
        f"/metrics scrape loop ({scrape['connections']} connections, management port) beside "
        f"verify: verify {', '.join(f'{r:,.0f}' for r in scrape['verify_alone_per_s'])}/s "
        f"alone, {', '.join(f'{r:,.0f}' for r in scrape['verify_scraped_per_s'])}/s beside it "
        f"(cost {100 * scrape['cost']:.1f} %, goal <= 5 %); "
        f"{', '.join(f'{r:,.1f}' for r in scrape['scrapes_per_s'])} scrapes/s answered. "
        f"The loop alone: {scrape['idle_scrapes_per_s']:,.1f} scrapes/s, "
        f"{100 * scrape['idle_scrape_cpu_share']:.2f} % of the worker's core"
    )


def format_overload(document: Mapping[str, Any]) -> str:
    """The overload figures as the report's lines."""
    scrape = document["scrape"]
    lines = [] if scrape is None else [_scrape_line(scrape), ""]
    lines += [
        "| admission | clients wait Retry-After | connections | served/s | served p50 ms "
        "| served p99 ms | served max ms | refused p99 ms | all p99 ms | 200 | 503 | timeouts "
        "| sent early | served p99 ms from Retry-After's end |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in document["crowd"]:
        statuses = row["statuses"]
        lines.append(
            f"| {row['setting']} | {'yes' if row['honour_retry_after'] else 'no'} | "
            f"{row['connections']} | {row['ok_per_s']:,.0f} | {row['ok_p50_ms']:.1f} | "
            f"{row['ok_p99_ms']:.1f} | {row['ok_max_ms']:.0f} | {row['refused_p99_ms']:.1f} | "
            f"{row['all_p99_ms']:.1f} | {statuses.get('200', 0):,} | "
            f"{statuses.get('503', 0):,} | {row['timeouts']:,} | {row.get('early', 0):,} | "
            f"{row.get('ok_p99_after_retry_after_ms', 0.0):.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print the figures, save them under bench/results/."""
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--crowd", type=int, default=CROWD)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--lag-ms", type=int, default=LAG_MS)
    parser.add_argument("--in-flight-only", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=http.RESULTS_DIR)
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    try:
        document = run_overload(
            args.duration, args.crowd, args.in_flight, args.lag_ms, log, args.in_flight_only
        )
    except http.BenchError as exc:
        print(f"bench.overload: {exc}", file=sys.stderr)
        return 2
    document = {"schema": "codeengine.bench.overload/1", **document}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(http.json_safe(document), indent=2) + "\n"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = args.output_dir / f"overload-{stamp}.json"
    path.write_text(text)
    (args.output_dir / "overload-latest.json").write_text(text)
    print(format_overload(document))
    print(f"\nSaved {path} (and overload-latest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
