"""Data return to cities on the embedded engine: a city's China day and nothing else, files the
engine reads back with the rows and SHA-256 the manifest states, the same bytes from the records
service over HTTP (as the command asks it while the service holds the engine), and bad input
refused."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from codeengine.ops.cli import main
from codeengine.ops.recordscli import ExportFailed, engine_source, export_from
from codeengine.records import export as ex
from codeengine.records.engine import RecordsEngine
from codeengine.records.schema import CHANGES, SCANS
from codeengine.records.service import create_app
from codeengine.settings import Settings
from tests.integration.apps import auth, dev_keys
from tests.integration.records_support import engine_for, records_settings

SUZHOU, NANJING = 320500, 320100
DAY = date(2026, 12, 5)
START = int(datetime(2026, 12, 4, 16, tzinfo=UTC).timestamp() * 1000)
"""2026-12-05 00:00 in China."""
END = START + 86_400_000
S = "AAAAAAAAAAAAAAAA"
ROOT = Path(__file__).resolve().parents[2]


def scan(at_ms: int, city: int = SUZHOU, venue: str = 'mall, "east"') -> list[Any]:
    return ["t1", venue, city, at_ms, S, "VALID", "green"]


def change(at_ms: int, city: int = SUZHOU) -> list[Any]:
    return [at_ms, city, S, "set", "green", "red", 2, "cdc", "密接", f"op-{at_ms}"]


INSIDE = [START, START + 1, END - 1]
ROWS = {
    SCANS: [scan(t) for t in INSIDE]
    + [scan(START - 1), scan(END)]  # the China days before and after
    + [scan(START + 5, NANJING), scan(END - 5, NANJING)],  # another city, inside the day
    CHANGES: [change(START + 10), change(START + 20, NANJING), change(END)],
}


@pytest.fixture(scope="module")
def engine() -> Iterator[RecordsEngine]:
    database = f"t_{os.urandom(4).hex()}"
    engine = engine_for(database)
    for table, rows in ROWS.items():
        engine.insert_packed(table, b"".join(msgpack.packb(r)[1:] for r in rows), table.name)
    yield engine
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def export(engine: RecordsEngine, fmt: str, out: Path) -> dict[str, Any]:
    form = ex.FORMATS[fmt]
    return export_from(engine_source(engine, SUZHOU, DAY, form), engine.rows, SUZHOU, DAY,
                       form, out, 0)  # fmt: skip


def test_the_china_day_window() -> None:
    assert ex.day_window(DAY) == (START, END)
    assert ex.file_name("scans", SUZHOU, DAY, ex.FORMATS["parquet"]) == (
        "scans-320500-2026-12-05.parquet"
    )


def test_a_csv_export_has_exactly_the_city_s_day_with_its_digest(
    engine: RecordsEngine, tmp_path: Path
) -> None:
    manifest = export(engine, "csv", tmp_path)
    assert [(f["table"], f["file"], f["rows"]) for f in manifest["files"]] == [
        ("scans", "scans-320500-2026-12-05.csv", 3),
        ("changes", "changes-320500-2026-12-05.csv", 1),
    ]
    assert (manifest["from_ms"], manifest["to_ms"], manifest["timezone"]) == (START, END, "+08:00")
    assert json.loads((tmp_path / "export-320500-2026-12-05.json").read_text()) == manifest
    for entry in manifest["files"]:
        data = (tmp_path / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
        sidecar = (tmp_path / f"{entry['file']}.sha256").read_text()
        assert sidecar == f"{entry['sha256']}  {entry['file']}\n"
    with (tmp_path / "scans-320500-2026-12-05.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["at_ms", "at", "city", "venue", "terminal", "subject", "result",
                             "colour"]  # fmt: skip
    assert [(int(r["at_ms"]), r["city"], r["venue"]) for r in rows] == [
        (t, "320500", 'mall, "east"') for t in INSIDE
    ]
    # China time: the first millisecond of the day is midnight there.
    assert rows[0]["at"] == "2026-12-05 00:00:00.000"
    with (tmp_path / "changes-320500-2026-12-05.csv").open(newline="", encoding="utf-8") as f:
        (only,) = list(csv.DictReader(f))
    assert (only["reason"], only["op_id"], only["city"]) == ("密接", f"op-{START + 10}", "320500")


def test_a_parquet_export_reads_back_through_the_engine(
    engine: RecordsEngine, tmp_path: Path
) -> None:
    manifest = export(engine, "parquet", tmp_path)
    path = (tmp_path / "scans-320500-2026-12-05.parquet").resolve()
    assert path.read_bytes()[:4] == b"PAR1" and path.read_bytes()[-4:] == b"PAR1"
    assert manifest["files"][0]["rows"] == 3
    back = engine.rows(f"SELECT at_ms, city, venue FROM file('{path}', Parquet) ORDER BY at_ms")
    assert [tuple(r) for r in back] == [(t, SUZHOU, 'mall, "east"') for t in INSIDE]
    types = dict((r[0], r[1]) for r in engine.rows(f"DESCRIBE file('{path}', Parquet)"))
    assert types["at_ms"].endswith("Int64") and "DateTime64(3" in types["at"]


def test_the_command_asks_the_running_service_and_gets_the_same_bytes(
    settings: Settings, engine: RecordsEngine, tmp_path: Path
) -> None:
    local = export(engine, "csv", tmp_path / "local")
    key_file = tmp_path / "admin.key"
    key_file.write_text(dev_keys(settings)["admin"])
    configured = replace(settings, records=records_settings(engine.database))

    async def scenario() -> tuple[int, bytes, bytes, list[Any]]:
        app = create_app(configured, engine, clock=lambda: START / 1000)
        async with TestClient(TestServer(app)) as client:
            url = str(client.make_url("")).rstrip("/")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "codeengine", "records", "export", "--city", str(SUZHOU),
                "--day", DAY.isoformat(), "--out", str(tmp_path / "remote"), "--url", url,
                "--key-file", str(key_file),
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await process.communicate()
            refused = []
            for query, scope in [
                ("city=999999&day=2026-12-05&table=scans", "admin"),
                ("city=320500&day=2026-12-32&table=scans", "admin"),
                ("city=320500&day=2026-12-05&table=subjects", "admin"),
                ("city=320500&day=2026-12-05&table=scans&format=xml", "admin"),
                ("city=320500&day=2026-12-05&table=scans", "records:counts"),
            ]:
                response = await client.get(f"/v1/records/export?{query}",
                                            headers=auth(settings, scope))  # fmt: skip
                refused.append((response.status, (await response.json())["reason"]))
            return process.returncode or 0, out, err, refused

    code, out, err, refused = asyncio.run(scenario())
    assert code == 0, err.decode()
    remote = json.loads(out)
    assert [(f["rows"], f["sha256"]) for f in remote["files"]] == [
        (f["rows"], f["sha256"]) for f in local["files"]
    ]
    assert b"asking the records service" in err
    assert refused == [
        (400, "UNKNOWN_CITY"), (400, "INVALID_FIELD"), (400, "INVALID_FIELD"),
        (400, "INVALID_FIELD"), (403, "FORBIDDEN"),
    ]  # fmt: skip
    recorded = engine.rows(
        f"SELECT client, operation, target, from_ms, to_ms, rows FROM {engine.database}.access "
        "WHERE operation = 'export' ORDER BY target DESC"
    )
    assert [tuple(r) for r in recorded] == [
        ("dev-admin", "export", "320500:scans", START, END, 3),
        ("dev-admin", "export", "320500:changes", START, END, 1),
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--city", "320599", "--day", "2026-12-05"], "--city"),
        (["--city", "320500", "--day", "2026-12-5"], "--day"),
        (["--city", "320500", "--day", "2026-02-30"], "--day"),
    ],
)
def test_the_command_refuses_a_bad_city_or_day(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["records", "export", *args]) == 2
    assert says in capsys.readouterr().err


def test_a_file_cut_short_is_a_failed_export_and_is_not_left(
    engine: RecordsEngine, tmp_path: Path
) -> None:
    form = ex.FORMATS["parquet"]
    whole = b"".join(engine_source(engine, SUZHOU, DAY, form)("scans"))

    def cut(table: str) -> Iterator[bytes]:
        yield whole[: len(whole) // 2]  # the service's engine failed after the headers

    with pytest.raises(ExportFailed, match="does not read back"):
        export_from(cut, engine.rows, SUZHOU, DAY, form, tmp_path, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
