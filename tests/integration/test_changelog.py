"""The change log against the real cluster: every audited write of the issuer reaches its city's
change stream with the ten fields the records service loads, once, even when a batch's answer
is lost and it is sent again."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import replace
from typing import Any

import pytest

from codeengine.code.changes import ChangeEntry
from codeengine.code.errors import StoreUnavailable, WriteNotReplicated
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.status import StatusChange, SubjectRecord
from codeengine.settings import Settings
from codeengine.store.redisstore import RedisStore
from codeengine.store.streamlog import LogPolicy, StreamLogWriter
from codeengine.web.runtime import store_settings
from issuer.changelog import CHANGE_METRICS, ChangeLogWriter
from tests.integration.apps import Clock, auth, issuer, keyed, new_person
from tests.integration.test_convert_api import post_batch

pytestmark = pytest.mark.cluster

CITY = 320100
DAY = 86400


async def changes_of(settings: Settings, subject: str, city: int = CITY) -> list[ChangeEntry]:
    """The subject's entries in its city's change stream written in the last 10 minutes (the
    session's other tests write the same streams), oldest first."""
    store = RedisStore(store_settings(settings))
    since_ms = int(time.time() * 1000) - 600_000
    try:
        window = await store.read_changes(city, since_ms, 2**62, 1_000_000)
    finally:
        await store.close()
    return [c for c in window if c.subject == subject]


def test_a_convert_an_import_a_rollback_and_an_appeal_each_reach_the_change_stream(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        now = int(clock.now)
        async with issuer(settings, clock) as client:
            person, subject = await new_person(client, settings)
            converted = await client.post(
                f"/v1/subjects/{subject}/status",
                json={"colour": "yellow", "reason": "close contact", "if_version": 1,
                      "op_id": f"chg-{subject}"},
                headers=auth(settings, "convert"),
            )  # fmt: skip
            assert converted.status == 200, await converted.text()
            batch = f"chg-{subject}"
            rows = [f"{person},close_contact,{now - DAY},cdc,320100"]
            status, _report = await post_batch(client, settings, batch, rows)
            assert status == 201
            rolled = await client.post(
                f"/v1/batches/{batch}/rollback", headers=auth(settings, "convert")
            )
            assert rolled.status == 200, await rolled.text()
            filed = await client.post(
                "/v1/appeals",
                json={"subject": subject, "reason": "was not there", "evidence": "doc-1"},
                headers=auth(settings, "appeal"),
            )
            appeal = (await filed.json())["appeal_id"]
            decided = await client.post(
                f"/v1/appeals/{appeal}/decision",
                json={"decision": "upheld", "reason": "travel records", "colour": "green",
                      "duration_days": 2},
                headers=auth(settings, "convert"),
            )  # fmt: skip
            assert decided.status == 200, await decided.text()
        # The app has stopped: its writer's last flush has run.
        at_ms = now * 1000
        assert await changes_of(settings, subject) == [
            ChangeEntry(at_ms, CITY, subject, "create", "", "green", 1, "dev-generate", "", ""),
            ChangeEntry(at_ms, CITY, subject, "status", "green", "yellow", 2, "dev-convert",
                        "close contact", f"chg-{subject}"),
            ChangeEntry(at_ms, CITY, subject, "risk", "yellow", "yellow", 3, f"batch:{batch}",
                        "close_contact", batch),
            ChangeEntry(at_ms, CITY, subject, "rollback", "yellow", "yellow", 4,
                        f"dev-convert:rollback:{batch}", "batch rolled back", batch),
            ChangeEntry(at_ms, CITY, subject, "appeal", "yellow", "green", 5, "dev-convert:appeal",
                        "travel records", appeal),
        ]  # fmt: skip

    run(scenario())


def test_a_batch_whose_answer_was_lost_is_written_once(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        store = keyed(RedisStore(store_settings(settings)), settings)
        lost = [0]

        async def answer_lost_once(entries: Any, max_age_ms: int, token: str) -> Any:
            # The shard writes the batch, then its answer never arrives: the writer must send
            # the same batch again, with the same token.
            failed = await store.append_changes(entries, max_age_ms, token)
            if not lost[0]:
                lost[0] += 1
                raise StoreUnavailable("the answer was lost")
            return failed

        policy = LogPolicy(settings.changes.flush_ms, settings.changes.buffer_max, 3600)
        writer = StreamLogWriter("change", answer_lost_once, policy, CHANGE_METRICS)
        store.changes = writer.add_packed
        try:
            subject = SubjectId(base64.urlsafe_b64encode(os.urandom(12)).decode())
            record = SubjectRecord(subject, CodeKind.HEALTH, CITY, Colour.GREEN, 1, 1_800_000_000)
            await store.create_subject(record, "ops:test")
            change = StatusChange(subject, 1, Colour.RED, "op-lost", "ops:test", "", 1_800_000_000)
            await store.set_status(change)
            assert len(writer) == 2
            with pytest.raises(StoreUnavailable):
                await writer.flush()
            assert len(writer) == 2, "the batch waits to be sent again"
            await writer.flush()
            assert len(writer) == 0
        finally:
            await store.close()
        assert [(c.op, c.version) for c in await changes_of(settings, subject)] == [
            ("create", 1),
            ("status", 2),
        ], "written once"

    run(scenario())


def test_a_write_whose_replica_is_late_is_in_the_change_log_too(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        # Two replicas asked of a cluster with one per master: the WAIT never has enough.
        tuned = replace(store_settings(settings), replicas_to_ack=2, replica_ack_timeout_ms=20)
        store = keyed(RedisStore(tuned), settings)
        writer = ChangeLogWriter(store, settings.changes)
        store.changes = writer.add_packed
        subject = SubjectId(base64.urlsafe_b64encode(os.urandom(12)).decode())
        try:
            record = SubjectRecord(subject, CodeKind.HEALTH, CITY, Colour.GREEN, 1, 1_800_000_000)
            with pytest.raises(WriteNotReplicated):
                await store.create_subject(record, "ops:test")
            change = StatusChange(subject, 1, Colour.RED, "op-late", "ops:test", "", 1_800_000_000)
            with pytest.raises(WriteNotReplicated):
                await store.set_status(change)
            await writer.flush()
        finally:
            await store.close()
        assert [(c.op, c.new_colour, c.version) for c in await changes_of(settings, subject)] == [
            ("create", "green", 1),
            ("status", "red", 2),
        ], "the primary has both writes, and so does the feed"

    run(scenario())
