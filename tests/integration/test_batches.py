"""Bulk conversion against the real cluster: bad rows, idempotent re-import, rollback, dry run."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
import uvloop

from codeengine.code.chain import check_chain
from codeengine.code.errors import BatchConflict, Reason, UnknownBatch, WriteNotReplicated
from codeengine.code.identifiers import make_resident_id, parse_resident_id
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.pseudonym import pseudonym
from codeengine.code.rules import load_rules
from codeengine.code.status import StatusChange
from codeengine.keyfiles import load_pepper
from codeengine.ops.commands import store_keys
from codeengine.settings import Settings
from codeengine.store.batches import Importer
from codeengine.store.port import RiskWrite
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import store_settings
from tests.integration.apps import keyed

pytestmark = pytest.mark.cluster

HEADER = b"identifier,record_type,event_time,source,city\n"
DAY = 86400


def people(region: str, count: int) -> list[str]:
    """``count`` valid resident IDs of one region, distinct from every other test's."""
    first = date(1950, 1, 1)
    return [
        make_resident_id(region, first + timedelta(days=n // 900), 100 + n % 900)
        for n in range(count)
    ]


def subject_of(settings: Settings, resident_id: str) -> SubjectId:
    pepper = load_pepper(Path(settings.keys.pepper_file))
    return pseudonym(parse_resident_id(resident_id, date.today()), pepper)


def csv_bytes(rows: list[str]) -> list[bytes]:
    return [HEADER, *(row.encode() + b"\n" for row in rows)]


async def import_lines(settings: Settings, batch_id: str, lines: list[bytes], **kw: Any) -> Any:
    store = keyed(RedisStore(store_settings(settings)), settings)
    try:
        importer = Importer(
            store,
            load_rules(),
            load_pepper(Path(settings.keys.pepper_file)),
            batch_id=batch_id,
            actor=f"batch:{batch_id}",
            **kw,
        )
        return await importer.run(lines, "csv")
    finally:
        await store.close()


async def records(settings: Settings, subjects: list[SubjectId]) -> list[Any]:
    store = keyed(RedisStore(store_settings(settings)), settings)
    try:
        return await store.get_subjects(subjects)
    finally:
        await store.close()


async def rollback(settings: Settings, batch_id: str) -> dict[str, int]:
    store = keyed(RedisStore(store_settings(settings)), settings)
    try:
        return await store.rollback_batch(batch_id, int(time.time()), "ops:test")
    finally:
        await store.close()


def test_a_100k_row_file_imports_reporting_exactly_its_bad_rows_then_rolls_back(
    settings: Settings,
) -> None:
    now = int(time.time())
    ids = people("320104", 19_800)
    wrong = ids[0][:17] + ("0" if ids[0][17] != "0" else "1")
    bad_kinds = [
        ("BAD_CHECK_DIGIT", f"{wrong},positive,{now - DAY},cdc,320100"),
        ("UNKNOWN_RECORD_TYPE", f"{ids[1]},rumour,{now - DAY},cdc,320100"),
        ("BAD_EVENT_TIME", f"{ids[2]},positive,{now + 10 * DAY},cdc,320100"),
        ("UNKNOWN_CITY", f"{ids[3]},positive,{now - DAY},cdc,110100"),
        ("BAD_ROW", f"{ids[4]},positive,{now - DAY}"),
    ]
    # Every person gets one record of each type, in this order: red (close contact), yellow
    # twice, red (positive), then a negative test that ends the yellow periods.
    types = ["close_contact", "risk_area_visit", "secondary_contact", "positive", "negative_test"]
    good = iter(
        f"{ids[j % len(ids)]},{types[j // len(ids)]},{now - DAY},cdc,320100" for j in range(99_000)
    )
    rows, expected_bad = [], set()
    for i in range(100_000):
        if i % 100 == 37:  # 1 % of the rows, five kinds of mistake
            reason, row = bad_kinds[(i // 100) % len(bad_kinds)]
            rows.append(row)
            expected_bad.add((i + 2, reason))  # line 1 is the header
        else:
            rows.append(next(good))
    sample = [subject_of(settings, resident) for resident in ids[:50]]

    async def scenario() -> None:
        before = await records(settings, sample)
        assert before == [None] * 50, "these people have no data before the batch"
        report = await import_lines(settings, "it-100k", csv_bytes(rows))
        assert (report.rows, report.bad) == (100_000, 1_000)
        assert {(e.line, e.reason) for e in report.errors} == expected_bad
        assert report.applied + report.unchanged == 99_000
        assert report.created == 19_800, "every person with a risk record now exists"
        # Each person got close contact (red), then yellow periods, a positive test (red), a
        # negative test (clears yellow): red either way, for the next days.
        after = await records(settings, sample)
        assert all(r is not None and r.colour_at(now) is Colour.RED for r in after)
        assert all(r.colour_at(now + 14 * DAY) is Colour.GREEN for r in after)

        again = await import_lines(settings, "it-100k", csv_bytes(rows))
        assert again.already_imported and again.state == "done"
        assert await records(settings, sample) == after, "a re-import changes nothing"

        counts = await rollback(settings, "it-100k")
        assert counts["restored"] == 19_800 and counts["changed_since"] == 0
        restored = await records(settings, sample)
        assert all(r.colour_at(now) is Colour.GREEN and r.risk == () for r in restored)
        with pytest.raises(BatchConflict) as refused:
            await import_lines(settings, "it-100k", csv_bytes(rows))
        assert refused.value.reason is Reason.BATCH_ROLLED_BACK

    uvloop.run(scenario())


def test_rollback_leaves_a_subject_changed_since_and_resumed_runs_change_nothing_twice(
    settings: Settings,
) -> None:
    now = int(time.time())
    ids = people("320105", 3)
    rows = [f"{ids[0]},risk_area_visit,{now - DAY},cdc,320100",
            f"{ids[1]},risk_area_visit,{now - DAY},cdc,320100"]  # fmt: skip
    subjects = [subject_of(settings, r) for r in ids[:2]]

    async def scenario() -> None:
        report = await import_lines(settings, "it-changed-since", csv_bytes(rows))
        assert (report.applied, report.created) == (2, 2)
        first, second = await records(settings, subjects)
        assert first.colour_at(now) is Colour.YELLOW
        # Ops change the second subject after the batch: its rollback must not undo that.
        store = keyed(RedisStore(store_settings(settings)), settings)
        try:
            change = StatusChange(subjects[1], second.version, Colour.RED, "op-1", "ops", "x", now)
            await store.set_status(change)
        finally:
            await store.close()
        counts = await rollback(settings, "it-changed-since")
        assert counts == {"restored": 1, "unchanged": 0, "changed_since": 1}
        first, second = await records(settings, subjects)
        assert first.colour_at(now) is Colour.GREEN
        assert second.colour_at(now) is Colour.RED and second.risk != ()
        with pytest.raises(UnknownBatch):
            await rollback(settings, "it-no-such-batch")

    uvloop.run(scenario())


def test_a_dry_run_reports_colour_changes_and_writes_nothing(settings: Settings) -> None:
    now = int(time.time())
    ids = people("320106", 4)
    rows = [f"{ids[0]},positive,{now - DAY},cdc,320100",
            f"{ids[1]},risk_area_visit,{now - DAY},cdc,320100",
            f"{ids[2]},risk_area_visit,{now - 30 * DAY},cdc,320100",
            f"{ids[3]},negative_test,{now - DAY},cdc,320100"]  # fmt: skip

    async def scenario() -> None:
        report = await import_lines(settings, "it-dry", csv_bytes(rows), dry_run=True)
        assert report.dry_run and report.state == "dry-run"
        assert report.colour_changes == {"green->red": 1, "green->yellow": 1}
        assert (report.applied, report.unchanged) == (2, 2), "an ended period changes nothing"
        subjects = [subject_of(settings, r) for r in ids]
        assert await records(settings, subjects) == [None] * 4
        store = keyed(RedisStore(store_settings(settings)), settings)
        try:
            with pytest.raises(UnknownBatch):
                await store.batch_info("it-dry", 10)
        finally:
            await store.close()

    uvloop.run(scenario())


def test_progress_is_reported_per_chunk(settings: Settings) -> None:
    now = int(time.time())
    rows = [f"{r},positive,{now - DAY},cdc,320100" for r in people("320111", 250)]
    seen: list[tuple[int, int, int]] = []
    lines = csv_bytes(rows)
    total = sum(map(len, lines))
    report = uvloop.run(
        import_lines(settings, "it-progress", lines, chunk_rows=100,
                     progress=lambda r, read: seen.append((r.rows, r.applied, read)))
    )  # fmt: skip
    assert report.applied == 250
    # Once per chunk, as each is acknowledged; reading runs up to one chunk ahead.
    assert [applied for _, applied, _ in seen] == [100, 200, 250]
    assert all(rows >= applied for rows, applied, _ in seen)
    assert seen[-1] == (250, 250, total)


def test_a_csv_without_the_header_is_refused(settings: Settings) -> None:
    from codeengine.code.errors import BadRequest

    lines = [b"320101198001010011,positive,1,cdc,320100\n"]
    with pytest.raises(BadRequest, match="header"):
        uvloop.run(import_lines(settings, "it-noheader", lines))

    async def registered() -> bool:
        store = keyed(RedisStore(store_settings(settings)), settings)
        try:
            await store.batch_info("it-noheader", 10)
            return True
        except UnknownBatch:
            return False
        finally:
            await store.close()

    assert not uvloop.run(registered()), "a file that is not a batch registers nothing"


def test_recent_batches_lists_the_latest_newest_first_with_progress(settings: Settings) -> None:
    now = int(time.time())
    first, second = people("320113", 2)
    older = f"it-recent-a-{now}"
    newer = f"it-recent-b-{now}"

    async def scenario() -> list[tuple[str, dict[str, str]]]:
        row = f"{first},positive,{now - DAY},cdc,320100"
        await import_lines(settings, older, csv_bytes([row]), clock=lambda: float(now))
        rows = [f"{second},positive,{now - DAY},cdc,320100", "not,a,row"]
        await import_lines(settings, newer, csv_bytes(rows), clock=lambda: float(now + 1))
        store = keyed(RedisStore(store_settings(settings)), settings)
        try:
            return await store.recent_batches(100)
        finally:
            await store.close()

    listed = uvloop.run(scenario())
    ids = [batch_id for batch_id, _ in listed]
    assert ids.index(newer) < ids.index(older), "newest first"
    meta = dict(listed)
    assert (meta[newer]["state"], meta[newer]["rows"], meta[newer]["bad"]) == ("done", "2", "1")
    assert (meta[older]["created_at"], meta[older]["applied"]) == (str(now), "1")


def test_a_subjects_rows_apply_in_file_order_across_the_script_calls_of_a_chunk(
    settings: Settings,
) -> None:
    now = int(time.time())
    first, second, *others = people("320115", 1_602)
    filler = [f"{r},positive,{now - DAY},cdc,320100" for r in others]
    # Hundreds of rows on every primary between a subject's two rows, all in one chunk: they
    # reach the store in different script calls, which must keep the file's order.
    rows = [f"{first},risk_area_visit,{now - DAY},cdc,320100", *filler[:800],
            f"{first},negative_test,{now - DAY},cdc,320100",
            f"{second},negative_test,{now - DAY},cdc,320100", *filler[800:],
            f"{second},risk_area_visit,{now - DAY},cdc,320100"]  # fmt: skip
    subjects = [subject_of(settings, first), subject_of(settings, second)]

    async def scenario() -> None:
        report = await import_lines(settings, "it-order", csv_bytes(rows))
        assert (report.applied, report.unchanged, report.created) == (1_603, 1, 1_602)
        cleared, visited = await records(settings, subjects)
        assert cleared.colour_at(now) is Colour.GREEN and cleared.risk == ()
        assert visited.colour_at(now) is Colour.YELLOW
        store = keyed(RedisStore(store_settings(settings)), settings)
        try:
            for subject, count in zip(subjects, (2, 1), strict=True):
                record, entries = await store.audit_chain(subject)
                assert check_chain(
                    store_keys(settings).audit_or_raise(), subject, record, entries
                ).ok
                assert len(entries) == count
        finally:
            await store.close()

    uvloop.run(scenario())


def test_a_resumed_batch_lists_for_rollback_the_subjects_a_stopped_run_changed(
    settings: Settings,
) -> None:
    now = int(time.time())
    ids = people("320116", 30)
    rows = [f"{r},positive,{now - DAY},cdc,320100" for r in ids]
    subjects = [subject_of(settings, r) for r in ids]

    async def scenario() -> None:
        # Two replicas are asked for where there is one: the rows are written, the chunk is
        # never acknowledged, and the run stops before it lists the subjects for a rollback.
        strict = keyed(RedisStore(replace(store_settings(settings), replicas_to_ack=2,
                                          replica_ack_timeout_ms=20)), settings)  # fmt: skip
        try:
            importer = Importer(strict, load_rules(), load_pepper(Path(settings.keys.pepper_file)),
                                batch_id="it-resume", actor="batch:it-resume")  # fmt: skip
            with pytest.raises(WriteNotReplicated):
                await importer.run(csv_bytes(rows), "csv")
        finally:
            await strict.close()
        assert all(r is not None and r.colour_at(now) is Colour.RED
                   for r in await records(settings, subjects))  # fmt: skip
        resumed = await import_lines(settings, "it-resume", csv_bytes(rows))
        assert (resumed.state, resumed.applied, resumed.unchanged) == ("done", 0, 30)
        counts = await rollback(settings, "it-resume")
        assert counts == {"restored": 30, "unchanged": 0, "changed_since": 0}
        assert all(r.colour_at(now) is Colour.GREEN for r in await records(settings, subjects))

    uvloop.run(scenario())


def test_an_import_that_meets_another_writers_change_reads_again_and_builds_on_it(
    settings: Settings,
) -> None:
    now = int(time.time())
    subject = subject_of(settings, people("320117", 1)[0])

    def row(colour: Colour, clears: tuple[Colour, ...] = ()) -> RiskWrite:
        return RiskWrite(subject, colour, now + DAY, clears, "test", CodeKind.HEALTH, 320100,
                         Colour.GREEN)  # fmt: skip

    async def scenario() -> None:
        importing = keyed(RedisStore(store_settings(settings)), settings)
        other = keyed(RedisStore(store_settings(settings)), settings)
        try:
            assert await importing.begin_batch("it-cas", 1, now) is None
            assert await importing.apply_risk("it-cas", [row(Colour.YELLOW)], now, "t") == [(1, 1)]
            # Another writer changes the subject: the import's own idea of it is now stale.
            change = StatusChange(subject, 1, Colour.RED, "op-cas", "ops", "test", now)
            assert (await other.set_status(change)).version == 2
            assert await importing.apply_risk("it-cas", [row(Colour.RED)], now, "t") == [(1, 0)]
            record = await other.get_subject(subject)
            assert record is not None and record.version == 3 and record.colour is Colour.RED
            assert dict(record.risk) == {Colour.YELLOW: now + DAY, Colour.RED: now + DAY}
            stored, entries = await other.audit_chain(subject)
            assert [msgpack.unpackb(e)["op"] for e, _ in entries] == ["risk", "status", "risk"]
            assert check_chain(store_keys(settings).audit_or_raise(), subject, stored, entries).ok
        finally:
            await importing.close()
            await other.close()

    uvloop.run(scenario())
