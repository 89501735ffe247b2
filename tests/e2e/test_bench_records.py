"""The records benchmark end to end at a tiny size: every phase runs and the JSON has every
figure the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.records", "--rows", "20000", "--entries", "20000",
         "--rounds", "1", "--lag-rate", "2000", "--lag-seconds", "1", "--queries", "3",
         "--contacts", "2", "--path", str(tmp_path / "data"), "--output-dir",
         str(tmp_path / "results")],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "results" / "records-latest.json").read_text())
    ingest = document["ingest"]
    assert ingest["rounds"][0]["entries"] == ingest["rounds"][0]["filled"] > 19_000
    for figure in ("entries_per_s", "entries_per_cpu_s", "entries_per_cpu_s_with_merges"):
        assert ingest[figure]["median"] > 0
    lag = document["lag"]
    assert lag["rounds"][0]["written"] > 0 and lag["rounds"][0]["samples"] >= 1
    assert lag["oldest_age_s_max"]["median"] >= lag["oldest_age_s_p99"]["median"] >= 0
    load = document["load"]
    assert load["rows"] == 20_000 and load["days"] == 28 and load["bytes_per_row"] > 0
    queries = document["queries"]
    for name in ("venue_hour_popular", "venue_hour_typical", "subject_14_days",
                 "city_day_per_minute"):  # fmt: skip
        assert len(queries[name]["rounds"]) == 3
        assert queries[name]["max"] >= queries[name]["median"] > 0
    assert len(queries["contacts_14_days"]["rounds"]) == 2
    assert sum(queries["city_day_per_minute"]["rows"]) > 0
