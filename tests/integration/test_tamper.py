"""A Redis writer against the seals: edited records and tokens, rewritten, removed and copied
audit entries, a key holder's consistent rewrite against a checkpoint, MAC key rotation, and a
verifier that holds no pepper."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
from prometheus_client import REGISTRY

from codeengine.code.chain import audit_context
from codeengine.code.macs import MACAlgorithm
from codeengine.code.model import SubjectId
from codeengine.code.seal import TRAILER_BYTES, mac, record_context, seal
from codeengine.keyfiles import add_mac_key, load_mac_keyset
from codeengine.ops.checkpoints import (
    CheckpointError,
    public_pem,
    read_checkpoint,
    write_checkpoint,
)
from codeengine.ops.cli import main as cli_main
from codeengine.ops.commands import store_keys
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.store import keyspace
from codeengine.store.audit import check_subject
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import MAC_KEYS, PEPPER, store_settings
from tests.integration.apps import (
    Client,
    Clock,
    admin_redis,
    auth,
    display,
    history,
    issuer,
    keyed,
    new_code,
    new_person,
    verifier,
)
from tests.integration.test_convert_api import post_batch

pytestmark = pytest.mark.cluster

DAY = 86400
RED = 3
# The red team's edit: one EVAL that rewrites the colour inside the stored record (its body,
# before the 22-byte seal, which it keeps: it has no key to compute another).
RED_TEAM = """local raw = redis.call('GET', KEYS[1])
local r = cmsgpack.unpack(string.sub(raw, 1, -23))
r.col = 3
redis.call('SET', KEYS[1], cmsgpack.pack(r) .. string.sub(raw, -22))"""


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[RedisStore]:
    store = keyed(RedisStore(store_settings(settings)), settings)
    try:
        yield store
    finally:
        await store.close()


async def verify(gate: Client, settings: Settings, code: str) -> dict[str, Any]:
    body = {"code": code, "terminal": "gate-1", "venue": "v-1", "city": 320100}
    response = await gate.post("/v1/verify", json=body, headers=auth(settings, "verify"))
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def tampered_count(service: str, what: str) -> float:
    labels = {"service": service, "what": what}
    return REGISTRY.get_sample_value("codeengine_records_tampered_total", labels) or 0.0


async def with_trail(client: Client, settings: Settings, clock: Clock) -> tuple[str, str]:
    """A person with four audit entries: create and three imported risk records."""
    person, subject = await new_person(client, settings)
    when = int(clock.now) - DAY
    for n, kind in enumerate(["risk_area_visit", "close_contact", "positive"]):
        status, _ = await post_batch(client, settings, f"tamper-{subject}-{n}", [
            f"{person},{kind},{when},cdc,320100"])  # fmt: skip
        assert status in (200, 201)
    return person, subject


def test_the_red_team_record_edit_answers_grey_everywhere_and_is_reported(
    settings: Settings, cluster: DevCluster, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client, verifier(settings, clock) as gate:
            subject, code = await new_code(client, settings)
            assert (await verify(gate, settings, code))["colour"] == "green"
            async with admin_redis(cluster) as redis:
                key = keyspace.subject_key(SubjectId(subject))
                await redis.eval(RED_TEAM, 1, key)
                stored = await redis.get(key)
            edited = msgpack.unpackb(stored[:-TRAILER_BYTES])
            assert edited["col"] == RED and edited["v"] == 1
            before = tampered_count("verifier", "record")
            with caplog.at_level(logging.ERROR, logger="codeengine.store"):
                for _ in range(3):
                    answer = await verify(gate, settings, code)
                    assert (answer["valid"], answer["reason"], answer["colour"]) == (
                        False, "RECORD_TAMPERED", "grey")  # fmt: skip
            assert tampered_count("verifier", "record") == before + 3
            logged = [r for r in caplog.records if subject in r.getMessage()]
            assert len(logged) == 1, "logged once per subject and process, counted every time"
            shown = await client.get(
                f"/v1/subjects/{subject}/code", headers=auth(settings, "display")
            )
            body = await shown.json()
            assert (shown.status, body["reason"], body["colour"]) == (
                409,
                "RECORD_TAMPERED",
                "grey",
            )
            # The issuer refuses to build on it: no status write, no history.
            converted = await client.post(
                f"/v1/subjects/{subject}/status",
                json={"colour": "green", "reason": "repair", "if_version": 1},
                headers=auth(settings, "convert"),
            )
            assert (converted.status, (await converted.json())["reason"]) == (
                409, "RECORD_TAMPERED")  # fmt: skip
            trail = await client.get(
                f"/v1/subjects/{subject}/history", headers=auth(settings, "convert")
            )
            assert (trail.status, (await trail.json())["reason"]) == (409, "RECORD_TAMPERED")
        async with opened(settings) as store, admin_redis(cluster) as redis:
            audit_keys = store_keys(settings).audit_or_raise()
            check = await check_subject(store, audit_keys, subject)
            assert not check.ok and "RECORD_TAMPERED" in check.problem
            assert await redis.get(key) == stored, "nothing repaired it behind ops' back"

    run(scenario())


def test_a_record_or_token_copied_or_edited_under_its_seal_is_tampered(
    settings: Settings, cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client, verifier(settings, clock) as gate:
            red, red_code = await new_code(client, settings)
            converted = await client.post(
                f"/v1/subjects/{red}/status",
                json={"colour": "red", "reason": "test", "if_version": 1},
                headers=auth(settings, "convert"),
            )
            assert converted.status == 200
            green, green_code = await new_code(client, settings)
            async with admin_redis(cluster) as redis:
                # A genuine record, sealed by the issuer, copied under another subject's key.
                red_raw = await redis.get(keyspace.subject_key(SubjectId(red)))
                await redis.set(keyspace.subject_key(SubjectId(green)), red_raw)
            answer = await verify(gate, settings, green_code)
            assert (answer["reason"], answer["colour"]) == ("RECORD_TAMPERED", "grey")

            other, other_code = await new_code(client, settings)
            async with admin_redis(cluster) as redis:
                # The token's body edited (its colour) under the seal it had.
                key = keyspace.token_key(SubjectId(other))
                raw = await redis.get(key)
                body, trailer = raw[:-TRAILER_BYTES], raw[-TRAILER_BYTES:]
                fields = msgpack.unpackb(body)
                fields["c"] = RED
                await redis.set(key, msgpack.packb(fields) + trailer, px=60_000)
            before = tampered_count("verifier", "token")
            answer = await verify(gate, settings, other_code)
            assert (answer["reason"], answer["colour"]) == ("RECORD_TAMPERED", "grey")
            assert tampered_count("verifier", "token") == before + 1
            assert (await verify(gate, settings, red_code))["colour"] == "red", "others unharmed"

    run(scenario())


def test_a_chain_copied_from_another_subject_is_caught(
    settings: Settings, cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client:
            _, first = await with_trail(client, settings, clock)
            _, second = await with_trail(client, settings, clock)
            assert (await history(client, settings, second))["chain"]["ok"]
            async with admin_redis(cluster) as redis:
                # Both chains have four entries: the copy fits the second record's head count.
                rows = await redis.xrange(keyspace.audit_key(SubjectId(first)))
                stream = keyspace.audit_key(SubjectId(second))
                await redis.delete(stream)
                for entry_id, fields in rows:
                    await redis.xadd(stream, fields, id=entry_id)
            chain = (await history(client, settings, second))["chain"]
            assert (chain["ok"], chain["broken_at"]) == (False, 0)
            assert "not this subject's" in chain["problem"]

    run(scenario())


def test_a_key_holders_consistent_rewrite_passes_the_chain_and_fails_the_checkpoint(
    settings: Settings, cluster: DevCluster, run: Any, tmp_path: Path
) -> None:
    keys = store_keys(settings)
    audit_keys = keys.audit_or_raise()
    checkpoint_key = Path(settings.keys.checkpoint_key_file)

    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client:
            _, subject = await with_trail(client, settings, clock)
        sid = SubjectId(subject)
        async with opened(settings) as store:
            record = await store.get_subject(sid)
            assert record is not None and record.entries == 4
            out = tmp_path / "checkpoint"
            assert write_checkpoint(out, [(subject, record.entries, record.head)],
                                    checkpoint_key, 1_800_000_000) == 1  # fmt: skip
            # Checking needs only the public half of the ops-held key.
            public = tmp_path / "checkpoint.pub"
            public.write_bytes(public_pem(checkpoint_key))
            anchors = read_checkpoint(out, public)
            assert anchors == {subject: (4, record.head)}
            assert (await check_subject(store, audit_keys, subject, anchors)).ok

            # What a holder of both MAC keys can do: rewrite entry 1 and re-MAC every entry
            # after it, then reseal the record with the new head.
            async with admin_redis(cluster) as redis:
                stream = keyspace.audit_key(sid)
                rows = await redis.xrange(stream)
                prev = ""
                rewritten = []
                for index, (entry_id, fields) in enumerate(rows):
                    entry = msgpack.unpackb(fields[b"e"])
                    if index == 1:
                        entry["reason"] = "nothing happened"
                    entry["prev"] = prev
                    kid = entry["k"]
                    packed = msgpack.packb(entry)
                    prev = mac(audit_keys.keys[kid], kid, audit_context(subject), packed).hex()
                    rewritten.append((entry_id, {b"e": packed, b"h": prev.encode()}))
                await redis.delete(stream)
                for entry_id, fields in rewritten:
                    await redis.xadd(stream, fields, id=entry_id)
                resealed = seal(keys.records, record_context(subject),
                                record._replace(head=prev).pack())  # fmt: skip
                await redis.set(keyspace.subject_key(sid), resealed)
            assert (await check_subject(store, audit_keys, subject)).ok, "consistent rewrite"
            anchored = await check_subject(store, audit_keys, subject, anchors)
            assert not anchored.ok and anchored.problem == "differs from the checkpoint"
            assert anchored.broken_at == 3

            # A checkpoint whose bytes were changed is refused outright.
            text = out.read_text().replace(f" 4 {record.head}", f" 4 {prev}")
            forged = tmp_path / "forged"
            forged.write_text(text)
            with pytest.raises(CheckpointError, match="signature does not hold"):
                read_checkpoint(forged, public)

    run(scenario())


def test_rotated_mac_keys_keep_old_records_and_entries_and_seal_new_ones_with_the_new_key(
    settings: Settings, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_file, audit_file = tmp_path / "record-mac.json", tmp_path / "audit-mac.json"
    shutil.copy(settings.keys.record_mac_file, record_file)
    shutil.copy(settings.keys.audit_mac_file, audit_file)
    files = replace(settings.keys, record_mac_file=str(record_file), audit_mac_file=str(audit_file))
    rotating = replace(settings, keys=files)

    async def scenario() -> None:
        clock = Clock()
        async with issuer(rotating, clock) as client, verifier(rotating, clock) as gate:
            subject, code = await new_code(client, rotating)
            old_kid = load_mac_keyset(record_file, MACAlgorithm.HMAC_SHA256).current
            # The ops command rotates the records' keyset; the audit keyset the same way, here
            # through the function behind it.
            monkeypatch.setenv("CODEENGINE_KEYS_RECORD_MAC_FILE", str(record_file))
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                assert cli_main(["audit", "rotate-mac", "records"]) == 0
            new_records = load_mac_keyset(record_file, MACAlgorithm.HMAC_SHA256)
            assert json.loads(printed.getvalue())["current"] == new_records.current.hex()
            assert set(new_records.keys) > {old_kid}
            new_audit = add_mac_key(audit_file, os.urandom)
            # What each process's periodic re-read does (keys.mac_refresh_s), without the wait.
            for app in (client.app, gate.app):
                app[MAC_KEYS].load(rotating, signs=app is client.app)
            assert (await verify(gate, rotating, code))["colour"] == "green", "old seal opens"
            converted = await client.post(
                f"/v1/subjects/{subject}/status",
                json={"colour": "yellow", "reason": "test", "if_version": 1},
                headers=auth(rotating, "convert"),
            )
            assert converted.status == 200, await converted.text()
            assert (await display(client, rotating, subject))["colour"] == "yellow"
            trail = await history(client, rotating, subject)
            assert trail["chain"]["ok"] and trail["chain"]["entries"] == 2
            async with opened(rotating) as store:
                fast = await store._hot()
                raw = await fast.get(keyspace.subject_key(SubjectId(subject)))
                assert raw is not None and raw[-20:-16] == new_records.current != old_kid
                _, entries = await store.audit_chain(SubjectId(subject))
                kids = [msgpack.unpackb(packed)["k"] for packed, _ in entries]
                assert kids[0] != kids[1] == new_audit.current

    run(scenario())


def test_a_verifier_serves_alias_scans_without_any_pepper_file(
    settings: Settings, run: Any, tmp_path: Path
) -> None:
    bare = replace(settings, keys=replace(settings.keys, pepper_file=str(tmp_path / "absent")))
    assert not Path(bare.keys.pepper_file).exists()

    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client, verifier(bare, clock) as gate:
            _, subject = await new_person(client, settings)
            card = f"K{10_000_000 + int.from_bytes(os.urandom(4)) % 89_999_999}"
            bound = await client.post(
                f"/v1/subjects/{subject}/aliases",
                json={"type": "ssc_card", "value": card},
                headers=auth(settings, "fusion"),
            )
            assert bound.status == 201, await bound.text()
            ready = await gate.get("/readyz")
            assert ready.status == 200, await ready.text()
            answer = await verify(gate, bare, f"SSC:{card}")
            assert (answer["valid"], answer["colour"]) == (True, "green")
            assert PEPPER not in gate.app, "a verifier never loads the pepper"

    run(scenario())


def test_an_alias_pointed_at_another_subject_or_a_forged_marker_is_tampered(
    settings: Settings, cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client, verifier(settings, clock) as gate:
            _, green = await new_person(client, settings)
            _, red = await new_person(client, settings)
            card = f"K{10_000_000 + int.from_bytes(os.urandom(4)) % 89_999_999}"
            bound = await client.post(
                f"/v1/subjects/{green}/aliases",
                json={"type": "ssc_card", "value": card},
                headers=auth(settings, "fusion"),
            )
            assert bound.status == 201, await bound.text()
            alias = (await bound.json())["id"]
            assert (await verify(gate, settings, f"SSC:{card}"))["colour"] == "green"
            async with admin_redis(cluster) as redis:
                # The card pointed at another person, the seal it had kept.
                key = keyspace.alias_key(alias)
                raw = await redis.get(key)
                await redis.set(key, red.encode() + raw[-TRAILER_BYTES:])
                # A marker that says an operation was applied when it never was.
                marker = keyspace.op_key(SubjectId(red), "op-forged")
                await redis.set(marker, "2:1", ex=60)
            answer = await verify(gate, settings, f"SSC:{card}")
            assert (answer["reason"], answer["colour"]) == ("RECORD_TAMPERED", "grey")
            resend = await client.post(
                f"/v1/subjects/{red}/status",
                json={"colour": "green", "reason": "test", "if_version": 1, "op_id": "op-forged"},
                headers=auth(settings, "convert"),
            )
            assert (resend.status, (await resend.json())["reason"]) == (409, "RECORD_TAMPERED")

    run(scenario())
