"""SM2 codes through the existing machinery: keyring, codec, verdicts, trust lists, the SDK.

A keyring that signs with SM2 issues codes the online, degraded and offline verdicts accept; a
trust list carrying Ed25519, ES256 and SM2 keys at once reads, round-trips and verifies each
one's codes, signed or not; and a staged rotation from Ed25519 to SM2 and back leaves no valid
code refused at a terminal that refreshes its lists when they are published.
"""

from __future__ import annotations

import json

import pytest

from codeengine.code.base45 import b45decode
from codeengine.code.errors import KeyringError, ListRefused, Reason
from codeengine.code.keyring import Keyring, public_jwk
from codeengine.code.keyvault import open_keyring, seal_keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.profile import NATIONAL
from codeengine.code.secret import Secret
from codeengine.code.signedlist import ListKind, revocations_json, sign_list
from codeengine.code.sm2 import SM2
from codeengine.code.suites import ED25519, ES256, SigningSuite, b64url_encode, deterministic_random
from codeengine.code.token import PREFIX, Claims, cose_to_token, decode, encode, verify_at
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import (
    Revocations,
    degraded_verdict_at,
    online_verdict_at,
)
from verifier.offline import CachedList, OfflineVerifier, load_anchors

NOW = 1_800_000_000
DISPLAY_S = 120
LIST_TTL_S = 86_400
SUBJECT = b"\x05" * 12


def _ring(suite: SigningSuite, name: bytes) -> Keyring:
    return Keyring.generate_at(NOW - 1000, suite, deterministic_random(name))


SM2_RING = _ring(SM2, b"sm2 issuer")
ED_RING = _ring(ED25519, b"ed25519 issuer")
ES_RING = _ring(ES256, b"es256 issuer")
MIXED = TrustList.of((*ED_RING.public_keys(), *ES_RING.public_keys(), *SM2_RING.public_keys()))
ANCHOR = _ring(SM2, b"sm2 anchor")
ANCHORS = load_anchors([TrustList.from_keyring(ANCHOR).to_json()])


def _claims(iat: int = NOW, colour: Colour = Colour.GREEN) -> Claims:
    return Claims(iat + DISPLAY_S, iat, b"\x03" * 6, SUBJECT, CodeKind.HEALTH, 320100, colour, 9)


def _signed_lists(trust: TrustList, seq: int, at: int) -> tuple[bytes, bytes]:
    key = ANCHOR.current
    content = trust.to_json().encode()
    signed_trust = sign_list(ListKind.TRUST, content, seq, at, at + LIST_TTL_S, key)
    revocations = revocations_json(Revocations())
    signed_revocations = sign_list(ListKind.REVOCATIONS, revocations, seq, at, at + LIST_TTL_S, key)
    return signed_trust.document, signed_revocations.document


def test_an_sm2_keyring_signs_codes_every_verdict_accepts() -> None:
    token = encode(_claims(), SM2_RING.signing_key_at(NOW))
    decoded = decode(token)
    assert decoded.alg == -65537
    trust = TrustList.from_keyring(SM2_RING)
    assert verify_at(token, trust, NOW) == _claims()
    # Online with no displayed code held: the signature decides, the live colour answers.
    online = online_verdict_at(decoded, token, Colour.YELLOW, False, trust, NOW)
    assert (online.valid, online.colour) == (True, Colour.YELLOW)
    degraded = degraded_verdict_at(decoded, trust, NOW, grey=False)
    assert (degraded.valid, degraded.degraded, degraded.colour) == (True, True, Colour.GREEN)
    sdk = OfflineVerifier(CachedList(trust, Revocations(), NOW), clock=lambda: float(NOW))
    assert sdk.verify(token).valid
    assert sdk.verify(token + "\r\n").valid


def test_an_altered_sm2_code_is_refused_everywhere() -> None:
    red = encode(_claims(colour=Colour.RED), SM2_RING.current)
    green_payload = encode(_claims(), SM2_RING.current)
    # The red code's signature on the green code's bytes: same length, same key, wrong claims.
    forged_cose = decode(green_payload)
    trust = TrustList.from_keyring(SM2_RING)
    forged = forged_cose._replace(signature=decode(red).signature)
    degraded = degraded_verdict_at(forged, trust, NOW, grey=False)
    assert (degraded.valid, degraded.reason) == (False, Reason.BAD_SIGNATURE.value)
    sdk = OfflineVerifier(CachedList(trust, Revocations(), NOW), clock=lambda: float(NOW))
    cose = b45decode(red[len(PREFIX) :])
    flipped = cose_to_token(cose[:-1] + bytes((cose[-1] ^ 1,)))
    assert sdk.verify(flipped).reason == Reason.BAD_SIGNATURE.value


def test_the_sealed_keyring_keeps_an_sm2_signing_key() -> None:
    kek = Secret(b"k" * 32)
    reopened = open_keyring(seal_keyring(SM2_RING, 3, kek, b"n" * 12, NATIONAL), kek, NATIONAL)
    assert reopened == SM2_RING
    token = encode(_claims(), reopened.current)
    verify_at(token, TrustList.from_keyring(SM2_RING), NOW)


