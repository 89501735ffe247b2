"""The records service as ``make run`` starts it (``codeengine serve records``), over real HTTP.

A crash between insert and acknowledge loses and doubles nothing; a verify burst on real
verifier workers leaves every answered scan in the records, counted against the verifiers' own
count of the verdicts they answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codeengine.code.identifiers import make_resident_id
from codeengine.code.scans import ScanEntry
from codeengine.ops.devcluster import DevCluster
from codeengine.ops.harness import Group, spawn
from codeengine.store.redisstore import RedisStore, StoreSettings
from tests.e2e.helpers import (
    HTTPCalls,
    Workers,
    dev_keys,
    eventually,
    free_port,
    service_env,
    service_workers,
    settled,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

CITY = 320500
HANG_GUARD_S = 90.0
"""Only against a hang: each wait ends as soon as what it waits for is there."""


@dataclass
class Records(HTTPCalls):
    """A records service process, its API keys and its metrics port."""

    port: int
    keys: dict[str, str]
    management_port: int
    group: Group

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching ``labels`` (0 if none)."""
        status, text = _get_text(f"http://127.0.0.1:{self.management_port}/metrics")
        assert status == 200
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def venue_rows(self, venue: str, window: tuple[int, int]) -> list[tuple[object, ...]]:
        """Every row of the venue in the window, page by page."""
        rows: list[tuple[object, ...]] = []
        cursor = ""
        while True:
            path = f"/v1/records/venues/{venue}/scans?from={window[0]}&to={window[1]}&limit=1000"
            answer = self.call("GET", path + (f"&cursor={cursor}" if cursor else ""),
                               scope="records:venue")  # fmt: skip
            assert answer.status == 200, answer.body
            page = answer.json()
            rows += [(s["at"], s["subject"], s["terminal"], s["result"]) for s in page["scans"]]
            if not page["next"]:
                return rows
            cursor = page["next"]


