"""The Locust daily mix, headless for a few seconds against real workers: zero failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeengine.code.cities import CITIES_DIR
from codeengine.ops.devcluster import DevCluster
from tests.e2e.helpers import free_port, get_json
from tests.e2e.test_services import worker

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"


def _load_client(tmp_path: Path, key_files: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The load test's own client, with every scope and a rate it will not reach."""
    credentials = tmp_path / "credentials.json"
    scopes = ["generate", "display", "convert", "verify"]
    client = {"client": "load", "scopes": scopes, "key": "load-key", "rate_per_s": 1e6}
    credentials.write_text(json.dumps({"clients": [client]}))
    return credentials, dict(key_files, keys_credentials_file=str(credentials))


def _stats(prefix: Path) -> dict[str, dict[str, str]]:
    with prefix.with_name(prefix.name + "_stats.csv").open() as handle:
        return {f"{row['Type']} {row['Name']}": row for row in csv.DictReader(handle)}


def test_daily_mix_runs_without_a_single_failure(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    credentials, files = _load_client(tmp_path, key_files)
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


def test_failover_drill_switches_to_the_backup_and_back_without_failing_a_request(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    credentials, files = _load_client(tmp_path, key_files)
    nodes = cluster.nodes_spec
    primary = {"issuer": free_port(), "verifier": free_port()}
    backup = {"issuer": free_port(), "verifier": free_port()}
    table = tmp_path / "cities"
    table.mkdir()
    for path in CITIES_DIR.glob("*.toml"):
        text = path.read_text(encoding="utf-8")
        if path.stem == "320500":
            # Point Suzhou's endpoints at this test's ports.
            lines = []
            section = ""
            for line in text.splitlines():
                if line.startswith("["):
                    section = line.strip("[]")
                for service in ("issuer", "verifier"):
                    if line.startswith(f"{service} ="):
                        port = (primary if section == "primary" else backup)[service]
                        line = f'{service} = "http://127.0.0.1:{port}"'
                lines.append(line)
            text = "\n".join(lines) + "\n"
        (table / path.name).write_text(text, encoding="utf-8")
    oplog = tmp_path / "oplog.jsonl"
    env = {"LOADTEST_CREDENTIALS": str(credentials), "LOADTEST_CITIES": str(table),
           "LOADTEST_CITY": "320500", "LOADTEST_OPLOG": str(oplog),
           "LOADTEST_PROBE_INTERVAL_S": "0.5", "PATH": "/usr/bin:/bin"}  # fmt: skip
    prefix = tmp_path / "drill"
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "FailoverDrillUser",
            "--headless", "--users", "6", "--spawn-rate", "6", "--run-time", "9s",
            "--host", "http://unused", "--csv", str(prefix), "--only-summary"]  # fmt: skip
    # The backup serves from the start; the primary is down, then comes up after 3 s.
    with (
        worker("issuer", backup["issuer"], cluster_nodes=nodes, **files),
        worker("verifier", backup["verifier"], cluster_nodes=nodes, **files),
    ):
        locust = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)  # fmt: skip
        try:
            time.sleep(3)
            with (
                worker("issuer", primary["issuer"], cluster_nodes=nodes, **files) as issuer,
                worker("verifier", primary["verifier"], cluster_nodes=nodes, **files),
            ):
                _, err = locust.communicate(timeout=120)
                acknowledged = [json.loads(line) for line in oplog.read_text().splitlines()]
                current = {
                    entry["subject"]: get_json(
                        f"{issuer}/v1/subjects/{entry['subject']}/code",
                        headers={"Authorization": "Bearer load-key"},
                    )[1]
                    for entry in acknowledged
                }
        finally:
            if locust.poll() is None:
                locust.kill()
    rows = _stats(prefix)
    assert int(rows[" Aggregated"]["Failure Count"]) == 0, err[-3000:]
    for service in ("issuer", "verifier"):
        assert f"FAILOVER {service} primary->backup" in rows, sorted(rows)
        assert f"FAILOVER {service} backup->primary" in rows, sorted(rows)
    # Every acknowledged status change is still there: the subject's version is at least it.
    assert acknowledged, "the drill changed some colours"
    for entry in acknowledged:
        version = current[entry["subject"]]["version"]
        assert isinstance(version, int) and version >= entry["version"]
