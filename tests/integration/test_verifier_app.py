"""The verifier through its app factory and a real client, against the real cluster.

Codes come from the real issuer (display) or are signed here with the issuer's own keyring,
for the cases the issuer would never produce (expired, not yet valid, foreign key).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest

from codeengine.code.keyring import Keyring, SigningKey
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.pseudonym import subject_bytes
from codeengine.code.scans import ScanCount, count_scans
from codeengine.code.suites import ED25519, b64url_encode
from codeengine.code.token import Claims, decode, encode
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.store import keyspace
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import KEYS, STORE
from tests.integration.apps import (
    Client,
    Clock,
    auth,
    display,
    generate,
    issuer,
    new_code,
    new_person,
    new_person_id,
    verifier,
)
from verifier.offline import CachedList, OfflineVerifier
from verifier.offline.__main__ import read_qr
from verifier.verify import BATCH_ITEM_BYTES, batch_body_bytes

pytestmark = pytest.mark.cluster

CITY = 320100

HANG_GUARD_S = 30.0
"""A deadline only against a hang: each wait ends as soon as what it waits for is so."""


async def revoked(client: Client, settings: Settings, code: str) -> None:
    """Wait for the verifier's refresher to make ``code`` answer REVOKED (polled)."""
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            if (await verify(client, settings, code))["reason"] == "REVOKED":
                return
            await asyncio.sleep(0.05)


def scan(code: str, city: int = CITY, venue: str = "gate-1") -> dict[str, Any]:
    return {"code": code, "terminal": "t-1", "venue": venue, "city": city}