def _get_text(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return int(response.status), response.read().decode()


@contextmanager
def records_service(
    cluster: DevCluster,
    key_files: dict[str, str],
    folder: Path,
    *,
    ready: bool = True,
    **extra: str,
) -> Iterator[Records]:
    """``codeengine serve records`` on fresh ports, its data in ``folder``, ready unless told
    otherwise (a process that is to end by itself); SIGTERM at the end."""
    port, management = free_port(), free_port()
    env = service_env(
        **cluster.client_settings("records"),
        keys_credentials_file=key_files["keys_credentials_file"],
        records_path=str(folder / "data"),
        records_port=str(port),
        records_management_port=str(management),
        records_poll_ms="50",
    )
    env.update(extra)
    argv = [sys.executable, "-m", "codeengine", "serve", "records"]
    group = Group()
    group.add(spawn("records", argv, env, folder / "records.log"))
    started = Records(port, dev_keys(key_files), management, group)
    try:
        if ready:
            wait_for(started.url + "/readyz", 200, HANG_GUARD_S)
        yield started
    finally:
        group.stop(10.0)


async def _write_scans(cluster: DevCluster, entries: list[ScanEntry]) -> None:
    store = RedisStore(
        StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
    )
    try:
        assert (
            await store.append_scans([e.packed() for e in entries], 10**7, os.urandom(8).hex())
            == []
        )
    finally:
        await store.close()


def test_a_crash_between_insert_and_acknowledge_loses_and_doubles_nothing(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    venue = f"crash-{os.urandom(4).hex()}"
    at = 1_800_000_000_000
    scans = [ScanEntry(f"t{i % 4}", venue, CITY, at + i, f"s{i:015d}", "VALID", "green")
             for i in range(2_000)]  # fmt: skip
    asyncio.run(_write_scans(cluster, scans))
    crash = {"CODEENGINE_FAILPOINT": "records.after_insert"}
    with records_service(cluster, key_files, tmp_path, ready=False, **crash) as first:
        (code,) = [first.group.children[0].proc.wait(timeout=HANG_GUARD_S)]
    assert code == 137, first.group.log_text()
    with records_service(cluster, key_files, tmp_path) as second:
        replayed = eventually(
            lambda: second.metric("codeengine_records_batches_total", outcome="replayed"),
            lambda n: n >= 1, HANG_GUARD_S,
        )  # fmt: skip
        assert replayed == 1
        waiting = eventually(
            lambda: second.metric("codeengine_records_lag_entries", table="scans", city=str(CITY)),
            lambda n: n == 0, HANG_GUARD_S,
        )  # fmt: skip
        assert waiting == 0
        rows = second.venue_rows(venue, (at, at + 10_000))
    assert len(rows) == 2_000, "none lost"
    assert len(set(rows)) == 2_000, "none doubled"
    assert sorted(str(r[1]) for r in rows) == sorted(s.subject for s in scans)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def test_every_scan_a_verify_burst_answered_is_in_the_records(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    keys = dev_keys(key_files)
    settings = {"cluster_nodes": cluster.nodes_spec, **key_files}
    metrics_dir = tmp_path / "verifier-metrics"
    metrics_dir.mkdir()
    venue = f"burst-{os.urandom(4).hex()}"
    with (
        service_workers(Workers, "issuer", 1, tmp_path, keys, settings) as issuer,
        service_workers(Workers, "verifier", 2, tmp_path, keys, settings,
                        {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as verifier,
        records_service(cluster, key_files, tmp_path) as records,
    ):  # fmt: skip
        ident = make_resident_id("320106", date(1990, 1, 1), secrets.randbelow(1000))
        person = {"kind": "person", "id": ident, "city": CITY}
        subject = issuer.ok("POST", "/v1/subjects", "generate", person)["subject"]
        token = issuer.ok("GET", f"/v1/subjects/{subject}/code", "display")["token"]
        body = json.dumps({"code": token, "terminal": "gate-1", "venue": venue, "city": CITY})
        script = tmp_path / "verify.lua"
        script.write_text(WRK_SCRIPT.format(body=json.dumps(body), key=keys["verify"]))
        wrk = subprocess.run(
            ["wrk", "-t2", "-c512", "-d20s", "--timeout", "5s", "-s", str(script),
             f"{verifier.url}/v1/verify"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        answered = settled(lambda: _verdicts(verifier.scrape()))
        assert answered > 1000, wrk.stdout
        stored = eventually(lambda: _stored(records, venue), lambda n: n >= answered, HANG_GUARD_S)
        assert stored == answered, (stored, answered, wrk.stdout)
        assert records.metric("codeengine_records_unreadable_total") == 0
        # The subject's creation reached the library too, through the issuer's change log.
        now = int(time.time() * 1000)
        path = f"/v1/records/subjects/{subject}/changes?from={now - 3_600_000}&to={now + 60_000}"
        created = eventually(
            lambda: records.call("GET", path, scope="records:subject").json()["changes"],
            lambda found: bool(found), HANG_GUARD_S,
        )  # fmt: skip
        assert [(c["op"], c["new_colour"], c["city"]) for c in created][:1] == [
            ("create", "green", CITY)
        ]


def _verdicts(exposition: str) -> float:
    """Verdicts the verifiers answered (each one logs a scan), all reasons and modes."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "codeengine_verifications_total" and sample.labels["city"] == str(
                CITY
            ):
                total += sample.value
    return total


def _stored(records: Records, venue: str) -> int:
    """The venue's scans the records service holds (its counts, over the last day and next)."""
    now = int(time.time() * 1000)
    window = f"from={now - 86_400_000}&to={now + 3_600_000}"
    path = f"/v1/records/counts?city={CITY}&venue={venue}&{window}&step=3600"
    answer = records.call("GET", path, scope="records:counts")
    assert answer.status == 200, answer.body
    return sum(row["scans"] for row in answer.json()["counts"])


def test_a_records_service_whose_consumer_cannot_run_stops_rather_than_store_nothing(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    # The services' user may not create a consumer group: the consumer's loop ends at once.
    login = {
        f"CODEENGINE_{k.upper()}": v
        for k, v in cluster.client_settings("codeengine").items()
        if k in {"cluster_username", "cluster_password_file"}
    }
    with records_service(cluster, key_files, tmp_path, ready=False, **login) as records:
        code = records.group.children[0].proc.wait(timeout=HANG_GUARD_S)
    assert code == 1, records.group.log_text()
    assert "a background loop ended" in records.group.log_text()
