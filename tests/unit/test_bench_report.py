"""The HTTP bench harness's pure parts: wrk parsing, CPU accounting, ratios and the report."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from bench.http import (
    FRAMEWORK,
    STORE,
    BenchError,
    Measurement,
    Pinning,
    WrkStats,
    _service_env,
    cpu_us_per_request,
    format_report,
    format_table,
    fresh_resident_ids,
    goals,
    json_safe,
    median_round,
    parse_args,
    parse_cpu_model,
    parse_proc_stat,
    parse_workers,
    parse_wrk,
    plan_pinning,
    resolve_scenarios,
    scale_out,
    security_costs,
    stat_cpu_ticks,
    status_note,
    summarise,
)
from codeengine.code.identifiers import parse_identifier
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import load_settings

# Real wrk 4.1 output, a clean run (no socket-error line when there were none).
WRK_CLEAN = """\
Running 2s test @ http://127.0.0.1:18999/floor
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.44ms  846.09us  10.47ms   87.86%
    Req/Sec     7.36k     0.93k    8.93k    50.00%
  Latency Distribution
     50%    1.23ms
     75%    1.54ms
     90%    2.21ms
     99%    4.93ms
  14656 requests in 2.00s, 2.45MB read
Requests/sec:   7320.81
Transfer/sec:      1.22MB
"""

# A troubled run in other units, with the generate script's status lines after the summary.
WRK_TROUBLED = """\
Running 1m test @ http://127.0.0.1:8080/
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   850.00us    1.20ms    1.50s    95.00%
    Req/Sec     1.00k   100.00     1.20k    70.00%
  Latency Distribution
     50%  612.00us
     75%  900.00us
     90%    1.10ms
     99%    1.02s
  120000 requests in 1.00m, 30.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 7
  Non-2xx or 3xx responses: 42
