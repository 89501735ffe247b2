"""The Locust daily mix, headless for a few seconds against real workers: zero failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from codeengine.devcluster import DevCluster
from tests.e2e.helpers import free_port
from tests.e2e.test_services import worker

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"


def test_daily_mix_runs_without_a_single_failure(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    # The load test's own client, with every scope and a rate it will not reach.
    credentials = tmp_path / "credentials.json"
    scopes = ["generate", "display", "convert", "verify"]
    client = {"client": "load", "scopes": scopes, "key": "load-key", "rate_per_s": 1e6}
    credentials.write_text(json.dumps({"clients": [client]}))
    files = dict(key_files, keys_credentials_file=str(credentials))
    nodes = cluster.nodes_spec
    with (
        worker("issuer", free_port(), cluster_nodes=nodes, **files) as issuer,
        worker("verifier", free_port(), cluster_nodes=nodes, **files) as verifier,
    ):
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "DailyMixUser",
             "--headless", "--users", "8", "--spawn-rate", "8", "--run-time", "6s",
             "--host", issuer, "--csv", str(tmp_path / "run"), "--only-summary",
             "--exit-code-on-error", "1"],
            env={"LOADTEST_CREDENTIALS": str(credentials), "LOADTEST_VERIFIER": verifier,
                 "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0, result.stderr[-3000:]
    assert int(rows["display"]["Request Count"]) > 20
    assert int(rows["verify"]["Request Count"]) > 20
    assert int(rows["generate"]["Request Count"]) >= 8 * 3, "each user generated its subjects"
