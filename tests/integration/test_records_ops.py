"""The records service for ops, on the embedded engine and the real cluster: retention drops
exactly the old days, the status shows lag and days (on the records service, in Redis and on
the issuer's console endpoint), the access table can be read, and the verifier's old counts
route points here."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from codeengine.code.scans import ScanEntry
from codeengine.ops.devcluster import DevCluster
from codeengine.records.consumer import RecordsConsumer
from codeengine.records.engine import RecordsEngine
from codeengine.records.retention import Dropped, enforce_retention_at
from codeengine.records.schema import ACCESS, CHANGES, SCANS
from codeengine.records.service import create_app
from codeengine.records.status import publish_status, status_at
from codeengine.settings import Settings
from codeengine.store.cluster import FastCluster
from codeengine.store.keyspace import RECORDS_STATUS_KEY
from codeengine.store.redisstore import RedisStore, StoreSettings
from tests.integration.apps import Clock, auth, issuer
from tests.integration.records_support import engine_for, fresh_cities, records_settings

DAY_MS = 86_400_000
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC).timestamp()
TODAY_MS = int(datetime(2026, 12, 7, tzinfo=UTC).timestamp() * 1000)
SUBJECT = "AAAAAAAAAAAAAAAA"


def day_ms(days_ago: int, hour: int = 12) -> int:
    return TODAY_MS - days_ago * DAY_MS + hour * 3_600_000


def scan(at_ms: int, city: int = 320500, venue: str = "mall") -> list[Any]:
    return ["t1", venue, city, at_ms, SUBJECT, "VALID", "green"]


def change(at_ms: int, city: int = 320500) -> list[Any]:
    return [at_ms, city, SUBJECT, "set", "green", "red", 2, "cdc", "contact", os.urandom(4).hex()]


def insert(engine: RecordsEngine, table: Any, rows: list[list[Any]]) -> None:
    body = b"".join(msgpack.packb(row)[1:] for row in rows)
    engine.insert_packed(table, body, os.urandom(8).hex())


@pytest.fixture
def engine() -> Iterator[RecordsEngine]:
    database = f"t_{os.urandom(4).hex()}"
    engine = engine_for(database)
    yield engine
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def test_retention_drops_exactly_the_days_older_than_it(engine: RecordsEngine) -> None:
    # 28 days kept on 2026-12-07: 2026-11-10 (27 days ago) is kept, 2026-11-09 (28) is not.
    insert(engine, SCANS, [scan(day_ms(d)) for d in (40, 28, 28, 27, 1, 0)] + [scan(day_ms(-1))])
    insert(engine, CHANGES, [change(day_ms(d)) for d in (29, 27)])
    insert(engine, ACCESS, [[day_ms(30), "c", "counts", "x", 0, 1, 0, "r"]])
    dropped = enforce_retention_at(engine, 28, NOW)
    assert [(d.table, d.day, d.rows) for d in dropped] == [
        ("scans", "2026-10-28", 1), ("scans", "2026-11-09", 2),
        ("changes", "2026-11-08", 1), ("access", "2026-11-07", 1),
    ]  # fmt: skip
    assert all(isinstance(d, Dropped) and d.bytes > 0 for d in dropped)
    assert [day for day, _, _ in engine.days(SCANS)] == [
        "2026-11-10", "2026-12-06", "2026-12-07", "2026-12-08"
    ]  # fmt: skip
    assert [day for day, _, _ in engine.days(CHANGES)] == ["2026-11-10"]
    assert engine.count(ACCESS) == 0
    # Run again: nothing more is old.
    assert enforce_retention_at(engine, 28, NOW) == []


def records_cluster(cluster: DevCluster) -> FastCluster:
    return FastCluster(cluster.startup_nodes, security=cluster.client_security("records"),
                       deadline_s=5.0)  # fmt: skip


async def write_scans(cluster: DevCluster, entries: list[ScanEntry]) -> None:
    store = RedisStore(
        StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
    )
    try:
        assert await store.append_scans([e.packed() for e in entries], 1_000_000, "t") == []
    finally:
        await store.close()


def get(settings: Settings, engine: RecordsEngine, consumer: RecordsConsumer | None,
        requests: list[tuple[str, str]], now: float = NOW) -> list[Any]:  # fmt: skip
    configured = replace(settings, records=records_settings(engine.database, page_max=2))

    async def scenario() -> list[Any]:
        app = create_app(configured, engine, consumer, clock=lambda: now)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path, scope in requests:
                response = await client.get(path, headers=auth(settings, scope) if scope else {})
                out.append((response.status, await response.json()))
            return out

    return asyncio.run(scenario())


@pytest.mark.cluster
def test_the_status_shows_lag_and_days_here_in_redis_and_on_the_console(
    cluster: DevCluster, settings: Settings, engine: RecordsEngine
) -> None:
    (city,) = fresh_cities(1)
    insert(engine, SCANS, [scan(day_ms(d)) for d in (3, 3, 0)])
    insert(engine, CHANGES, [change(day_ms(3))])
    waiting = [ScanEntry("t", "v", city, int(NOW * 1000) - 5000 + i, SUBJECT, "VALID", "green")
               for i in range(3)]  # fmt: skip

    # Stream ids are the server's time of the write: the age is measured from them.
    before = time.time()

    async def measure() -> RecordsConsumer:
        await write_scans(cluster, waiting)
        after = time.time()
        fast = records_cluster(cluster)
        await fast.start()
        try:
            consumer = RecordsConsumer(fast, engine, records_settings(engine.database), [city],
                                       clock=lambda: after + 100)  # fmt: skip
            await consumer.prepare()
            await consumer.measure_lag()
            return consumer
        finally:
            await fast.aclose()

    consumer = asyncio.run(measure())
    ((status, body), (denied, _)) = get(settings, engine, consumer, [
        ("/v1/records/status", "admin"), ("/v1/records/status", "records:counts")
    ])  # fmt: skip
    assert (status, denied) == (200, 403)
    lag = {(s["feed"], s["city"]): s for s in body["lag"]}
    assert lag[("scans", city)]["entries"] == 3
    assert 100 - 0.01 <= lag[("scans", city)]["oldest_age_s"] <= 100 + (time.time() - before)
    assert lag[("changes", city)]["entries"] == 0
    assert (body["lag_entries"], body["consuming"]) == (3, True)
    assert [(d["day"], d["rows"]) for d in body["tables"]["scans"]["days"]] == [
        ("2026-12-04", 2), ("2026-12-07", 1)
    ]  # fmt: skip
    assert (body["oldest_day"], body["rows"], body["retention_days"]) == ("2026-12-04", 4, 28)
    assert body["store_bytes"] == sum(t["bytes"] for t in body["tables"].values()) > 0

    # The issuer's clock is the real one moved on (its keys are made at the real time).
    real = float(int(time.time()))

    async def published() -> tuple[dict[str, Any], dict[str, Any]]:
        fast = records_cluster(cluster)
        await fast.start()
        try:
            await publish_status(fast, status_at(engine, consumer, 28, real))
        finally:
            await fast.aclose()
        clock = Clock(real + 12)
        async with issuer(settings, clock) as client:
            headers = auth(settings, "admin")
            fresh = await (await client.get("/v1/ops/records", headers=headers)).json()
            clock.now = real + 31
            stale = await (await client.get("/v1/ops/records", headers=headers)).json()
        return fresh, stale

    fresh, stale = asyncio.run(published())
    assert fresh["published"] and not fresh["stale"]
    assert (fresh["age_s"], fresh["lag_entries"], fresh["oldest_day"]) == (12.0, 3, "2026-12-04")
    assert fresh["days"] == [
        {"day": "2026-12-04", "rows": {"scans": 2, "changes": 1}},
        {"day": "2026-12-07", "rows": {"scans": 1}},
    ]
    assert {"table": "scans", "rows": 3} in [
        {"table": t["table"], "rows": t["rows"]} for t in fresh["tables"]
    ]
    assert (stale["stale"], stale["age_s"]) == (True, 31.0)
    assert RECORDS_STATUS_KEY == "ce:rec:{status}"


def test_who_asked_what_pages_through_the_access_table_and_is_recorded_itself(
    settings: Settings, engine: RecordsEngine
) -> None:
    insert(engine, ACCESS, [
        [day_ms(1, 8), "dev-records", "venue_scans", "mall", 0, 1, 4, "r1"],
        [day_ms(1, 9), "dev-records", "subject_scans", SUBJECT, 0, 1, 2, "r2"],
        [day_ms(1, 10), "cdc", "contacts", SUBJECT, 0, 1, 9, "r3"],
        [day_ms(3), "cdc", "counts", "320500", 0, 1, 1, "r0"],  # before the window
    ])  # fmt: skip
    window = f"from={day_ms(1, 0)}&to={day_ms(0, 0)}"
    (status, first), (_, denied) = get(settings, engine, None, [
        (f"/v1/records/access?{window}", "admin"), (f"/v1/records/access?{window}",
                                                    "records:subject"),
    ])  # fmt: skip
    assert (status, denied["reason"]) == (200, "FORBIDDEN")
    assert [(a["client"], a["operation"], a["target"], a["rows"]) for a in first["access"]] == [
        ("dev-records", "venue_scans", "mall", 4), ("dev-records", "subject_scans", SUBJECT, 2)
    ]  # fmt: skip
    ((_, rest),) = get(settings, engine, None, [
        (f"/v1/records/access?{window}&cursor={first['next']}", "admin")
    ])  # fmt: skip
    assert [(a["at"], a["request_id"]) for a in rest["access"]] == [(day_ms(1, 10), "r3")]
    assert rest["next"] is None
    # Each read of the access table is in it too (at the app's clock, NOW: today).
    reads = engine.rows(
        f"SELECT client, operation, from_ms, to_ms, rows FROM {engine.database}.access "
        "WHERE operation = 'access' ORDER BY rows DESC"
    )
    assert [tuple(r) for r in reads] == [
        ("dev-admin", "access", day_ms(1, 0), day_ms(0, 0), 2),
        ("dev-admin", "access", day_ms(1, 0), day_ms(0, 0), 1),
    ]