Requests/sec:   1999.50
Transfer/sec:    512.00KB
status 201: 119958
status 503: 42
"""


def test_parse_wrk_clean_run() -> None:
    stats = parse_wrk(WRK_CLEAN)
    assert stats.requests == 14656
    assert stats.duration_s == pytest.approx(2.0)
    assert stats.requests_per_s == pytest.approx(7320.81)
    assert stats.latency_avg_ms == pytest.approx(1.44)
    assert stats.latency_max_ms == pytest.approx(10.47)
    assert (stats.p50_ms, stats.p75_ms, stats.p90_ms, stats.p99_ms) == pytest.approx(
        (1.23, 1.54, 2.21, 4.93)
    )
    assert stats.errors == 0 and stats.socket_errors == {} and stats.statuses == {}


def test_parse_wrk_units_errors_and_statuses() -> None:
    stats = parse_wrk(WRK_TROUBLED)
    assert stats.duration_s == pytest.approx(60.0), "1.00m is a minute"
    assert stats.latency_avg_ms == pytest.approx(0.85), "microseconds"
    assert stats.latency_max_ms == pytest.approx(1500.0), "seconds"
    assert stats.p50_ms == pytest.approx(0.612)
    assert stats.p99_ms == pytest.approx(1020.0)
    assert stats.socket_errors == {"connect": 0, "read": 3, "write": 1, "timeout": 7}
    assert stats.non_2xx == 42
    assert stats.errors == 42 + 11
    assert stats.statuses == {201: 119958, 503: 42}


def test_parse_wrk_refuses_what_is_not_a_report() -> None:
    with pytest.raises(BenchError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
    without_percentiles = WRK_CLEAN.replace("     99%    4.93ms\n", "")
    with pytest.raises(BenchError):
        parse_wrk(without_percentiles)


def test_stat_cpu_ticks_sums_utime_and_stime_past_an_awkward_name() -> None:
    # Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    #         utime stime cutime cstime ...; the name holds spaces and a parenthesis.
    stat = "4242 (py (worker) 1) S 1 4242 4242 0 -1 4194304 100 0 0 0 1234 567 89 10 20 0 3 0"
    assert stat_cpu_ticks(stat) == 1234 + 567, "children's cutime/cstime are not counted"


def test_parse_proc_stat_busy_and_steal() -> None:
    text = (
        "cpu  100 5 30 9000 7 2 3 11 0 0\n"
        "cpu0 50 5 15 4500 3 1 1 6 0 0\n"
        "cpu1 50 0 15 4500 4 1 2 5 0 0\n"
        "intr 1 2 3\n"
    )
    ticks = parse_proc_stat(text)
    assert (ticks.busy, ticks.steal) == (100 + 5 + 30 + 2 + 3, 11), "idle and iowait are not busy"
    assert ticks.used_by_core == {0: 50 + 5 + 15 + 1 + 1 + 6, 1: 50 + 15 + 1 + 2 + 5}
    with pytest.raises(BenchError):
        parse_proc_stat("intr 1 2 3\n")


def test_cpu_per_request() -> None:
    assert cpu_us_per_request(2.5, 10_000) == pytest.approx(250.0)
    assert math.isnan(cpu_us_per_request(1.0, 0))


@pytest.mark.parametrize(
    ("cpus", "workers", "expected"),
    [
        ([0, 1], 1, Pinning((0,), (1,), (1,))),
        ([0, 1], 2, Pinning(None, None, None)),
        ([0, 1, 2, 3], 1, Pinning((0,), (1,), (2, 3))),
        ([0, 1, 2, 3, 4, 5, 6, 7], 2, Pinning((0, 1), (2, 3, 4), (5, 6, 7))),
        ([4, 5, 6], 1, Pinning((4,), (5,), (6,))),
    ],
)
def test_plan_pinning(cpus: list[int], workers: int, expected: Pinning) -> None:
    assert plan_pinning(cpus, workers) == expected


def test_pinning_note() -> None:
    assert "redis on 1 (shared)" in Pinning((0,), (1,), (1,)).note
    assert "not pinned" in Pinning(None, None, None).note


def _stats(rps: float, requests: int | None = None) -> WrkStats:
    """Ten seconds at ``rps``."""
    return WrkStats(
        requests=int(rps * 10) if requests is None else requests,
        duration_s=10.0,
        requests_per_s=rps,
        latency_avg_ms=1.0,
        latency_max_ms=9.0,
        p50_ms=1.0,
        p75_ms=1.5,
        p90_ms=2.0,
        p99_ms=4.0,
    )


def _m(scenario: str, rps: float, server_cpu_s: float = 9.9, workers: int = 1) -> Measurement:
    return Measurement(
        scenario=scenario,
        workers=workers,
        wrk=_stats(rps),
        server_cpu_s=server_cpu_s,
        store_cpu_s=1.0,
        load_cpu_s=2.0,
        server_cores=workers,
        machine_cpu_s=server_cpu_s + 3.0,
        window_s=10.0,
    )


def test_summarise_ratios_against_the_floors_of_the_same_worker_count() -> None:
    rows = summarise(
        [
            _m(FRAMEWORK, 10_000, server_cpu_s=9.9),
            _m(STORE, 8_000, server_cpu_s=9.9),
            _m("display", 6_500, server_cpu_s=9.9),
            _m(FRAMEWORK, 18_000, server_cpu_s=19.8, workers=2),
            _m("display", 12_000, server_cpu_s=19.8, workers=2),
        ]
    )
    by = {(r.scenario, r.workers): r for r in rows}
    display = by[("display", 1)]
    assert display.vs_framework_floor == pytest.approx(0.65)
    assert display.vs_store_floor == pytest.approx(6_500 / 8_000)
    assert display.server_cpu_us_per_request == pytest.approx(9.9e6 / 65_000)
    assert display.cpu_vs_framework_floor == pytest.approx(100_000 / 65_000)
    assert display.store_cpu_us_per_request == pytest.approx(1e6 / 65_000)
    assert display.server_cores_busy == pytest.approx(0.99)
    assert by[(FRAMEWORK, 1)].vs_framework_floor == pytest.approx(1.0)
    assert by[("display", 2)].vs_framework_floor == pytest.approx(12_000 / 18_000)
    assert by[("display", 2)].vs_store_floor is None, "no store floor at 2 workers"
    assert not any(r.notes for r in rows), "saturated and quiet: nothing to say"


def test_summarise_notes_idle_servers_and_noise() -> None:
    slow = Measurement(
        scenario="generate",
        workers=1,
        wrk=_stats(1_000),
        server_cpu_s=5.0,
        store_cpu_s=1.0,
        load_cpu_s=1.0,
        server_cores=1,
        machine_cpu_s=5.0 + 2.0 + 4.0,  # 4 s of someone else's work over 10 s
        steal_s=1.0,
        window_s=10.0,
    )
    (row,) = summarise([slow])
    assert row.other_cores_busy == pytest.approx(0.5)
    assert any("not server-bound" in note for note in row.notes)
    assert any("0.50 cores: noisy" in note for note in row.notes)
    crowded = replace(slow, server_cores_used_s=9.8)
    (row,) = summarise([crowded])
    assert any("other processes crowded them out" in note for note in row.notes)
    assert not any("not server-bound" in note for note in row.notes)
    unpinned = replace(_m("generate", 1_000, 5.0), pinned=False)
    (row,) = summarise([unpinned])
    assert not any("not server-bound" in note for note in row.notes), "sharing is expected"


def test_other_cpu_never_negative() -> None:
    m = Measurement("x", 1, _stats(10), 5.0, 1.0, 1.0, 1, machine_cpu_s=6.0)
    assert m.other_cpu_s == 0.0


def test_goals_reported_per_worker_count() -> None:
    rows = summarise(
        [
            _m(FRAMEWORK, 10_000),
            _m("display", 6_000),
            _m(FRAMEWORK, 20_000, workers=2),
            _m("display", 11_000, workers=2),
        ]
    )
    found = {g.workers: g for g in goals(rows)}
    assert found[1].met and found[1].ratio == pytest.approx(0.6), "the bound itself is met"
    assert not found[2].met and found[2].ratio == pytest.approx(0.55)
    assert "0.55 (NOT met)" in found[2].text
    assert goals(summarise([_m("display", 5_000)])) == [], "no floor, no goal"


def test_scale_out_efficiency() -> None:
    rows = summarise([_m("display", 5_000), _m("display", 9_000, workers=2), _m("x", 1, workers=2)])
    (only,) = scale_out(rows)
    assert (only.scenario, only.workers) == ("display", 2)
    assert only.efficiency == pytest.approx(0.9)


def test_median_round_keeps_every_rounds_rate() -> None:
    rates = [5_000.0, 3_000.0, 4_000.0]
    rounds = [_m("display", rps) for rps in rates]
    chosen = median_round(rounds)
    assert chosen.wrk.requests_per_s == pytest.approx(4_000.0)
    assert list(chosen.rounds_rps) == rates
    lower = median_round(rounds[:2])
    assert lower.wrk.requests_per_s == pytest.approx(3_000.0), "the lower of two middles"
    assert len(median_round(rounds[:1]).rounds_rps) == 0, "one round: nothing to list"
    (row,) = summarise([chosen])
    assert row.rounds_requests_per_s == rates
    assert any("median of 3 rounds (req/s: 5,000, 3,000, 4,000)" in n for n in row.notes)
    with pytest.raises(ValueError):
        median_round([])


def test_table_and_report() -> None:
    rows = summarise(
        [
            _m(FRAMEWORK, 10_000),
            _m(STORE, 8_000),
            _m("display", 5_500),
            _m("generate", 1_200),
            _m(FRAMEWORK, 19_000, workers=2),
            _m("display", 10_000, workers=2),
        ]
    )
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| workers | operation | req/s | p50 ms | p99 ms |")
    assert len(lines) == 2 + len(rows)
    assert "| 1 | display | 5,500 | 1.00 | 4.00 | 180.0 | 0.55 | 0.69 | 0 |" in lines
    assert "| 2 | display | 10,000 | 1.00 | 4.00 | 99.0 | 0.53 | - | 0 |" in lines
    report = format_report(rows, {"nproc": 2, "cpu_model": "AMD EPYC"})
    assert report.startswith(table)
    assert "cached display >= 0.60 x framework floor, 1 worker(s): 0.55 (NOT met)" in report
    assert "| display | 2 | 5,500 | 10,000 | 0.91 |" in report
    assert report.endswith("Machine: nproc 2, cpu_model AMD EPYC")


def test_table_shows_a_dash_for_what_is_not_a_number() -> None:
    empty = Measurement("display", 1, _stats(0.0, requests=0), 0.0, 0.0, 0.0, 1)
    (row,) = summarise([empty])
    assert "| 1 | display | 0 | 1.00 | 4.00 | - | - | - | 0 |" in format_table([row])


def test_json_safe_turns_nan_into_null() -> None:
    value = {"a": [1.0, float("nan")], "b": {"c": float("nan")}, "d": "x"}
    assert json_safe(value) == {"a": [1.0, None], "b": {"c": None}, "d": "x"}


def test_status_note() -> None:
    assert status_note({200: 25, 201: 75}) == "201: 75 (75.0%), 200: 25 (25.0%)"


def test_fresh_resident_ids_are_valid_and_distinct() -> None:
    ids = [identifier for _, identifier in zip(range(2_500), fresh_resident_ids(), strict=False)]
    assert len(set(ids)) == len(ids)
    for identifier in ids[::250]:
        parse_identifier("person", identifier, date(2026, 1, 1))


def test_parse_workers() -> None:
    assert parse_workers("1,2") == [1, 2]
    assert parse_workers("4") == [4]
    for bad in ("", "0", "1,1", "one", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_workers(bad)


def test_resolve_scenarios_puts_the_floors_first_once() -> None:
    names = [s.name for s in resolve_scenarios("generate,display,framework-floor")]
    assert names == [FRAMEWORK, STORE, "generate", "display"]
    assert [s.name for s in resolve_scenarios("")] == [FRAMEWORK, STORE]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown scenario"):
        resolve_scenarios("display,teleport")


def test_parse_cpu_model() -> None:
    assert parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n") == (
        "AMD EPYC 7B13"
    )
    assert parse_cpu_model("processor\t: 0\n") == "unknown"


def test_the_crypto_floor_line_gives_rates_and_microseconds() -> None:
    from bench.http import format_crypto

    line = format_crypto({"suite": "EdDSA", "sign_per_s": 25_000.0, "verify_per_s": 10_000.0})
    assert line == (
        "Crypto floor (EdDSA, one core, same run): sign 25,000/s (40 µs), verify 10,000/s (100 µs)"
    )


def test_no_fast_lane_reaches_the_services_settings(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path / "cluster", 7000, secure=False)  # never started
    assert parse_args([]).fast_lane
    opts = parse_args(["--no-fast-lane"])
    assert not opts.fast_lane
    env = _service_env(cluster, tmp_path, 1, opts.fast_lane)
    assert env["CODEENGINE_SERVICE_FAST_LANE"] == "false"
    assert load_settings(None, env).service.fast_lane is False
    on = _service_env(cluster, tmp_path, 1)
    assert load_settings(None, on).service.fast_lane is True


def test_a_plain_cluster_reaches_the_services_as_tls_off_and_no_login(tmp_path: Path) -> None:
    cluster = DevCluster(tmp_path / "cluster", 7000, secure=False)  # never started
    settings = load_settings(None, _service_env(cluster, tmp_path, 1)).cluster
    assert (settings.tls, settings.username, settings.password_file) == (False, "", "")
    assert settings.nodes == cluster.nodes_spec


def test_secure_vs_plain_pairs_each_scenario_with_its_twin_of_the_same_worker_count() -> None:
    rows = summarise(
        [
            _m("display", 9000.0),
            _m("display", 17000.0, workers=2),
            _m("verify", 7000.0, server_cpu_s=9.1),
            _m("display-plain", 10000.0, server_cpu_s=9.0),
            _m("verify-plain", 7000.0),
        ]
    )
    costs = security_costs(rows)
    assert [(c.scenario, c.workers) for c in costs] == [("display", 1), ("verify", 1)]
    assert costs[0].ratio == pytest.approx(0.9) and costs[0].met
    assert (costs[0].secure_cpu_us, costs[0].plain_cpu_us) == pytest.approx((110.0, 90.0))
    assert costs[0].cpu_ratio == pytest.approx(90.0 / 110.0)
    assert costs[1].ratio == pytest.approx(1.0)
    slow = security_costs(summarise([_m("verify", 8000.0), _m("verify-plain", 10000.0)]))
    assert slow[0].ratio == pytest.approx(0.8) and not slow[0].met
    assert "0.80 (goal >= 0.85, NOT met" in slow[0].text
    report = format_report(rows)
    assert "TLS + ACL (reported, not asserted): display secure/plain, 1 worker(s): 0.90" in report
    assert parse_args([]).plain and not parse_args(["--no-plain"]).plain


# Several crypto profiles in one run ------------------------------------------------------------


def test_profiles_parse_in_order_and_profile_stays_the_one_profile_flag() -> None:
    from bench.http import parse_profiles

    assert parse_args([]).profiles == ("international",)
    assert parse_args(["--profile", "national"]).profiles == ("national",)
    both = parse_args(["--profiles", "national,international"])
    assert both.profiles == ("national", "international"), "the first is the one at the top"
    for bad in ("", "international,international", "national,sm9"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_profiles(bad)
    with pytest.raises(SystemExit):
        parse_args(["--profile", "national", "--profiles", "international,national"])


def test_each_profile_gets_its_median_rounds_and_the_floors_measured_once() -> None:
    from bench.http import medians_by_profile

    floor = [_m(FRAMEWORK, 10_000.0), _m(FRAMEWORK, 12_000.0), _m(FRAMEWORK, 11_000.0)]
    rounds = {
        ("international", FRAMEWORK): floor,
        ("international", "display"): [_m("display", 8_000.0), _m("display", 7_000.0)],
        ("national", "display"): [_m("display", 3_000.0)],
    }
    found = medians_by_profile(["international", "national"], rounds)
    assert [m.scenario for m in found["international"]] == [FRAMEWORK, "display"]
    assert [m.scenario for m in found["national"]] == [FRAMEWORK, "display"]
    assert found["national"][0] is found["international"][0], "one floor for both"
    assert found["national"][0].wrk.requests_per_s == pytest.approx(11_000.0)
    assert found["international"][1].wrk.requests_per_s == pytest.approx(7_000.0)
    assert found["national"][1].wrk.requests_per_s == pytest.approx(3_000.0)


def test_a_two_profile_document_keeps_the_first_at_the_top_and_each_under_its_name() -> None:
    from bench.capacity import Inputs
    from bench.http import build_document, format_profiles, profile_sections

    floors = [_m(FRAMEWORK, 10_000.0, server_cpu_s=4.0), _m(STORE, 9_000.0, server_cpu_s=4.0)]
    costs = {"international": (8_000.0, 5.0), "national": (2_000.0, 8.0)}
    rows = {
        name: summarise(
            [
                *floors,
                *(_m(s, rps, server_cpu_s=cpu) for s in ("display", "verify", "generate-new")),
            ]
        )
        for name, (rps, cpu) in costs.items()
    }
    crypto = {
        "international": {"suite": "EdDSA", "sign_per_s": 50_000.0, "verify_per_s": 18_000.0},
        "national": {"suite": "SM2SM3", "sign_per_s": 4_000.0, "verify_per_s": 1_800.0},
    }
    opts = parse_args(["--profiles", "international,national", "--workers", "1"])
    document = build_document({"date": "d"}, opts, {}, rows["international"])
    document["profiles"] = profile_sections(rows, crypto)
    assert document["config"]["profiles"] == ["international", "national"]
    # Readers of a one-profile file (bench.capacity) find the first profile where they look.
    assert document["results"] == document["profiles"]["international"]["results"]
    national = document["profiles"]["national"]
    assert national["crypto_floor"]["suite"] == "SM2SM3"
    by_name = {r["scenario"]: r for r in national["results"]}
    assert by_name[FRAMEWORK]["requests_per_s"] == pytest.approx(10_000.0), "the shared floor"
    assert by_name["display"]["vs_framework_floor"] == pytest.approx(0.2)
    inputs = Inputs.from_results({**document, **national}, "r.json")
    assert inputs.server_us["display"] == pytest.approx(8.0 * 1e6 / 20_000)
    table = format_profiles(rows).splitlines()
    assert table[0].startswith("| operation | international req/s | international µs/req |")
    assert table[0].endswith("| national ÷ international (CPU) |")
    # display: 5 s of CPU over 80,000 requests against 8 s over 20,000: 62.5 against 400 µs.
    assert "| display | 8,000 | 62.5 | 2,000 | 400.0 | 6.40 |" in table


def test_job_notes_say_when_a_fresh_list_ran_out_and_how_many_answers_were_degraded() -> None:
    from bench.http import WrkJob, job_notes

    fresh = WrkJob("/", "display.lua", Path("paths.txt"), "display", distinct=1_000)
    assert job_notes(fresh, _stats(50.0, requests=1_000)) == []
    (note,) = job_notes(fresh, _stats(50.0, requests=1_250))
    assert "the list of 1,000 ran out: 250 of 1,250 requests repeated one" in note
    counted = replace(_stats(50.0, requests=700), counts={"degraded": 690})
    plain = WrkJob("/", "verify.lua", Path("codes.txt"), "verify")
    assert job_notes(plain, counted) == ["690 of 700 answers degraded"]


def test_parse_wrk_reads_the_scripts_counts() -> None:
    stats = parse_wrk(WRK_CLEAN + "status 200: 14656\ncount degraded: 14000\n")
    assert stats.counts == {"degraded": 14_000}
    assert stats.statuses == {200: 14_656}
    assert parse_wrk(WRK_CLEAN).counts == {}