def test_a_mixed_trust_list_reads_back_and_verifies_each_suites_codes() -> None:
    document = MIXED.to_json()
    algs = sorted(key["alg"] for key in json.loads(document)["keys"])
    assert algs == ["ES256", "EdDSA", "SM2SM3"]
    reread = TrustList.from_json(document)
    assert reread == MIXED
    assert reread.to_json() == document
    for ring in (ED_RING, ES_RING, SM2_RING):
        token = encode(_claims(), ring.current)
        assert verify_at(token, reread, NOW) == _claims()


def test_the_sdk_takes_a_signed_mixed_list_under_an_sm2_anchor() -> None:
    cached = CachedList.from_signed(*_signed_lists(MIXED, 1, NOW), ANCHORS, NOW)
    sdk = OfflineVerifier(cached, clock=lambda: float(NOW), anchors=ANCHORS)
    for ring in (ED_RING, ES_RING, SM2_RING):
        verdict = sdk.verify(encode(_claims(), ring.current))
        assert (verdict.valid, verdict.reason) == (True, "VALID")


def _jwks_with_sm2(change: dict[str, object]) -> str:
    keys = [public_jwk(key) for key in MIXED]
    sm2_index = next(i for i, key in enumerate(keys) if key["alg"] == "SM2SM3")
    keys[sm2_index] = {**keys[sm2_index], **change}
    return json.dumps({"keys": keys})


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"alg": "SM2"}, "names no accepted suite"),
        ({"crv": "sm2p256v1"}, "'crv' must be 'SM2'"),
        ({"y": b64url_encode(bytes(32))}, "not a point on the SM2 curve"),
        ({"kid": b64url_encode(b"\x00" * 8)}, "not the thumbprint"),
        ({"d": b64url_encode(b"\x01" * 32)}, "must not carry the private member"),
    ],
)
def test_unknown_or_invalid_sm2_keys_are_refused_with_the_existing_reasons(
    change: dict[str, object], detail: str
) -> None:
    document = _jwks_with_sm2(change)
    with pytest.raises(KeyringError, match=detail) as caught:
        TrustList.from_json(document)
    assert caught.value.reason is Reason.KEYRING
    # Signed and fetched by a terminal, the same list is refused as malformed.
    key = ANCHOR.current
    trust = sign_list(ListKind.TRUST, document.encode(), 5, NOW, NOW + LIST_TTL_S, key)
    revocations = sign_list(ListKind.REVOCATIONS, revocations_json(Revocations()), 5, NOW,
                            NOW + LIST_TTL_S, key)  # fmt: skip
    with pytest.raises(ListRefused) as refused:
        CachedList.from_signed(trust.document, revocations.document, ANCHORS, NOW)
    assert refused.value.reason is Reason.LIST_MALFORMED


@pytest.mark.parametrize(("first", "then"), [(ED25519, SM2), (SM2, ED25519)])
def test_a_staged_rotation_between_profiles_refuses_no_valid_code(
    first: SigningSuite, then: SigningSuite
) -> None:
    """The issuer publishes the new key a list lifetime before it signs; a terminal refreshing
    on that schedule holds every key a code it meets was signed with, until the code expires."""
    ring = Keyring.generate_at(NOW - 1000, first, deterministic_random(b"rotation"))
    overlap = DISPLAY_S + 30 + LIST_TTL_S
    ring = ring.rotate_at(NOW, then, overlap, deterministic_random(b"next"),
                          activate_in_s=LIST_TTL_S)  # fmt: skip
    clock_now = [NOW]
    cached = CachedList.from_signed(
        *_signed_lists(TrustList.from_keyring(ring), 1, NOW), ANCHORS, NOW
    )
    sdk = OfflineVerifier(cached, clock=lambda: float(clock_now[0]), anchors=ANCHORS)
    seq = 1
    issued: list[tuple[int, str]] = []
    # One code per hour over two list lifetimes, the terminal refreshing at each publication.
    for hour in range(0, 2 * LIST_TTL_S + 1, 3600):
        at = NOW + hour
        clock_now[0] = at
        if hour % LIST_TTL_S == 0 and hour:
            seq += 1
            current = ring.prune_at(at).promote_at(at)
            sdk.refresh(*_signed_lists(TrustList.from_keyring(current), seq, at))
        token = encode(_claims(iat=at), ring.signing_key_at(at))
        issued.append((at, token))
        verdict = sdk.verify(token)
        assert verdict.valid, (hour, verdict.reason)
    suites = {decode(token).alg for _, token in issued}
    assert suites == {first.cose_alg, then.cose_alg}
    # Codes signed by the old key before the switch still verify until they expire.
    last_old = max(at for at, token in issued if decode(token).alg == first.cose_alg)
    clock_now[0] = last_old + DISPLAY_S
    assert sdk.verify(dict(issued)[last_old]).valid
