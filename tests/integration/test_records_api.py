"""The records API over the embedded engine: each question's answer and pages, its scope, its
input checks with their reasons, and the access record every answer leaves."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from codeengine.records.engine import RecordsEngine
from codeengine.records.schema import CHANGES, SCANS
from codeengine.records.service import create_app
from codeengine.settings import Settings
from tests.integration.apps import auth
from tests.integration.records_support import engine_for, records_settings

T0 = 1_800_000_000_000
MIN = 60_000
S = "AAAAAAAAAAAAAAAA"
A = "AAAAAAAAAAAAAAAB"
B = "AAAAAAAAAAAAAAAC"
C = "AAAAAAAAAAAAAAAD"
SUZHOU = 320500

ROWS = [
    # terminal, venue, city, at, subject, reason, colour
    ("t1", "mall", SUZHOU, T0, S, "VALID", "green"),
    ("t2", "mall", SUZHOU, T0 + 10 * MIN, A, "VALID", "green"),  # within 30 min of S
    ("t2", "mall", SUZHOU, T0 + 40 * MIN, B, "VALID", "red"),  # 40 min after: not a contact
    ("t3", "mall", SUZHOU, T0 + 2 * MIN, A, "VALID", "green"),  # A again, same venue
    ("t9", "park", SUZHOU, T0 + 60 * MIN, S, "VALID", "green"),
    ("t9", "park", SUZHOU, T0 + 89 * MIN, C, "EXPIRED", ""),  # 29 min after S at the park
    ("t5", "gym", SUZHOU, T0 + 5 * MIN, B, "VALID", "yellow"),  # S never at the gym
]


@pytest.fixture
def engine() -> Iterator[RecordsEngine]:
    database = f"t_{os.urandom(4).hex()}"
    engine = engine_for(database)
    body = b"".join(msgpack.packb(list(row))[1:] for row in ROWS)
    engine.insert_packed(SCANS, body, "rows")
    yield engine
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def call(settings: Settings, engine: RecordsEngine, requests: list[tuple[str, str]]) -> list[Any]:
    """GET each (path, scope) from a records app; (status, JSON body) of each."""
    configured = replace(settings, records=records_settings(engine.database, page_max=2))

    async def scenario() -> list[Any]:
        app = create_app(configured, engine, clock=lambda: T0 / 1000 + 7200)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path, scope in requests:
                headers = auth(settings, scope) if scope else {}
                response = await client.get(path, headers=headers)
                out.append((response.status, await response.json()))
            return out

    return asyncio.run(scenario())


WINDOW = f"from={T0}&to={T0 + 86_400_000}"


def test_a_venue_s_scans_come_by_time_in_pages(settings: Settings, engine: RecordsEngine) -> None:
    ((status, first),) = call(settings, engine, [(f"/v1/records/venues/mall/scans?{WINDOW}",
                                                  "records:venue")])  # fmt: skip
    assert status == 200
    assert [(s["at"], s["subject"], s["terminal"]) for s in first["scans"]] == [
        (T0, S, "t1"), (T0 + 2 * MIN, A, "t3")
    ]  # fmt: skip
    assert first["next"]
    rest = call(settings, engine, [
        (f"/v1/records/venues/mall/scans?{WINDOW}&cursor={first['next']}", "records:venue")
    ])[0][1]  # fmt: skip
    assert [(s["subject"], s["colour"]) for s in rest["scans"]] == [(A, "green"), (B, "red")]
    last = call(settings, engine, [
        (f"/v1/records/venues/mall/scans?{WINDOW}&cursor={rest['next']}", "records:venue")
    ])[0][1]  # fmt: skip
    assert last == {**last, "scans": [], "next": None}


def test_a_subject_s_trajectory_and_contacts(settings: Settings, engine: RecordsEngine) -> None:
    # A code that did not parse is nobody's scan: never a contact.
    nobody = ("t2", "mall", SUZHOU, T0 + 3 * MIN, "", "MALFORMED", "")
    engine.insert_packed(SCANS, msgpack.packb(list(nobody))[1:], "nobody")
    (_, trajectory), (_, contacts), (_, wider) = call(settings, engine, [
        (f"/v1/records/subjects/{S}/scans?{WINDOW}", "records:subject"),
        (f"/v1/records/subjects/{S}/contacts?{WINDOW}&window_s=1800", "records:contacts"),
        (f"/v1/records/subjects/{S}/contacts?{WINDOW}&window_s=2400&limit=2", "records:contacts"),
    ])  # fmt: skip
    assert [(s["venue"], s["at"]) for s in trajectory["scans"]] == [
        ("mall", T0), ("park", T0 + 60 * MIN)
    ]  # fmt: skip
    assert [(c["subject"], c["venue"], c["first"], c["last"], c["scans"])
            for c in contacts["contacts"]] == [
        (A, "mall", T0 + 2 * MIN, T0 + 10 * MIN, 2), (C, "park", T0 + 89 * MIN, T0 + 89 * MIN, 1)
    ]  # fmt: skip
    # A full page may have more after it: the next one says there is none.
    after = call(settings, engine, [
        (f"/v1/records/subjects/{S}/contacts?{WINDOW}&window_s=1800&cursor={contacts['next']}",
         "records:contacts"),
    ])[0][1]  # fmt: skip
    assert (after["contacts"], after["next"]) == ([], None)
    # 40 minutes takes B in at the mall, too.
    assert [c["subject"] for c in wider["contacts"]] == [A, B]
    assert wider["next"]


def test_counts_by_step_of_a_city_and_of_a_venue(settings: Settings, engine: RecordsEngine) -> None:
    (_, city), (_, venue) = call(settings, engine, [
        (f"/v1/records/counts?city={SUZHOU}&{WINDOW}&step=3600", "records:counts"),
        (f"/v1/records/counts?city={SUZHOU}&venue=mall&{WINDOW}&step=600", "records:counts"),
    ])  # fmt: skip
    assert [(c["start"], c["result"], c["colour"], c["scans"]) for c in city["counts"]] == [
        (T0, "VALID", "green", 3), (T0, "VALID", "red", 1), (T0, "VALID", "yellow", 1),
        (T0 + 3_600_000, "EXPIRED", None, 1), (T0 + 3_600_000, "VALID", "green", 1),
    ]  # fmt: skip
    assert [(c["start"], c["scans"]) for c in venue["counts"]] == [
        (T0, 2), (T0 + 10 * MIN, 1), (T0 + 40 * MIN, 1)
    ]  # fmt: skip


def test_each_question_needs_its_own_scope(settings: Settings, engine: RecordsEngine) -> None:
    answers = call(settings, engine, [
        (f"/v1/records/venues/mall/scans?{WINDOW}", ""),
        (f"/v1/records/venues/mall/scans?{WINDOW}", "verify"),
        (f"/v1/records/subjects/{S}/contacts?{WINDOW}", "admin"),
    ])  # fmt: skip
    assert [(status, body["reason"]) for status, body in answers] == [
        (401, "UNAUTHORIZED"), (403, "FORBIDDEN"), (403, "FORBIDDEN")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (f"/v1/records/venues/mall/scans?to={T0}", "MISSING_FIELD"),
        (f"/v1/records/venues/mall/scans?from={T0}&to={T0}", "INVALID_FIELD"),
        (f"/v1/records/venues/mall/scans?from=0&to={32 * 86_400_000}", "INVALID_FIELD"),
        (f"/v1/records/venues/mall/scans?from=-1&to={T0}", "INVALID_FIELD"),
        (f"/v1/records/venues/mall/scans?{WINDOW}&cursor=AAAA", "INVALID_FIELD"),
        (f"/v1/records/venues/mall/scans?{WINDOW}&limit=3", "INVALID_FIELD"),
        (f"/v1/records/subjects/not-a-pseudonym/scans?{WINDOW}", "INVALID_FIELD"),
        (f"/v1/records/counts?city=999999&{WINDOW}", "UNKNOWN_CITY"),
        (f"/v1/records/counts?city={SUZHOU}&{WINDOW}&step=90", "INVALID_FIELD"),
        (f"/v1/records/counts?city={SUZHOU}&from=0&to={30 * 86_400_000}", "INVALID_FIELD"),
        (f"/v1/records/subjects/{S}/contacts?{WINDOW}&window_s=0", "INVALID_FIELD"),
    ],
)
def test_bad_input_is_refused_with_its_reason(
    settings: Settings, engine: RecordsEngine, path: str, reason: str
) -> None:
    scope = {"venues": "records:venue", "subjects": "records:subject", "counts": "records:counts"}
    needed = next(v for k, v in scope.items() if f"/{k}" in path)
    if "contacts" in path:
        needed = "records:contacts"
    ((status, body),) = call(settings, engine, [(path, needed)])
    assert (status, body["reason"]) == (400, reason)


def test_every_answer_is_recorded_with_who_what_and_when(
    settings: Settings, engine: RecordsEngine
) -> None:
    call(settings, engine, [
        (f"/v1/records/subjects/{S}/scans?{WINDOW}", "records:subject"),
        (f"/v1/records/venues/gym/scans?{WINDOW}", "records:venue"),
        (f"/v1/records/venues/gym/scans?to={T0}", "records:venue"),  # refused: not recorded
    ])  # fmt: skip
    rows = engine.rows(
        f"SELECT toUnixTimestamp64Milli(at), client, operation, target, from_ms, to_ms, rows, "
        f"length(request_id) > 0 FROM {engine.database}.access ORDER BY operation"
    )
    assert [tuple(r) for r in rows] == [
        (T0 + 7_200_000, "dev-records", "subject_scans", S, T0, T0 + 86_400_000, 2, True),
        (T0 + 7_200_000, "dev-records", "venue_scans", "gym", T0, T0 + 86_400_000, 1, True),
    ]


def test_a_subject_s_changes_come_by_time_in_pages(
    settings: Settings, engine: RecordsEngine
) -> None:
    changes = [
        [T0, SUZHOU, S, "create", "", "green", 1, "dev-generate", "", "op-1"],
        [T0 + MIN, SUZHOU, S, "convert", "green", "red", 2, "dev-convert", "close contact", "op-2"],
        [T0 + 2 * MIN, SUZHOU, S, "convert", "red", "green", 3, "dev-convert", "cleared", "op-3"],
        [T0 + 3 * MIN, SUZHOU, A, "create", "", "green", 1, "dev-generate", "", "op-4"],
    ]  # fmt: skip
    engine.insert_packed(CHANGES, b"".join(msgpack.packb(c)[1:] for c in changes), "changes")
    (_, first), = call(settings, engine, [
        (f"/v1/records/subjects/{S}/changes?{WINDOW}", "records:subject"),
    ])  # fmt: skip
    got = [(c["op"], c["old_colour"], c["new_colour"], c["version"]) for c in first["changes"]]
    assert got == [("create", None, "green", 1), ("convert", "green", "red", 2)]
    (_, rest), = call(settings, engine, [
        (f"/v1/records/subjects/{S}/changes?{WINDOW}&cursor={first['next']}", "records:subject"),
    ])  # fmt: skip
    assert [(c["version"], c["actor"], c["reason"]) for c in rest["changes"]] == [
        (3, "dev-convert", "cleared")
    ]
    assert rest["next"] is None
