"""Conversion over HTTP against the real cluster: batches, expiry at its instant, verify after an
import, appeals, and the audit chain (history, and the command that checks every chain)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster

from codeengine.code.model import SubjectId
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.store import keyspace
from tests.integration.apps import (
    Client,
    Clock,
    admin_redis,
    auth,
    display,
    history,
    issuer,
    new_person,
    verifier,
)

pytestmark = pytest.mark.cluster

DAY = 86400


async def post_batch(
    client: Client, settings: Settings, batch_id: str, rows: list[str], **query: str
) -> tuple[int, dict[str, Any]]:
    body = "identifier,record_type,event_time,source,city\n" + "".join(r + "\n" for r in rows)
    response = await client.post(
        "/v1/batches",
        params={"batch_id": batch_id, **query},
        data=body.encode(),
        headers={**auth(settings, "convert"), "Content-Type": "text/csv"},
    )
    return response.status, await response.json()


def test_a_batch_over_http_imports_shows_repeats_nothing_and_rolls_back(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        now = int(clock.now)
        async with issuer(settings, clock) as client:
            person, subject = await new_person(client, settings)
            rows = [f"{person},positive,{now - DAY},cdc-nanjing,320100", "garbage"]
            status, report = await post_batch(client, settings, f"api-{subject}", rows)
            assert status == 201, report
            assert (report["rows"], report["bad"], report["applied"]) == (2, 1, 1)
            assert report["errors"] == [{"line": 3, "reason": "BAD_ROW"}]
            assert person not in str(report), "a report never echoes an identifier"
            assert (await display(client, settings, subject))["colour"] == "red"

            shown = await client.get(
                f"/v1/batches/api-{subject}", headers=auth(settings, "convert")
            )
            assert (await shown.json())["state"] == "done"
            status, again = await post_batch(client, settings, f"api-{subject}", rows)
            assert (status, again["already_imported"], again["applied"]) == (200, True, 1)
            not_a_batch = await client.post(
                "/v1/batches", params={"batch_id": f"api-{subject}"}, data=b"W",
                headers={**auth(settings, "convert"), "Content-Type": "text/csv"},
            )  # fmt: skip
            assert not_a_batch.status == 400, "a file that is not a batch is refused, repeat or not"
            assert (await history(client, settings, subject))["version"] == 2

            rolled = await client.post(
                f"/v1/batches/api-{subject}/rollback", headers=auth(settings, "convert")
            )
            assert (await rolled.json())["restored"] == 1
            assert (await display(client, settings, subject))["colour"] == "green"
            trail = await history(client, settings, subject)
            assert [e["op"] for e in trail["entries"]] == ["create", "risk", "rollback"]
            assert trail["chain"]["ok"] is True

            status, refused = await post_batch(client, settings, f"api-{subject}", rows)
            assert (status, refused["reason"]) == (409, "BATCH_ROLLED_BACK")
            wrong_type = await client.post(
                "/v1/batches", params={"batch_id": "x"}, data=b"{}",
                headers={**auth(settings, "convert"), "Content-Type": "application/json"},
            )  # fmt: skip
            assert wrong_type.status == 415
            no_scope = await client.post(
                "/v1/batches", params={"batch_id": "x"}, data=b"",
                headers={**auth(settings, "display"), "Content-Type": "text/csv"},
            )  # fmt: skip
            assert no_scope.status == 403

    run(scenario())


def test_a_period_ends_at_its_instant_and_a_verify_after_an_import_answers_the_new_colour(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        now = int(clock.now)
        async with issuer(settings, clock) as client, verifier(settings, clock) as gate:
            person, subject = await new_person(client, settings)
            green = await display(client, settings, subject)
            assert green["colour"] == "green"
            # A risk-area visit 7 days long, ending 60 s from now.
            event = now - 7 * DAY + 60
            status, _ = await post_batch(
                client,
                settings,
                f"expiry-{subject}",
                [f"{person},risk_area_visit,{event},cdc,320100"],
            )
            assert status == 201
            scan = {"code": green["token"], "terminal": "t", "city": 320100}
            checked = await gate.post("/v1/verify", json=scan, headers=auth(settings, "verify"))
            answer = await checked.json()
            assert (answer["valid"], answer["colour"]) == (True, "yellow"), answer

            clock.now = now + 59
            assert (await display(client, settings, subject))["colour"] == "yellow"
            clock.now = now + 60
            assert (await display(client, settings, subject))["colour"] == "green"
            checked = await gate.post("/v1/verify", json=scan, headers=auth(settings, "verify"))
            assert (await checked.json())["colour"] == "green"

    run(scenario())


def test_an_upheld_appeal_overrides_a_rule_until_its_expiry_and_a_decision_is_final(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        now = int(clock.now)
        async with issuer(settings, clock) as client:
            person, subject = await new_person(client, settings)
            await post_batch(client, settings, f"appeal-{subject}",
                             [f"{person},close_contact,{now - DAY},cdc,320100"])  # fmt: skip
            assert (await display(client, settings, subject))["colour"] == "red"

            filed = await client.post(
                "/v1/appeals",
                json={"subject": subject, "reason": "was not there", "evidence": "doc-123"},
                headers=auth(settings, "appeal"),
            )
            assert filed.status == 201, await filed.text()
            appeal = (await filed.json())["appeal_id"]
            decision = {"decision": "upheld", "reason": "travel records", "colour": "green",
                        "duration_days": 2}  # fmt: skip
            path = f"/v1/appeals/{appeal}/decision"
            decided = await client.post(path, json=decision, headers=auth(settings, "convert"))
            assert decided.status == 200, await decided.text()
            answer = await decided.json()
            assert answer["state"] == "upheld" and answer["decision"]["until"] == now + 2 * DAY
            assert answer["reason"] == "was not there", "the appeal keeps its own reason"
            assert (await display(client, settings, subject))["colour"] == "green"

            again = await client.post(path, json=decision, headers=auth(settings, "convert"))
            assert (await again.json())["version"] == answer["version"], "a repeat is a no-op"
            other = {"decision": "rejected", "reason": "changed my mind"}
            refused = await client.post(path, json=other, headers=auth(settings, "convert"))
            assert (refused.status, (await refused.json())["reason"]) == (409, "APPEAL_DECIDED")

            clock.now = now + 2 * DAY
            assert (await display(client, settings, subject))["colour"] == "red", (
                "the override ended; the close-contact period (7 days) still runs"
            )
            trail = await history(client, settings, subject)
            assert [e["op"] for e in trail["entries"]] == ["create", "risk", "appeal"]
            assert trail["chain"]["ok"]
            missing = await client.get(
                "/v1/appeals/000000000000000000000000", headers=auth(settings, "appeal")
            )
            assert (missing.status, (await missing.json())["reason"]) == (404, "UNKNOWN_APPEAL")

    run(scenario())


def _audit_verify(settings: Settings, key_files: dict[str, str], subject: str) -> tuple[int, str]:
    env = {**os.environ, **{f"CODEENGINE_{k.upper()}": v for k, v in key_files.items()}}
    env["CODEENGINE_CLUSTER_NODES"] = settings.cluster.nodes
    result = subprocess.run(
        [sys.executable, "-m", "codeengine.ops.cli", "audit", "verify", f"--subject={subject}"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_an_altered_removed_or_truncated_audit_entry_is_detected(
    settings: Settings, cluster: DevCluster, key_files: dict[str, str], run: Any
) -> None:
    async def make_trail() -> str:
        clock = Clock()
        async with issuer(settings, clock) as client:
            person, subject = await new_person(client, settings)
            when = int(clock.now) - DAY
            for n, kind in enumerate(["risk_area_visit", "close_contact", "positive"]):
                rows = [f"{person},{kind},{when},cdc,320100"]
                await post_batch(client, settings, f"audit-{subject}-{n}", rows)
            assert (await history(client, settings, subject))["chain"]["entries"] == 4
            return subject

    subject = run(make_trail())
    code, out = _audit_verify(settings, key_files, subject)
    assert code == 0, out

    def tampered(how: str, entries: list[Any]) -> list[Any]:
        out = []
        for index, (entry_id, fields) in enumerate(entries):
            if how == "alter" and index == 1:
                altered = fields[b"e"].replace(b"risk_area_visit", b"rumour_visit___")
                fields = {**fields, b"e": altered}
            if (how == "remove" and index == 2) or (how == "truncate" and index == 3):
                continue
            out.append((entry_id, fields))
        return out

    for how, problem in [("alter", "entry altered"), ("remove", "removed or moved"),
                         ("truncate", "latest entries removed")]:  # fmt: skip
        snapshot = run(_snapshot(cluster, subject))
        run(_rewrite(cluster, subject, tampered(how, snapshot)))
        code, out = _audit_verify(settings, key_files, subject)
        assert code == 1 and problem in out, (how, out)
        run(_rewrite(cluster, subject, snapshot))
        code, out = _audit_verify(settings, key_files, subject)
        assert code == 0, out


async def _snapshot(cluster: DevCluster, subject: str) -> list[Any]:
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes],
        **cluster.redis_py_options(),
    )
    try:
        return list(await client.xrange(keyspace.audit_key(SubjectId(subject))) or [])
    finally:
        await client.aclose()


async def _rewrite(cluster: DevCluster, subject: str, entries: list[Any]) -> None:
    """Replace the subject's audit stream with ``entries`` (ids kept): a tamperer's edit."""
    # As the admin user: a tamperer with the services' login could not DEL a stream outright.
    stream = keyspace.audit_key(SubjectId(subject))
    async with admin_redis(cluster) as client:
        await client.delete(stream)
        for entry_id, fields in entries:
            await client.xadd(stream, fields, id=entry_id)
