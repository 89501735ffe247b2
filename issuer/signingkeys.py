"""The published trust list (JWKS) and key rotation."""

from __future__ import annotations

__all__ = ["KEY_ROUTES", "publication_s"]

import logging
import math
import os

from aiohttp import web

from codeengine.code.errors import BadRequest, CodeEngineError
from codeengine.code.keyvault import NONCE_BYTES, seal_keyring
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.signedlist import ListKind, read_list
from codeengine.code.suites import b64url_encode
from codeengine.code.trustlist import TrustList
from codeengine.metrics import SIGNED_LISTS
from codeengine.settings import CodeSettings
from codeengine.web.body import Field, read_object
from codeengine.web.routes import Route, object_body, ref
from codeengine.web.runtime import CLOCK, KEYS, PROFILE, SETTINGS, STORE, refresh_keys
from codeengine.web.trust import signed_list_routes, trust_route
from issuer.signedlists import publish_at

log = logging.getLogger("codeengine.issuer.signingkeys")

MAX_ACTIVATION_DELAY_S = 7 * 86_400
ROTATE_FIELDS = {
    "alg": Field(
        str, required=False, max_length=16, schema={"enum": [s.jose_alg for s in DEFAULT_SUITES]}
    ),
    "activate_in_s": Field(int, required=False, minimum=0, maximum=MAX_ACTIVATION_DELAY_S),
}


def publication_s(codes: CodeSettings) -> int:
    """How long after a rotation's answer every service may still serve the list before it.

    The rotation signs the new list before it answers, and each service reads the stored one
    every ``keyring_refresh_s``: one such period, another for a read that was slow, and a
    second for the rotation's time being counted in whole seconds. A staged key signs this
    much later than ``activate_in_s``, so that a terminal which fetched the old list just after
    the rotation still fetches again, a ``trust_list_max_age_s`` later, before the switch.
    """
    return 2 * math.ceil(codes.keyring_refresh_s) + 1


SIGN_NOW_TRIES = 3
"""Rounds of signing after a rotation while another issuer's list (of the keyring before)
takes the sequence number first."""


async def _sign_lists_now(app: web.Application, now: int, trust: bytes) -> None:
    """Sign and store the trust list holding ``trust`` before the rotation answers, rather
    than at the publisher's next round. Another issuer's publisher may store a list of the
    keyring before in between (its compare-and-set wins): then sign again. The publisher
    signs it anyway if this fails (the store or the anchor unavailable)."""
    anchors = app[KEYS].anchors
    if anchors is None:
        return
    store = app[STORE]
    for _ in range(SIGN_NOW_TRIES):
        try:
            for signed in await publish_at(
                store, anchors, now, app[SETTINGS].codes.signed_list_ttl_s
            ):
                SIGNED_LISTS.labels(signed.kind.name.lower()).inc()
            _, document = await store.get_signed_list(ListKind.TRUST)
            if document is not None and read_list(document).content == trust:
                return
        except CodeEngineError as exc:
            log.warning("signing the lists after a rotation failed: %s", exc.reason.value)
            return


async def rotate(request: web.Request) -> web.Response:
    """Rotate the signing key: staged by default, so terminals learn the key before its codes.

    The new key is published at once and signs from ``activate_in_s`` seconds (default: the
    trust list's maximum age) after every service serves it (:func:`publication_s`). The old
    key keeps verifying for a display lifetime plus that age after the switch. A concurrent
    rotation answers 409; nothing is half-applied.
    """
    body = await read_object(request, ROTATE_FIELDS) if request.can_read_body else {}
    app = request.app
    codes = app[SETTINGS].codes
    profile = app[PROFILE]
    suite = profile.suite
    if "alg" in body:
        found = DEFAULT_SUITES.by_jose_alg(body["alg"])
        if found is None:
            raise BadRequest("field 'alg' must be EdDSA, ES256 or SM2SM3")
        suite = found
    activate_in_s = body.get("activate_in_s", codes.trust_list_max_age_s)
    # 0 is an emergency: the new key signs at once, whoever has not learnt it yet.
    delay_s = activate_in_s + publication_s(codes) if activate_in_s else 0
    now = int(app[CLOCK]())
    state = app[KEYS]
    store = app[STORE]
    # Rotate what the store holds now, not this process's possibly older copy.
    await refresh_keys(state, store, app[SETTINGS], signs=True)
    keyring = state.require_keyring().prune_at(now)
    overlap_s = codes.display_ttl_s + codes.clock_skew_s + codes.trust_list_max_age_s
    rotated = keyring.rotate_at(now, suite, overlap_s, os.urandom, activate_in_s=delay_s)
    version = state.version + 1
    assert state.kek is not None
    sealed = seal_keyring(rotated, version, state.kek, os.urandom(NONCE_BYTES), profile)
    trust = TrustList.from_keyring(rotated).to_json().encode()
    await store.put_keyring(state.version, sealed.pack(), version, trust)
    await _sign_lists_now(app, now, trust)
    # Read back after the signing: this issuer serves the new signed list from its answer on.
    await refresh_keys(state, store, app[SETTINGS], signs=True)
    new_key = rotated.next or rotated.current
    answer = {
        "kid": b64url_encode(new_key.kid),
        "alg": suite.jose_alg,
        "activates_at": new_key.not_before,
        "keyring_version": version,
    }
    return web.json_response(answer)


KEY_ROUTES = [
    trust_route(
        "The trust list: JWKS of every key a verifier should trust",
        "Public. Each key carries `nbf`/`exp` (its validity). A staged key appears before it "
        "signs anything.",
    ),
    *signed_list_routes(),
    Route(
        "POST",
        "/v1/keys/rotate",
        rotate,
        "rotate",
        scope="admin",
        summary="Rotate the signing key (admin)",
        description="Staged by default: the new key is published now (the signed trust list "
        "holds it before the answer) and signs `activate_in_s` (default: the trust list's max "
        "age) after every service serves it, that is `activate_in_s` + twice "
        "`codes.keyring_refresh_s` (rounded up) + 1 s from now; `activates_at` says when. "
        "`activate_in_s: 0` switches at once (emergency). A rotation while one is pending "
        "answers 409.",
        body=object_body("RotateRequest", ROTATE_FIELDS, required=False),
        answers={"200": ("Rotated", ref("Rotated"))},
        problems=(400, 409, 413, 415, 503),
    ),
]
