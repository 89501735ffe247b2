"""The published trust list (JWKS) and key rotation."""

from __future__ import annotations

__all__ = ["KEY_ROUTES"]

import os

from aiohttp import web

from codeengine.code.errors import BadRequest
from codeengine.code.keyvault import NONCE_BYTES, seal_keyring
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import b64url_encode
from codeengine.code.trustlist import TrustList
from codeengine.web.body import Field, read_object
from codeengine.web.routes import Route, object_body, ref
from codeengine.web.runtime import CLOCK, KEYS, PROFILE, SETTINGS, STORE, refresh_keys
from codeengine.web.trust import signed_list_routes, trust_route

MAX_ACTIVATION_DELAY_S = 7 * 86_400
ROTATE_FIELDS = {
    "alg": Field(
        str, required=False, max_length=16, schema={"enum": [s.jose_alg for s in DEFAULT_SUITES]}
    ),
    "activate_in_s": Field(int, required=False, minimum=0, maximum=MAX_ACTIVATION_DELAY_S),
}


async def rotate(request: web.Request) -> web.Response:
    """Rotate the signing key: staged by default, so terminals learn the key before its codes.

    The new key is published at once and signs from ``activate_in_s`` seconds on (default: the
    trust list's maximum age). The old key keeps verifying for a display lifetime plus that age
    after the switch. A concurrent rotation answers 409; nothing is half-applied.
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
    now = int(app[CLOCK]())
    state = app[KEYS]
    store = app[STORE]
    # Rotate what the store holds now, not this process's possibly older copy.
    await refresh_keys(state, store, app[SETTINGS], signs=True)
    keyring = state.require_keyring().prune_at(now)
    overlap_s = codes.display_ttl_s + codes.clock_skew_s + codes.trust_list_max_age_s
    rotated = keyring.rotate_at(now, suite, overlap_s, os.urandom, activate_in_s=activate_in_s)
    version = state.version + 1
    assert state.kek is not None
    sealed = seal_keyring(rotated, version, state.kek, os.urandom(NONCE_BYTES), profile)
    trust = TrustList.from_keyring(rotated).to_json().encode()
    await store.put_keyring(state.version, sealed.pack(), version, trust)
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
        description="Staged by default: the new key is published now and signs after "
        "`activate_in_s` (default: the trust list's max age); `activate_in_s: 0` switches at "
        "once (emergency). A rotation while one is pending answers 409.",
        body=object_body("RotateRequest", ROTATE_FIELDS, required=False),
        answers={"200": ("Rotated", ref("Rotated"))},
        problems=(400, 409, 413, 415, 503),
    ),
]
