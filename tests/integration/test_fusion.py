"""Card-code fusion against the real cluster: bind, scan, convert, unbind; conflicts; bulk files;
terminal profiles; and no credential or identifier anywhere in the store, logs or metrics."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from codeengine.code.identifiers import uscc_check_char
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.web.metrics import render_metrics
from tests.integration.apps import (
    Client,
    Clock,
    auth,
    display,
    generate,
    history,
    issuer,
    new_person_id,
    verifier,
)

pytestmark = pytest.mark.cluster

CARDS = iter(f"K{n:08d}" for n in range(10_000_000, 99_999_999, 7919))


async def bind(client: Client, settings: Settings, subject: str, kind: str, value: str) -> Any:
    return await client.post(
        f"/v1/subjects/{subject}/aliases",
        json={"type": kind, "value": value},
        headers=auth(settings, "fusion"),
    )


async def scan(gate: Client, settings: Settings, text: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else auth(settings, "verify")
    body = {"code": text, "terminal": "gate-7", "city": 320100}
    response = await gate.post("/v1/verify", json=body, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def convert(client: Client, settings: Settings, subject: str, colour: str) -> None:
    version = (await history(client, settings, subject))["version"]
    body = {"colour": colour, "reason": "test", "if_version": version}
    response = await client.post(
        f"/v1/subjects/{subject}/status", json=body, headers=auth(settings, "convert")
    )
    assert response.status == 200, await response.text()


def test_a_bound_card_scans_as_the_person_follows_a_change_and_stops_when_unbound(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client, verifier(settings, clock) as gate:
            subject = await generate(client, settings, new_person_id())
            card = next(CARDS)
            bound = await bind(client, settings, subject, "ssc_card", card)
            assert bound.status == 201, await bound.text()
            alias = await bound.json()
            assert alias["masked"] == "*******" + card[-2:] and card not in json.dumps(alias)
            again = await bind(client, settings, subject, "ssc_card", card)
            assert again.status == 200, "binding the same card again is a no-op"

            answer = await scan(gate, settings, f"SSC:{card}\r\n")
            assert (answer["valid"], answer["colour"], answer["kind"]) == (True, "green", "health")
            await convert(client, settings, subject, "red")
            assert (await scan(gate, settings, f"SSC:{card}"))["colour"] == "red"

            listed = await client.get(
                f"/v1/subjects/{subject}/aliases", headers=auth(settings, "fusion")
            )
            assert [a["id"] for a in (await listed.json())["aliases"]] == [alias["id"]]
            gone = await client.delete(
                f"/v1/subjects/{subject}/aliases/{alias['id']}", headers=auth(settings, "fusion")
            )
            assert gone.status == 200
            answer = await scan(gate, settings, f"SSC:{card}")
            assert (answer["valid"], answer["reason"]) == (False, "UNKNOWN_ALIAS")
            assert (await scan(gate, settings, "SSC:not-a-card"))["reason"] == "MALFORMED"
            trail = await history(client, settings, subject)
            ops = [e["op"] for e in trail["entries"]]
            assert ops == ["create", "alias_bind", "status", "alias_unbind"]

    run(scenario())


def test_an_alias_belongs_to_one_subject_and_a_bulk_file_reports_every_bad_row(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client:
            first_id, second_id = new_person_id(), new_person_id()
            first = await generate(client, settings, first_id)
            second = await generate(client, settings, second_id)
            card, voucher = next(CARDS), "MV" + next(CARDS) + "ABCDEFGH"
            assert (await bind(client, settings, first, "ssc_card", card)).status == 201
            taken = await bind(client, settings, second, "ssc_card", card)
            problem = await taken.json()
            assert (taken.status, problem["reason"]) == (409, "ALIAS_TAKEN")
            assert first not in json.dumps(problem) and card not in json.dumps(problem)

            unknown_person = new_person_id()
            rows = [
                "kind,identifier,alias_type,value",
                f"person,{second_id},medical_voucher,{voucher}",  # 2: bound
                f"person,{second_id},ssc_card,{card}",  # 3: the first person's card
                f"person,{second_id[:-1]}{'0' if second_id[-1] != '0' else '1'},transit,ABCDEFGH1",
                f"person,{second_id},spaceship,ABCDEFGH1",  # 5: unknown type
                f"person,{second_id},ssc_card,short",  # 6: not a card number
                f"person,{unknown_person},transit,ABCDEFGH2",  # 7: nobody generated
                "person,only-two-columns",  # 8
            ]
            body = ("\n".join(rows) + "\n").encode()
            headers = {**auth(settings, "fusion"), "Content-Type": "text/csv"}
            first_run = await client.post("/v1/aliases/bulk", data=body, headers=headers)
            report = await first_run.json()
            assert first_run.status == 200, report
            assert (report["rows"], report["bound"], report["refused"]) == (7, 1, 6)
            assert report["errors"] == [
                {"line": 3, "reason": "ALIAS_TAKEN"},
                {"line": 4, "reason": "BAD_CHECK_DIGIT"},
                {"line": 5, "reason": "UNKNOWN_ALIAS_TYPE"},
                {"line": 6, "reason": "BAD_CHARACTERS"},
                {"line": 7, "reason": "UNKNOWN_SUBJECT"},
                {"line": 8, "reason": "BAD_ROW"},
            ]
            rerun = await (await client.post("/v1/aliases/bulk", data=body, headers=headers)).json()
            assert (rerun["bound"], rerun["unchanged"], rerun["refused"]) == (0, 1, 6)
            assert rerun["errors"] == report["errors"], "a re-run changes nothing"
            # The header must come first: not after a blank line, and not missing altogether.
            for headless in (b"\n7", b"", ("\n" + "\n".join(rows)).encode()):
                refused = await client.post("/v1/aliases/bulk", data=headless, headers=headers)
                assert refused.status == 400, headless
                assert (await refused.json())["reason"] == "INVALID_FIELD"

    run(scenario())


def _credentials_with_terminals(settings: Settings, directory: Path) -> Settings:
    document = json.loads(Path(settings.keys.credentials_file).read_text())
    document["clients"] += [
        {"client": "gate-1", "scopes": ["verify"], "key": "gate-key", "terminal_type": "gate"},
        {"client": "hall-1", "scopes": ["verify"], "key": "hall-key",
         "terminal_type": "service_hall"},
    ]  # fmt: skip
    path = directory / "credentials.json"
    path.write_text(json.dumps(document))
    return replace(settings, keys=replace(settings.keys, credentials_file=str(path)))


def test_a_gate_and_a_service_hall_see_the_fields_their_profiles_allow(
    settings: Settings, run: Any, tmp_path: Path
) -> None:
    terminals = _credentials_with_terminals(settings, tmp_path)

    async def scenario() -> None:
        async with issuer(terminals) as client, verifier(terminals) as gate:
            subject = await generate(client, terminals, new_person_id())
            linked = await client.post(
                f"/v1/subjects/{subject}/licences",
                json={"type": "business_licence", "number": "91320100MA1XYZ8K3Q"},
                headers=auth(terminals, "fusion"),
            )
            assert linked.status == 201, await linked.text()
            token = (await display(client, terminals, subject))["token"]
            at_gate = await scan(gate, terminals, token, key="gate-key")
            in_hall = await scan(gate, terminals, token, key="hall-key")
            assert at_gate == {"valid": True, "reason": "VALID", "colour": "green"}
            assert in_hall["kind"] == "health" and in_hall["city"] == 320100
            assert in_hall["licences"] == [{"type": "business_licence",
                                            "masked": "****************3Q"}]  # fmt: skip

    run(scenario())


def test_no_credential_or_identifier_reaches_the_store_logs_or_metrics(
    settings: Settings, cluster: DevCluster, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    person, card, e_id = new_person_id(), next(CARDS), new_person_id()
    caplog.set_level(logging.DEBUG)

    async def scenario() -> tuple[str, str]:
        async with issuer(settings) as client, verifier(settings) as gate:
            subject = await generate(client, settings, person)
            await bind(client, settings, subject, "ssc_card", card)
            await bind(client, settings, subject, "e_id", e_id)
            await scan(gate, settings, f"SSC:{card}")
            await scan(gate, settings, f"EID:{e_id}")
            # Both apps run in this process: one rendering holds the metrics of both.
            return subject, render_metrics().decode()

    subject, metrics = run(scenario())
    secrets = [person.encode(), card.encode(), e_id.encode()]
    store = run(_everything_in(cluster))
    assert subject.encode() in store, "the scan reached this subject's keys"
    assert b"ssc_card:*******" in store, "the masked card is listed on the subject"
    for secret in secrets:
        assert secret not in store, "a raw credential or identifier is in the store"
        assert secret.decode() not in caplog.text
        assert secret.decode() not in metrics


async def _everything_in(cluster: DevCluster) -> bytes:
    """Every key and value of every primary, as one blob to search."""
    host, port = cluster.startup_nodes[0]
    # As the admin user: reading every key of every kind is more than the services may do.
    client = RedisCluster(host=host, port=port, **cluster.redis_py_options("admin"))
    parts: list[Any] = []
    try:
        async for key in client.scan_iter(count=1000):
            parts.append(key)
            kind_raw: Any = await client.type(key)
            kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
            if kind == "string":
                parts.append(await client.get(key) or b"")
            elif kind == "hash":
                parts += [x for kv in (await client.hgetall(key)).items() for x in kv]
            elif kind == "stream":
                entries: Any = await client.xrange(key)
                for _id, fields in entries:
                    parts += [x for kv in fields.items() for x in kv]
            elif kind == "set":
                parts += list(await client.smembers(key))
            elif kind == "list":
                parts += await client.lrange(key, 0, -1)
            elif kind == "zset":
                parts += await client.zrange(key, 0, -1)
    finally:
        await client.aclose()
    return b"\n".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)


def test_a_person_has_service_and_fused_codes_that_verify_with_the_live_colour(
    settings: Settings, run: Any
) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client, verifier(settings) as gate:
            subject = await generate(client, settings, new_person_id())
            codes = {}
            for kind in ("own", "service", "fused"):
                shown = await client.get(
                    f"/v1/subjects/{subject}/code", params={"kind": kind},
                    headers=auth(settings, "display"),
                )  # fmt: skip
                assert shown.status == 200, await shown.text()
                codes[kind] = (await shown.json())["token"]
            assert len(set(codes.values())) == 3, "three distinct codes, stored apart"
            await convert(client, settings, subject, "yellow")
            for kind, expected in [("own", "health"), ("service", "person_service"),
                                   ("fused", "fused")]:  # fmt: skip
                answer = await scan(gate, settings, codes[kind])
                assert (answer["valid"], answer["kind"], answer["colour"]) == (
                    True, expected, "yellow"), answer  # fmt: skip
            body17 = "91320100MA1MXXXX0"
            uscc = body17 + uscc_check_char(body17)
            enterprise = await client.post(
                "/v1/subjects", json={"kind": "enterprise", "id": uscc, "city": 320100},
                headers=auth(settings, "generate"),
            )  # fmt: skip
            assert enterprise.status in (200, 201), await enterprise.text()
            firm = (await enterprise.json())["subject"]
            own = await client.get(f"/v1/subjects/{firm}/code", params={"kind": "service"},
                                   headers=auth(settings, "display"))  # fmt: skip
            assert own.status == 200
            answer = await scan(gate, settings, (await own.json())["token"])
            assert (answer["valid"], answer["kind"]) == (True, "enterprise_service")
            fused = await client.get(f"/v1/subjects/{firm}/code", params={"kind": "fused"},
                                     headers=auth(settings, "display"))  # fmt: skip
            assert (fused.status, (await fused.json())["reason"]) == (400, "INVALID_FIELD")

    run(scenario())
