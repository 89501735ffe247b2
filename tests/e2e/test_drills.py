"""Short forms of the four failover drills: real clusters, real processes, real faults.

Each drill starts its own persistent Redis Cluster and one city's primary and backup issuer and
verifier, runs the mixed load through the failover client for 14 s, injects its fault at 4 s
and checks, from the store, that no acknowledged status change was lost. The full drills
(``codeengine drill NAME``: 60 s, fault at 20 s) hold the issue's goals; these hold the
zero-loss results exactly and the failure bounds a 14-s run can measure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codeengine.ops.drill import DrillOptions, run_drill

pytestmark = pytest.mark.cluster

SHORT = {"duration_s": 14.0, "fault_at_s": 4.0, "rate": 80.0, "subjects": 60}


def drill(name: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    options = DrillOptions(**{**SHORT, **overrides}, out_dir=tmp_path)
    summary, report = run_drill(name, options)
    assert json.loads(report.read_text()) == summary
    assert report.with_suffix(".md").read_text().startswith(f"# Drill `{name}`")
    # Every drill: nothing acknowledged is lost, nobody's record vanishes, and within each
    # subject's audit trail the writers' epochs never go back.
    assert summary["acknowledged_changes"] > 20, "the load did convert"
    assert summary["lost_changes"] == 0, summary["lost_examples"]
    assert summary["subjects_lost"] == 0
    assert summary["epoch_regressions"] == 0
    return summary


def test_kill_primary_moves_the_city_to_its_backup_and_fences_the_old_one(
    tmp_path: Path,
) -> None:
    s = drill("kill-primary", tmp_path, restore_after_s=3.0)
    assert s["first_served_by_backup_s"] is not None and s["first_served_by_backup_s"] <= 3.0
    assert s["lease_to_backup_s"] is not None and s["lease_to_backup_s"] <= 3.0
    assert s["old_epoch_writes_after_switch"] == 0
    assert s["failed_fraction"] <= 0.005, s["failures_by_outcome"]
    whys = [switch["why"] for switch in s["lease_switches"]]
    assert "lease_expired" in whys and whys[-1] == "handback", "back to the restarted primary"
    assert s["back_on_primary_after_restore_s"] is not None
    assert s["passed"], s["goals"]


def test_kill_redis_master_loses_nothing_and_fails_few_requests_with_503(
    tmp_path: Path,
) -> None:
    s = drill("kill-redis-master", tmp_path)
    assert s["all_failures_503_with_reason"], s["failures_by_outcome"]
    assert s["failed_fraction"] <= 0.01, s["failures_by_outcome"]
    assert s["affected_shard_recovery_s"] <= 5.0
    assert s["unaffected_throughput_ratio"] >= 0.5


def test_planned_failover_fails_no_request(tmp_path: Path) -> None:
    s = drill("planned-failover", tmp_path, restore_after_s=6.0)
    assert s["failed"] == 0, s["failures_by_outcome"]
    assert "planned" in [switch["why"] for switch in s["lease_switches"]]
    assert s["passed"], s["goals"]


def test_pause_redis_master_keeps_every_request_within_its_deadline(tmp_path: Path) -> None:
    s = drill("pause-redis-master", tmp_path, pause_s=4.0)
    assert s["over_deadline"] == 0, s["max_latency_s"]
    assert s["all_failures_503_with_reason"], s["failures_by_outcome"]
