"""The capacity plan: its arithmetic, and that docs/capacity.md is what the command writes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.capacity import (
    LOCUST_RPS_PER_CORE,
    MIN_MASTERS,
    UTILISATION,
    Inputs,
    largest_city_share,
    main,
    plan,
    render,
)

ROOT = Path(__file__).resolve().parents[2]


def _row(scenario: str, server_us: float, store_us: float, workers: int = 1) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "workers": workers,
        "server_cpu_us_per_request": server_us,
        "store_cpu_us_per_request": store_us,
        "requests_per_s": 1e6 / server_us,
    }


def _document(**costs: tuple[float, float]) -> dict[str, Any]:
    base = {
        "framework-floor": (50.0, 0.0),
        "display": (100.0, 10.0),
        "verify": (200.0, 20.0),
        "generate-new": (1000.0, 100.0),
    }
    base.update({k.replace("_", "-"): v for k, v in costs.items()})
    rows = [_row(name, *cost) for name, cost in base.items()]
    rows.append(_row("display", 1.0, 1.0, workers=2))  # ignored: the plan uses one worker
    machine = {"date": "2026-01-01T00:00:00+00:00", "git_commit": "abc", "nproc": 2}
    return {"machine": machine, "results": rows, "scale_out": []}


def test_cores_follow_the_measured_cost_and_the_mix() -> None:
    result = plan(Inputs.from_results(_document(), "r.json"), target_rps=100_000)
    daily = result.daily
    # display 50 % at 100 us, convert 2 % and generate 3 % at 1000 us, on the issuer:
    issuer = (50_000 * 100 + 3_000 * 1000 + 2_000 * 1000) / 1e6 / UTILISATION
    verifier = 45_000 * 200 / 1e6 / UTILISATION
    assert daily.issuer_processes == math.ceil(issuer)
    assert daily.verifier_processes == math.ceil(verifier)
    assert daily.backup_processes == math.ceil((issuer + verifier) * largest_city_share())
    assert largest_city_share() == pytest.approx(12.75 / 84.75, abs=0.001)  # Suzhou
    redis = (50_000 * 10 + 45_000 * 20 + 5_000 * 100) / 1e6 / UTILISATION
    assert daily.redis_masters == max(MIN_MASTERS, math.ceil(redis))
    assert daily.redis_replicas == daily.redis_masters
    assert daily.locust_workers == math.ceil(100_000 / LOCUST_RPS_PER_CORE)
    assert result.mean_server_us == pytest.approx(0.5 * 100 + 0.45 * 200 + 0.05 * 1000)


def test_the_peak_is_three_times_the_daily_load() -> None:
    result = plan(Inputs.from_results(_document(), "r.json"))
    assert result.peak.rps == 3 * result.daily.rps
    for operation, (rps, service, store) in result.daily.per_operation.items():
        assert result.peak.per_operation[operation] == pytest.approx((3 * rps, 3 * service,
                                                                      3 * store))  # fmt: skip


def test_a_plan_over_budget_names_the_floor_as_the_cost_in_the_way() -> None:
    page = render(plan(Inputs.from_results(_document(), "r.json")), "cmd")
    assert "does not fit in 16 cores" in page
    assert "framework floor alone" in page and "50.0 µs" in page
    assert "budget of 56.0 µs" in page and "leaves 6.0 µs" in page
    slow_floor = render(plan(Inputs.from_results(_document(framework_floor=(60.0, 0)), "r")), "c")
    assert "The budget is below the framework floor" in slow_floor
    cheap = _document(framework_floor=(5.0, 0), display=(8.0, 1), verify=(8.0, 1),
                      generate_new=(20.0, 2))  # fmt: skip
    cheap_page = render(plan(Inputs.from_results(cheap, "r.json")), "cmd")
    assert "fits in 16 cores" in cheap_page and "does not fit" not in cheap_page


def test_a_results_file_without_a_needed_scenario_is_refused() -> None:
    document = _document()
    document["results"] = [r for r in document["results"] if r["scenario"] != "verify"]
    with pytest.raises(ValueError, match="verify"):
        Inputs.from_results(document, "r.json")


def test_the_command_reports_a_bad_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["--results", str(bad), "--output", str(tmp_path / "out.md")]) == 2
    assert not (tmp_path / "out.md").exists()


def test_docs_capacity_is_generated_from_the_latest_results(tmp_path: Path) -> None:
    out = tmp_path / "capacity.md"
    assert main(["--results", "bench/results/latest.json", "--output", str(out)]) == 0
    latest = json.loads((ROOT / "bench/results/latest.json").read_text())
    committed = (ROOT / "docs/capacity.md").read_text()
    assert committed == out.read_text(), "docs/capacity.md is stale: run make capacity"
    assert latest["machine"]["date"] in committed


def test_the_records_tier_sizes_cores_and_disk_from_the_records_bench() -> None:
    from bench.capacity import records_tier

    document = {
        "machine": {"date": "2026-01-01", "git_commit": "abc"},
        "ingest": {"entries_per_cpu_s_with_merges": {"median": 100_000.0}},
        "load": {"bytes_per_row": 20.0, "rows": 1_000_000},
    }
    page = "\n".join(records_tier(document, "r.json"))
    # 90,000 scans/s (verify's 45 % of 200,000) / 100,000 per CPU-s / 0.7 -> 2 cores; the
    # peak 270,000 -> 4. Disk: 90,000 * 86,400 * 28 * 20 bytes = 4.4 TB.
    assert "| records cores (ingest, 70% utilisation) | 2 | 4 |" in page
    assert "| disk for 28 days, one copy | 4.4 TB | 13.1 TB |" in page
    assert "217.7 billion" in page


def test_both_profiles_are_planned_under_each_assumption_from_one_run() -> None:
    from bench.capacity_profiles import profile_plans, profiles_tier

    def section(**costs: tuple[float, float]) -> dict[str, Any]:
        return {
            "results": _document(**costs)["results"],
            "crypto_floor": {"suite": "S", "sign_per_s": 1000.0, "verify_per_s": 500.0},
        }

    document: dict[str, Any] = {
        "machine": {"date": "2026-01-01", "git_commit": "abc"},
        "config": {"rounds": 3, "duration_s": 5, "scenarios": ["f", "s", "display"]},
        "profiles": {
            "international": section(display_refresh=(150.0, 10.0), verify_degraded=(140.0, 0.0)),
            "national": section(display_refresh=(400.0, 10.0), verify_degraded=(700.0, 0.0)),
        },
    }
    plans = profile_plans(document, "p.json")
    cached = plans["national"]["displays cached, store up"].daily
    # Cached displays and online verifies cost what the one-profile plan's inputs say.
    assert cached.total_cores == plan(Inputs.from_results(_document(), "r")).daily.total_cores
    signing = plans["national"]["every display signs"].daily
    # display 100,000/s at 400 us instead of 100: 30 more issuer cores at 70 %.
    assert signing.per_operation["display"][1] == pytest.approx(100_000 * 400 / 1e6 / UTILISATION)
    degraded = plans["national"]["store down: every verify degraded"].daily
    assert degraded.per_operation["verify"][1] == pytest.approx(90_000 * 700 / 1e6 / UTILISATION)
    assert (
        degraded.total_cores
        > plans["international"]["store down: every verify degraded"].daily.total_cores
    )
    page = "\n".join(profiles_tier(document, "p.json"))
    assert "| `display-refresh` | 150.0 | 400.0 | 2.67 |" in page
    assert "| `verify-degraded` | 140.0 | 700.0 | 5.00 |" in page
    assert f"| **displays cached, store up** | {cached.total_cores} (" in page
    # Without the degraded scenario there is no plan that needs it, and the rest stay.
    national = document["profiles"]["national"]
    national["results"] = [r for r in national["results"] if r["scenario"] != "verify-degraded"]
    thinner = profile_plans(document, "p.json")["national"]
    assert "every display signs" in thinner and "both" not in thinner
