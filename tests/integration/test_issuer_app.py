"""The issuer through its app factory and a real HTTP client, against the real cluster."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.identifiers import make_uscc
from codeengine.code.model import Colour, SubjectId
from codeengine.code.qr import QRFormat
from codeengine.code.signedlist import ListKind, read_list
from codeengine.code.suites import b64url_encode
from codeengine.code.token import decode, verify_at
from codeengine.code.trustlist import TrustList
from codeengine.keyfiles import write_private
from codeengine.settings import Settings
from codeengine.web.runtime import STORE
from issuer.signingkeys import publication_s
from issuer.subjects import QR_CACHE
from tests.integration.apps import Client, Clock, auth, generate, issuer, new_person_id

pytestmark = pytest.mark.cluster

_SEQ = iter(range(100, 999))


async def generate_answer(client: Client, settings: Settings, ident: str) -> dict[str, Any]:
    body = {"kind": "person", "id": ident, "city": 320100}
    response = await client.post("/v1/subjects", json=body, headers=auth(settings, "generate"))
    assert response.status in (200, 201), await response.text()
    return dict(await response.json())


def test_generate_is_idempotent_and_carries_no_identifier(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client:
            ident = new_person_id()
            first = await generate_answer(client, settings, ident)
            again = await generate_answer(client, settings, ident)
            assert first["created"] is True and again["created"] is False
            assert first["subject"] == again["subject"] and len(first["subject"]) == 16
            assert (first["colour"], first["kind"], first["version"]) == ("green", "health", 1)
            assert ident not in json.dumps(first)
            other = await generate(client, settings, new_person_id())
            assert other != first["subject"]
            enterprise = {
                "kind": "enterprise",
                "id": make_uscc(f"91320100MA1{next(_SEQ):06d}"),
                "city": 320500,
            }
            response = await client.post(
                "/v1/subjects", json=enterprise, headers=auth(settings, "generate")
            )
            assert (response.status, (await response.json())["kind"]) == (
                201,
                "enterprise_service",
            )

    run(scenario())


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"kind": "person", "id": "110105194912310021", "city": 320100}, 422, "BAD_CHECK_DIGIT"),
        ({"kind": "person", "id": "11010519491231002X", "city": 110100}, 400, "UNKNOWN_CITY"),
        ({"kind": "robot", "id": "11010519491231002X", "city": 320100}, 400, "INVALID_FIELD"),
        ({"kind": "person", "id": 42, "city": 320100}, 400, "INVALID_FIELD"),
        ({"kind": "person", "id": "11010519491231002X"}, 400, "MISSING_FIELD"),
        (
            {"kind": "person", "id": "11010519491231002X", "city": 320100, "name": "x"},
            400,
            "UNKNOWN_FIELD",
        ),
        ({"kind": "person", "id": "11010519491231002X", "city": True}, 400, "INVALID_FIELD"),
    ],
    ids=["check-digit", "city", "kind", "id-type", "missing", "unknown-field", "bool-city"],
)
def test_generate_refuses_bad_input_with_stable_reasons(
    settings: Settings, body: dict[str, Any], status: int, reason: str
) -> None:
    import asyncio

    async def scenario() -> None:
        async with issuer(settings) as client:
            response = await client.post(
                "/v1/subjects", json=body, headers=auth(settings, "generate")
            )
            problem = await response.json()
            assert (response.status, problem["reason"]) == (status, reason)
            assert "1231002" not in problem["detail"], "identifiers are never echoed"

    asyncio.run(scenario())


def test_malformed_bodies_and_access(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client:
            headers = {**auth(settings, "generate"), "Content-Type": "application/json"}
            bad_json = await client.post("/v1/subjects", data=b"{nope", headers=headers)
            assert (bad_json.status, (await bad_json.json())["reason"]) == (400, "BAD_JSON")
            huge = await client.post("/v1/subjects", data=b"[" * 70_000, headers=headers)
            assert (huge.status, (await huge.json())["reason"]) == (413, "BODY_TOO_LARGE")
            text = await client.post(
                "/v1/subjects", data=b"x", headers={**auth(settings, "generate")}
            )
            assert text.status == 415
            anonymous = await client.post("/v1/subjects", json={})
            assert (anonymous.status, (await anonymous.json())["reason"]) == (401, "UNAUTHORIZED")
            assert anonymous.headers["WWW-Authenticate"] == "Bearer"
            wrong_key = await client.post(
                "/v1/subjects", json={}, headers={"Authorization": "Bearer nope"}
            )
            assert wrong_key.status == 401
            wrong_scope = await client.post(
                "/v1/subjects", json={}, headers=auth(settings, "display")
            )
            assert (wrong_scope.status, (await wrong_scope.json())["reason"]) == (403, "FORBIDDEN")
            nowhere = await client.get("/v1/nowhere")
            assert (nowhere.status, (await nowhere.json())["reason"]) == (404, "NOT_FOUND")
            wrong_method = await client.delete("/v1/subjects")
            assert wrong_method.status == 405 and "POST" in wrong_method.headers["Allow"]

    run(scenario())


def test_display_reuses_until_half_life_then_signs_anew(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        start = int(clock.now)
        async with issuer(settings, clock) as client:
            subject = await generate(client, settings, new_person_id())
            url = f"/v1/subjects/{subject}/code"
            headers = auth(settings, "display")
            response = await client.get(url, headers=headers)
            first = await response.json()
            assert response.status == 200, first
            assert first["refresh_at"] == first["issued_at"] + 60
            assert first["expires_at"] == first["issued_at"] + 120
            clock.now += 59
            assert (await (await client.get(url, headers=headers)).json()) == first
            clock.now += 1
            second = await (await client.get(url, headers=headers)).json()
            assert second["token"] != first["token"] and second["issued_at"] == start + 60
            claims = decode(second["token"]).claims
            assert (claims.subject_id, claims.colour, claims.city) == (
                subject,
                Colour.GREEN,
                320100,
            )
            trust = TrustList.from_json(await (await client.get("/v1/trust")).text())
            assert verify_at(second["token"], trust, int(clock.now)).cti == claims.cti

    run(scenario())


def test_qr_images_are_of_the_same_token_and_rendered_once(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client:
            subject = await generate(client, settings, new_person_id())
            url = f"/v1/subjects/{subject}/code"
            headers = auth(settings, "display")
            token = (await (await client.get(url, headers=headers)).json())["token"]
            png = await client.get(url, params={"format": "png"}, headers=headers)
            assert png.content_type == "image/png"
            assert (await png.read()).startswith(b"\x89PNG")
            svg = await client.get(url, params={"format": "svg"}, headers=headers)
            assert svg.content_type == "image/svg+xml" and b"<svg" in await svg.read()
            cache = client.app[QR_CACHE]
            assert len(cache) == 2
            await client.get(url, params={"format": "png"}, headers=headers)
            assert len(cache) == 2, "a second request is served from the cache"
            assert cache.get(token, QRFormat.PNG) is not None
            bad = await client.get(url, params={"format": "gif"}, headers=headers)
            assert bad.status == 400

    run(scenario())


def test_convert_compare_and_set_idempotency_and_audit(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client:
            subject = await generate(client, settings, new_person_id())
            url = f"/v1/subjects/{subject}/status"
            headers = auth(settings, "convert")
            change = {"colour": "red", "reason": "close contact", "if_version": 1, "op_id": "c-1"}
            done = await client.post(url, json=change, headers=headers)
            assert (await done.json())["version"] == 2 and (await done.json())["applied"]
            resent = await (await client.post(url, json=change, headers=headers)).json()
            assert (resent["version"], resent["applied"]) == (2, False)
            stale = await client.post(url, json={**change, "op_id": "c-2"}, headers=headers)
            problem = await stale.json()
            assert (stale.status, problem["reason"], problem["current_version"]) == (
                409,
                "VERSION_CONFLICT",
                2,
            )
            shown = await client.get(
                f"/v1/subjects/{subject}/code", headers=auth(settings, "display")
            )
            assert (await shown.json())["colour"] == "red", "display reflects the new colour"
            store = client.app[STORE]
            trail = await store.audit_trail(SubjectId(subject))
            assert [(e.old_colour, e.new_colour, e.actor) for e in trail[1:]] == [
                (Colour.GREEN, Colour.RED, "dev-convert")
            ]
            unknown = await client.post(
                "/v1/subjects/AAAAAAAAAAAAAAAA/status",
                json={**change, "op_id": "c-3"},
                headers=headers,
            )
            assert (unknown.status, (await unknown.json())["reason"]) == (404, "UNKNOWN_SUBJECT")

    run(scenario())


def test_rotation_keeps_old_and_new_codes_verifying(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as client:
            subject = await generate(client, settings, new_person_id())
            url = f"/v1/subjects/{subject}/code"
            headers = auth(settings, "display")
            before = (await (await client.get(url, headers=headers)).json())["token"]
            rotated = await client.post(
                "/v1/keys/rotate", json={"activate_in_s": 0}, headers=auth(settings, "admin")
            )
            assert rotated.status == 200, await rotated.text()
            new_kid = (await rotated.json())["kid"]
            # No waiting for half-life: a display after the switch is signed by the new key.
            clock.now += 1
            after = (await (await client.get(url, headers=headers)).json())["token"]
            trust_response = await client.get("/v1/trust")
            assert trust_response.headers["Cache-Control"] == "public, max-age=300"
            trust = TrustList.from_json(await trust_response.text())
            now = int(clock.now)
            assert verify_at(before, trust, now).subject_id == subject
            assert verify_at(after, trust, now).subject_id == subject
            assert decode(after).kid != decode(before).kid
            assert b64url_encode(decode(after).kid) == new_kid
            denied = await client.post(
                "/v1/keys/rotate", json={}, headers=auth(settings, "display")
            )
            assert denied.status == 403

    run(scenario())


def test_a_staged_key_is_in_the_signed_list_before_the_answer_and_signs_a_max_age_after_it(
    settings: Settings, run: Any
) -> None:
    """A terminal that fetches the moment a rotation is answered, and then every max-age,
    must hold the new key before it signs: the list holds it at the answer, and the key signs
    a max-age after every service serves that list."""

    async def scenario() -> None:
        clock = Clock()
        admin = auth(settings, "admin")
        async with issuer(settings, clock) as client:
            body = {"alg": "SM2SM3", "activate_in_s": 60}
            rotated = await client.post("/v1/keys/rotate", json=body, headers=admin)
            assert rotated.status == 200, await rotated.text()
            answer = await rotated.json()
            try:
                assert publication_s(settings.codes) == 3, "keyring_refresh_s 1: 2 x 1 + 1"
                assert answer["activates_at"] == int(clock.now) + 60 + 3
                assert answer["alg"] == "SM2SM3"
                fetched = await client.get("/v1/trust/signed")
                signed = read_list(await fetched.read())
                assert signed.issued_at == int(clock.now)
                listed = {b64url_encode(k.kid): k for k in TrustList.from_json(signed.content)}
                assert listed[answer["kid"]].not_before == answer["activates_at"]
                _, stored = await client.app[STORE].get_signed_list(ListKind.TRUST)
                assert stored == signed.document, "what every service reads next"
            finally:
                # The session's services share the keyring: replace the staged key, as an
                # emergency rotation does, so that no later test meets an SM2 key by surprise.
                reset = await client.post(
                    "/v1/keys/rotate", json={"activate_in_s": 0}, headers=admin
                )
                assert reset.status == 200, await reset.text()

    run(scenario())


def test_store_down_answers_503_with_retry_after(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        dead = replace(settings, cluster=replace(settings.cluster, nodes="127.0.0.1:1"))
        async with issuer(dead) as client:
            response = await client.get(
                "/v1/subjects/AAAAAAAAAAAAAAAA/code", headers=auth(settings, "display")
            )
            problem = await response.json()
            assert (response.status, problem["reason"]) == (503, "STORE_UNAVAILABLE")
            assert response.headers["Retry-After"] == "1"

    run(scenario())


def test_rate_limit_answers_429(settings: Settings, tmp_path: Path, run: Any) -> None:
    async def scenario() -> None:
        credentials = tmp_path / "credentials.json"
        document = {
            "clients": [{"client": "slow", "scopes": ["display"], "key": "k", "rate_per_s": 2}]
        }
        write_private(credentials, json.dumps(document).encode())
        limited = replace(settings, keys=replace(settings.keys, credentials_file=str(credentials)))
        async with issuer(limited) as client:
            headers = {"Authorization": "Bearer k"}
            statuses = [
                (await client.get("/v1/subjects/AAAAAAAAAAAAAAAA/code", headers=headers)).status
                for _ in range(3)
            ]
            assert statuses[:2] == [404, 404]
            response = await client.get("/v1/subjects/AAAAAAAAAAAAAAAA/code", headers=headers)
            assert statuses[2] == 429 or response.status == 429
            assert int(response.headers.get("Retry-After", "1")) >= 1

    run(scenario())


def test_metrics_count_operations_by_reason(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as client:
            await client.get(
                "/v1/subjects/AAAAAAAAAAAAAAAA/code", headers=auth(settings, "display")
            )
            # Scrapers use the management port; the public port has it for admins only.
            assert (await client.get("/metrics")).status == 404
            anyone = await client.get("/v1/ops/metrics", headers=auth(settings, "display"))
            assert anyone.status == 403
            answer = await client.get("/v1/ops/metrics", headers=auth(settings, "admin"))
            assert answer.content_type == "text/plain"
            text = await answer.text()
            assert (
                'codeengine_requests_total{operation="display",reason="UNKNOWN_SUBJECT",'
                'service="issuer"}' in text
            )
            assert "codeengine_request_duration_seconds_bucket" in text

    run(scenario())
