"""Signed lists against the real cluster and the real apps: issuers sign what the store holds,
both services serve it with ETags, a revocation reaches the signed list, and the terminal SDK
configured with the anchor takes the new list and refuses the old one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from codeengine.code.errors import ListRefused, Reason
from codeengine.code.signedlist import ListKind, SignedList, verify_list_at
from codeengine.code.token import decode
from codeengine.code.trustlist import TrustList
from codeengine.keyfiles import anchor_public_path, load_trust_anchor
from codeengine.settings import Settings
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import store_settings
from issuer.signedlists import publish_at
from tests.integration.apps import Client, auth, issuer, new_code, verifier
from verifier.offline import CachedList, OfflineVerifier, load_anchors

pytestmark = pytest.mark.cluster

HANG_GUARD_S = 30.0
"""A deadline only against a hang: each wait ends as soon as what it waits for is so."""
T = TypeVar("T")


def anchors_of(settings: Settings) -> TrustList:
    """The anchors a terminal is configured with: the public file beside the anchor."""
    return load_anchors([anchor_public_path(Path(settings.keys.trust_anchor_file)).read_bytes()])


async def until(read: Callable[[], Awaitable[T | None]]) -> T:
    """``read()`` until it gives something (polled; the issuer signs in the background)."""
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            value = await read()
            if value is not None:
                return value
            await asyncio.sleep(0.05)
    raise AssertionError("the timeout ends the loop above")


async def fetch(client: Client, path: str, etag: str | None = None) -> tuple[int, bytes, str]:
    """GET ``path`` (conditionally with ``etag``): the status, the body and the ETag."""
    headers = {} if etag is None else {"If-None-Match": etag}
    response = await client.get(path, headers=headers)
    assert response.status in (200, 304), await response.text()
    return response.status, await response.read(), response.headers["ETag"]


async def current_signed(
    client: Client, kind: ListKind, anchors: TrustList, content: bytes | None = None
) -> SignedList:
    """The signed list of ``kind`` the service serves, once it is there (and carries
    ``content``, if given), verified under the anchors."""
    path = "/v1/trust/signed" if kind is ListKind.TRUST else "/v1/revocations/signed"

    async def read() -> SignedList | None:
        response = await client.get(path)
        if response.status == 503:
            return None
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/cose"
        signed = verify_list_at(await response.read(), kind, anchors, int(time.time()))
        return signed if content is None or signed.content == content else None

    return await until(read)


def test_both_services_serve_the_lists_signed_by_the_anchor(settings: Settings, run: Any) -> None:
    anchors = anchors_of(settings)

    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            await new_code(iss, settings)
            trust_json = await (await ver.get("/v1/trust")).read()
            for client in (iss, ver):
                signed = await current_signed(client, ListKind.TRUST, anchors, trust_json)
                assert signed.expires_at - signed.issued_at == settings.codes.signed_list_ttl_s
                assert TrustList.from_json(signed.content) == TrustList.from_json(trust_json)
                revocations = await current_signed(client, ListKind.REVOCATIONS, anchors)
                assert revocations.anchor == signed.anchor

    run(scenario())


async def answers_304(client: Client, path: str) -> None:
    """The list at ``path`` answers 304 to its own ETag and 200 to another.

    A list may change between two requests (a revoked code's entry expires, an issuer signs
    again): a 200 with a new ETag is then the right answer, and the pair is tried again.
    """
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            status, body, etag = await fetch(client, path)
            assert status == 200 and body
            again, empty, same = await fetch(client, path, etag)
            if again == 304:
                assert (empty, same) == (b"", etag)
                break
            assert same != etag, "a 200 to a matching If-None-Match only for a changed list"
    other, full, _ = await fetch(client, path, '"not-the-tag"')
    assert other == 200 and full


def test_every_list_answers_an_etag_and_304_to_it(settings: Settings, run: Any) -> None:
    anchors = anchors_of(settings)

    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            await current_signed(ver, ListKind.TRUST, anchors)
            await current_signed(iss, ListKind.REVOCATIONS, anchors)
            for client, path in (
                (iss, "/v1/trust"),
                (ver, "/v1/trust"),
                (iss, "/v1/trust/signed"),
                (ver, "/v1/trust/signed"),
                (iss, "/v1/revocations/signed"),
                (ver, "/v1/revocations/signed"),
                (ver, "/v1/revocations"),
            ):
                await answers_304(client, path)
            _, _, weak = await fetch(ver, "/v1/revocations")
            assert weak.startswith('W/"'), "as_of varies, the lists do not: a weak tag"

    run(scenario())


def test_a_revocation_reaches_the_signed_list_and_the_sdk_refuses_the_older_one(
    settings: Settings, run: Any
) -> None:
    anchors = anchors_of(settings)

    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings) as ver:
            _, code = await new_code(iss, settings)
            trust_json = await (await ver.get("/v1/trust")).read()
            trust = await current_signed(ver, ListKind.TRUST, anchors, trust_json)
            _, before, before_tag = await fetch(ver, "/v1/revocations/signed")
            held = CachedList.from_signed(trust.document, before, anchors, int(time.time()))
            sdk = OfflineVerifier(held, anchors=anchors)
            assert sdk.verify(code).reason == "VALID"

            answer = await ver.post(
                "/v1/revocations", json={"code": code}, headers=auth(settings, "admin")
            )
            assert answer.status == 200, await answer.text()
            cti = decode(code).claims.cti

            async def changed() -> bytes | None:
                status, body, tag = await fetch(ver, "/v1/revocations/signed", before_tag)
                if status == 304:
                    return None
                assert tag != before_tag
                listed = verify_list_at(body, ListKind.REVOCATIONS, anchors, int(time.time()))
                return body if cti.hex().encode() in listed.content else None

            after = await until(changed)
            older = verify_list_at(before, ListKind.REVOCATIONS, anchors, int(time.time()))
            newer = verify_list_at(after, ListKind.REVOCATIONS, anchors, int(time.time()))
            assert newer.seq > older.seq

            sdk.refresh(trust.document, after)
            assert sdk.verify(code).reason == "REVOKED"
            with pytest.raises(ListRefused) as refused:
                sdk.refresh(trust.document, before)
            assert refused.value.reason == Reason.LIST_ROLLBACK
            assert sdk.verify(code).reason == "REVOKED", "the terminal keeps the newer list"

    run(scenario())


def test_a_publisher_signs_nothing_while_nothing_changes(settings: Settings, run: Any) -> None:
    anchors = load_trust_anchor(Path(settings.keys.trust_anchor_file))

    async def scenario() -> None:
        store = RedisStore(store_settings(settings))
        try:
            now = time.time()
            await publish_at(store, anchors, now, settings.codes.signed_list_ttl_s)
            stored = [await store.get_signed_list(kind) for kind in ListKind]
            assert await publish_at(store, anchors, now, settings.codes.signed_list_ttl_s) == []
            assert [await store.get_signed_list(kind) for kind in ListKind] == stored
        finally:
            await store.close()

    run(scenario())


def test_a_verifier_serves_the_signed_lists_without_the_anchor(
    settings: Settings, run: Any, tmp_path: Path
) -> None:
    missing = replace(settings, keys=replace(settings.keys, trust_anchor_file=str(tmp_path / "x")))
    anchors = anchors_of(settings)

    async def scenario() -> None:
        async with issuer(settings) as iss:
            await current_signed(iss, ListKind.TRUST, anchors)
        # A verifier never reads the anchor file: it serves what issuers signed, without it.
        async with verifier(missing) as ver:
            await current_signed(ver, ListKind.TRUST, anchors)
            await current_signed(ver, ListKind.REVOCATIONS, anchors)

    run(scenario())