async def verify(client: Client, settings: Settings, code: str, **kw: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/verify", json=scan(code, **kw), headers=auth(settings, "verify")
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def signing_key(issuer_client: Client, now: int) -> SigningKey:
    return issuer_client.app[KEYS].require_keyring().signing_key_at(now)


def crafted(subject: str, key: SigningKey, iat: int, ttl: int = 120) -> str:
    claims = Claims(
        exp=iat + ttl,
        iat=iat,
        cti=os.urandom(6),
        subject=subject_bytes(SubjectId(subject)),
        kind=CodeKind.HEALTH,
        city=CITY,
        colour=Colour.GREEN,
        version=1,
    )
    return encode(claims, key)


def tampered(code: str) -> str:
    # Change one base45 character of the signature region; stays in the alphabet.
    index = len(code) - 5
    return code[:index] + ("A" if code[index] != "A" else "B") + code[index + 1 :]


def test_verdicts_for_every_kind_of_code(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        now = int(clock.now)
        async with issuer(settings, clock) as iss, verifier(settings, clock) as ver:
            subject, code = await new_code(iss, settings)
            key = signing_key(iss, now)
            foreign = Keyring.generate_at(now - 10, ED25519, os.urandom).current
            cases = {
                "valid": (code, "VALID"),
                "expired": (crafted(subject, key, now - 500), "EXPIRED"),
                "not-yet-valid": (crafted(subject, key, now + 300), "NOT_YET_VALID"),
                "tampered": (tampered(code), "BAD_SIGNATURE"),
                "unknown-key": (crafted(subject, foreign, now), "UNKNOWN_KID"),
                "garbage": ("HELLO", "MALFORMED"),
                "scanner-newline": (code + "\r\n", "VALID"),
            }
            for name, (text, reason) in cases.items():
                answer = await verify(ver, settings, text)
                assert answer["reason"] == reason, name
                assert answer["valid"] is (reason == "VALID"), name
            answer = await verify(ver, settings, code)
            assert answer == {
                "valid": True,
                "reason": "VALID",
                "colour": "green",
                "kind": "health",
                "city": CITY,
                "checked_at": now,
                "as_of": now,
                "degraded": False,
            }
            # A code the store does not hold is accepted on its signature alone.
            assert (await verify(ver, settings, crafted(subject, key, now)))["valid"] is True
            unknown = crafted(b64url_encode(os.urandom(12)), key, now)
            assert (await verify(ver, settings, unknown))["reason"] == "UNKNOWN_SUBJECT"

    run(scenario())


def test_live_colour_after_convert(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            subject, code = await new_code(iss, settings)
            change = {"colour": "red", "reason": "positive test", "if_version": 1}
            response = await iss.post(
                f"/v1/subjects/{subject}/status", json=change, headers=auth(settings, "convert")
            )
            assert response.status == 200
            answer = await verify(ver, settings, code)
            assert (answer["valid"], answer["colour"]) == (True, "red")
            assert decode(code).claims.colour is Colour.GREEN, "the code itself said green"

    run(scenario())


def test_wrong_city_refused_only_where_policy_says(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        strict = replace(settings, verifier=replace(settings.verifier, cross_city=False))
        async with issuer(settings) as iss, verifier(settings) as lenient, verifier(strict) as ver:
            _, code = await new_code(iss, settings)
            assert (await verify(lenient, settings, code, city=320500))["reason"] == "VALID"
            refused = await verify(ver, settings, code, city=320500)
            assert (refused["valid"], refused["reason"], refused["city"]) == (
                False,
                "WRONG_CITY",
                CITY,
            )
            assert (await verify(ver, settings, code))["reason"] == "VALID"
            outside = await ver.post(
                "/v1/verify", json=scan(code, city=110100), headers=auth(settings, "verify")
            )
            assert (outside.status, (await outside.json())["reason"]) == (400, "UNKNOWN_CITY")

    run(scenario())


def test_terminal_and_venue_ids_must_be_printable(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings), verifier(settings) as ver:
            headers = auth(settings, "verify")
            # Checked before the code is looked at: no code is needed to be refused.
            for body in (
                {**scan("CE1:x"), "terminal": "t-1\n"},
                {**scan("CE1:x"), "venue": "gate\x00"},
                {**scan("CE1:x"), "venue": "闸机\u2028"},
            ):
                one = await ver.post("/v1/verify", json=body, headers=headers)
                assert one.status == 400
                assert (await one.json())["reason"] == "INVALID_FIELD"
                batch = await ver.post(
                    "/v1/verify/batch", json={"items": [scan("CE1:x"), body]}, headers=headers
                )
                problem = await batch.json()
                assert (batch.status, problem["reason"]) == (400, "INVALID_FIELD")
                assert problem["detail"].startswith("items[1]: ")
            taken = await ver.post(
                "/v1/verify", json=scan("CE1:x", venue="南京南站 2号口"), headers=headers
            )
            assert (taken.status, (await taken.json())["reason"]) == (200, "MALFORMED")

    run(scenario())


def test_revoked_code_and_key_within_a_second(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            _, code = await new_code(iss, settings)
            admin = auth(settings, "admin")
            revocation = await ver.post("/v1/revocations", json={"code": code}, headers=admin)
            assert revocation.status == 200, await revocation.text()
            # Within a second by the refresh period it promises (time it takes here is the
            # machine's: the background refresher is waited for, up to a hang guard).
            assert (await revocation.json())["effective_within_s"] <= 1.0
            await revoked(ver, settings, code)
            listed = await (await ver.get("/v1/revocations")).json()
            assert decode(code).claims.cti.hex() in listed["codes"]

            # Key revocation: rotate at once so the old key only verifies, then revoke it.
            _, old_code = await new_code(iss, settings)
            rotated = await iss.post("/v1/keys/rotate", json={"activate_in_s": 0}, headers=admin)
            assert rotated.status == 200
            old_kid = b64url_encode(decode(old_code).kid)
            response = await ver.post("/v1/revocations", json={"kid": old_kid}, headers=admin)
            assert response.status == 200
            await revoked(ver, settings, old_code)
            assert old_kid in (await (await ver.get("/v1/revocations")).json())["keys"]
            bad = await ver.post("/v1/revocations", json={"kid": "x", "code": "y"}, headers=admin)
            assert bad.status == 400
            denied = await ver.post(
                "/v1/revocations", json={"kid": old_kid}, headers=auth(settings, "verify")
            )
            assert denied.status == 403

    run(scenario())


def test_store_down_gives_a_degraded_answer_within_the_deadline(
    settings: Settings, cluster: DevCluster
) -> None:
    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            subject, code = await new_code(iss, settings)
            store = ver.app[STORE]
            assert isinstance(store, RedisStore)
            primary = store._fast.primary_for(keyspace.subject_key(SubjectId(subject)))
            assert primary is not None
            port = primary[1]
            with cluster.paused(port):
                # Without the read deadline (250 ms) the read would wait for the shard as
                # long as it is paused: the guard turns that into a failure, not a hang.
                answer = await asyncio.wait_for(verify(ver, settings, code), HANG_GUARD_S)
                # One shard down is every worker's: still ready (a load balancer keeps it),
                # saying why.
                ready = await asyncio.wait_for(ver.get("/readyz"), HANG_GUARD_S)
                assert (ready.status, await ready.json()) == (
                    200,
                    {"status": "ready", "degraded": {"cluster": "STORE_UNAVAILABLE"}},
                )
            iat = decode(code).claims.iat
            assert (answer["valid"], answer["degraded"], answer["as_of"], answer["colour"]) == (
                True,
                True,
                iat,
                "green",
            )
            assert (await verify(ver, settings, tampered(code)))["reason"] == "BAD_SIGNATURE"
        cluster.wait_healthy()

    asyncio.run(scenario())


def test_batches_answer_in_order_in_json_and_msgpack(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        now = int(clock.now)
        async with issuer(settings, clock) as iss, verifier(settings, clock) as ver:
            subjects = [await generate(iss, settings, new_person_id()) for _ in range(6)]
            codes = [(await display(iss, settings, s))["token"] for s in subjects]
            key = signing_key(iss, now)
            items = [scan(c) for c in codes]
            items.insert(2, scan(tampered(codes[0])))
            items.insert(4, scan(crafted(subjects[1], key, now - 500)))
            expected = ["VALID", "VALID", "BAD_SIGNATURE", "VALID", "EXPIRED", "VALID", "VALID"]
            expected += ["VALID"]
            headers = auth(settings, "verify")
            response = await ver.post("/v1/verify/batch", json={"items": items}, headers=headers)
            results = (await response.json())["results"]
            assert [r["reason"] for r in results] == expected
            packed = await ver.post(
                "/v1/verify/batch",
                data=msgpack.packb({"items": items}),
                headers={**headers, "Content-Type": "application/msgpack"},
            )
            assert packed.content_type == "application/msgpack"
            unpacked = msgpack.unpackb(await packed.read())
            assert [r["reason"] for r in unpacked["results"]] == expected
            too_many = await ver.post(
                "/v1/verify/batch", json={"items": [items[0]] * 501}, headers=headers
            )
            assert too_many.status == 400
            broken = await ver.post(
                "/v1/verify/batch",
                data=b"\xc1",
                headers={**headers, "Content-Type": "application/msgpack"},
            )
            assert (broken.status, (await broken.json())["reason"]) == (400, "BAD_JSON")
            bad_item = await ver.post(
                "/v1/verify/batch", json={"items": [items[0], {"code": 1}]}, headers=headers
            )
            assert "items[1]" in (await bad_item.json())["detail"]

    run(scenario())


def test_bodies_are_held_to_the_documented_limits(settings: Settings, run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as iss, verifier(settings, clock) as ver:
            subject = await generate(iss, settings, new_person_id())
            code = (await display(iss, settings, subject))["token"]
            headers = {**auth(settings, "verify"), "Content-Type": "application/json"}

            def padded(document: object, size: int) -> bytes:
                """``document`` as JSON of exactly ``size`` bytes (spaces before its end)."""
                raw = json.dumps(document).encode()
                return raw[:-1] + b" " * (size - len(raw)) + raw[-1:]

            async def post(path: str, body: object) -> tuple[int, Any]:
                response = await ver.post(path, data=body, headers=headers)
                return response.status, await response.json()

            limit = settings.service.client_max_size_bytes
            status, answer = await post("/v1/verify", padded(scan(code), limit))
            assert (status, answer["reason"]) == (200, "VALID")
            status, answer = await post("/v1/verify", padded(scan(code), limit + 1))
            assert (status, answer["reason"]) == (413, "BODY_TOO_LARGE")
            # A full batch needs more than any other body, and has a limit of its own.
            items = {"items": [scan(code)] * settings.verifier.batch_max}
            assert len(json.dumps(items)) > limit
            status, answer = await post("/v1/verify/batch", json.dumps(items).encode())
            assert status == 200 and len(answer["results"]) == settings.verifier.batch_max
            batch_limit = batch_body_bytes(settings)
            assert batch_limit == settings.verifier.batch_max * BATCH_ITEM_BYTES
            status, answer = await post("/v1/verify/batch", padded(items, batch_limit))
            assert status == 200
            over = padded(items, batch_limit + 1)
            status, answer = await post("/v1/verify/batch", over)
            assert (status, answer["reason"]) == (413, "BODY_TOO_LARGE")

            async def chunks() -> AsyncIterator[bytes]:
                # Chunked, with no Content-Length: the limit holds while the body is read.
                for start in range(0, len(over), 16_384):
                    yield over[start : start + 16_384]

            status, answer = await post("/v1/verify/batch", chunks())
            assert (status, answer["reason"]) == (413, "BODY_TOO_LARGE")

    run(scenario())


def test_scan_log_counts_by_venue_without_personal_data(
    settings: Settings, cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            ident, subject = await new_person(iss, settings)
            code = (await display(iss, settings, subject))["token"]
            venue = f"venue-{os.urandom(4).hex()}"
            started_ms = int(time.time() * 1000) - 1000
            for _ in range(3):
                await verify(ver, settings, code, venue=venue)
            await verify(ver, settings, "HELLO", venue=venue)
            await verify(ver, settings, code, venue="elsewhere")
            # The apps' clock stands still; the window is given in real milliseconds.
            store = ver.app[STORE]
            assert isinstance(store, RedisStore)

            async def counted(to_ms: int) -> tuple[ScanCount, int]:
                window = await store.read_scans(CITY, started_ms, to_ms, 10_000)
                return count_scans(window.entries, venue), window.unreadable

            # The writer flushes in the background: wait for all four entries to be counted.
            async with asyncio.timeout(HANG_GUARD_S):
                while True:
                    count, unreadable = await counted(int(time.time() * 1000) + 1000)
                    if count.total >= 4:
                        break
                    await asyncio.sleep(0.05)
            assert (count.total, count.by_reason) == (4, {"VALID": 3, "MALFORMED": 1})
            assert count.by_colour == {"green": 3}
            log_key = keyspace.scan_log_key(CITY)
            (master,) = [
                p for p in cluster.masters() if cluster.command(p, "EXISTS", log_key).strip() == "1"
            ]
            dump = cluster.command(master, "XRANGE", log_key, "-", "+")
            assert subject in dump and ident not in dump
            # Entries that are not scan entries are skipped and counted, not fatal to the window
            # (the stream is the city's, shared with other tests: count from what it held).
            cluster.command(master, "XADD", log_key, "*", "e", "not msgpack")
            cluster.command(master, "XADD", log_key, "*", "c", "not a city")
            again, unreadable_after = await counted(int(time.time() * 1000) + 1000)
            assert (again.total, unreadable_after) == (4, unreadable + 2)
            # The counts moved to the records service, which stores the stream and trims it.
            query = {"city": str(CITY), "venue": venue}
            response = await ver.get("/v1/scans", params=query, headers=auth(settings, "admin"))
            moved = await response.json()
            assert (response.status, moved["reason"]) == (410, "MOVED")
            assert moved["moved_to"] == "GET /v1/records/counts"
            denied = await ver.get("/v1/scans", params=query, headers=auth(settings, "verify"))
            assert denied.status == 403

    run(scenario())


def test_display_png_is_scannable_and_verifies_offline(
    settings: Settings, tmp_path: Path, run: Any
) -> None:
    image = tmp_path / "code.png"
    trust_file = tmp_path / "trust.json"

    async def scenario() -> str:
        async with issuer(settings) as iss, verifier(settings) as ver:
            subject, token = await new_code(iss, settings)
            png = await iss.get(
                f"/v1/subjects/{subject}/code",
                params={"format": "png"},
                headers=auth(settings, "display"),
            )
            image.write_bytes(await png.read())
            trust = await (await ver.get("/v1/trust")).text()
            revocations = await (await ver.get("/v1/revocations")).text()
        trust_file.write_text(trust)
        cached = CachedList.from_documents(trust, revocations, int(time.time()))
        assert read_qr(image) == token, "the rendered image decodes to the same token"
        verdict = OfflineVerifier(cached).verify(read_qr(image))
        assert (verdict.valid, verdict.reason, verdict.colour) == (True, "VALID", Colour.GREEN)
        return token

    token = run(scenario())
    offline = [sys.executable, "-m", "verifier.offline", "--trust", str(trust_file)]
    cli = subprocess.run(
        [*offline, "--image", str(image)], capture_output=True, text=True, timeout=60, check=False
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["reason"] == "VALID"
    refused = subprocess.run(
        [*offline, tampered(token)], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["reason"] == "BAD_SIGNATURE"


def test_a_key_that_signs_at_once_is_read_on_its_first_code_not_at_the_next_refresh(
    settings: Settings, run: Any
) -> None:
    """An emergency rotation (``activate_in_s`` 0) signs before the verifier's periodic read:
    the first code of the new key makes the verifier read the trust list again, and a code
    of a key nobody published is still refused."""
    slow = replace(
        settings,
        codes=replace(settings.codes, keyring_refresh_s=3600.0),
        verifier=replace(settings.verifier, revocation_refresh_s=3600.0),
    )

    async def scenario() -> None:
        clock = Clock()
        async with issuer(settings, clock) as iss, verifier(slow, clock) as ver:
            subject = await generate(iss, settings, new_person_id())
            rotated = await iss.post(
                "/v1/keys/rotate", json={"activate_in_s": 0}, headers=auth(settings, "admin")
            )
            assert rotated.status == 200, await rotated.text()
            clock.now += 1
            code = str((await display(iss, settings, subject))["token"])
            assert b64url_encode(decode(code).kid) == (await rotated.json())["kid"]
            assert (await verify(ver, settings, code))["reason"] == "VALID"
            foreign = Keyring.generate_at(int(clock.now) - 10, ED25519, os.urandom).current
            unknown = crafted(subject, foreign, int(clock.now))
            assert (await verify(ver, settings, unknown))["reason"] == "UNKNOWN_KID"

    run(scenario())
