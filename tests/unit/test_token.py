"""The code format: encoding, size budget, strict decoding, verification order, time window."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import cbor2
import pytest
import qrcode
import qrcode.util
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.base45 import b45decode
from codeengine.code.errors import (
    BadSignature,
    Expired,
    MalformedCode,
    NotYetValid,
    Reason,
    UnknownKeyId,
    UnsupportedAlgorithm,
    VerificationError,
)
from codeengine.code.keyring import Keyring, SigningKey
from codeengine.code.model import CITIES, CodeKind, Colour
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import (
    ED25519,
    ES256,
    JWKMembers,
    PrivateKey,
    PublicKey,
    RandomSource,
    SigningSuite,
    SuiteRegistry,
    Verifier,
    deterministic_random,
)
from codeengine.code.token import (
    DEFAULT_SKEW_S,
    PREFIX,
    Claims,
    check_signature_at,
    check_window_at,
    cose_to_token,
    decode,
    decode_cose,
    encode,
    encode_cose,
    sig_structure,
    subject_bytes,
    verify_at,
)
from codeengine.code.trustlist import TrustList

NOW = 1_800_000_000
TTL_S = 120
BUDGET_CHARS = 200
MAX_QR_VERSION = 10

ED_RING = Keyring.generate_at(NOW - 3600, ED25519, deterministic_random(b"ed"))
ES_RING = Keyring.generate_at(NOW - 3600, ES256, deterministic_random(b"es"))
TRUST = TrustList.of([*ED_RING.public_keys(), *ES_RING.public_keys()])
RINGS = [ED_RING, ES_RING]
RING_IDS = ["Ed25519", "ES256"]


def _claims(**changes: object) -> Claims:
    claims = Claims(
        exp=NOW + TTL_S,
        iat=NOW,
        cti=bytes.fromhex("a1b2c3d4e5f6"),
        subject=bytes(range(12)),
        kind=CodeKind.HEALTH,
        city=320100,
        colour=Colour.GREEN,
        version=65535,
    )
    return claims._replace(**changes)


def _signed(
    protected: bytes, payload: bytes, private: PrivateKey, signature: bytes | None = None
) -> str:
    """Token text for raw header and payload bytes, signed unless a signature is given."""
    if signature is None:
        signature = private.sign(sig_structure(protected, payload))
    return cose_to_token(
        cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]), canonical=True)
    )


def _payload(claims: Claims) -> bytes:
    return decode(encode(claims, ED_RING.current)).payload


def _header(alg: int, kid: bytes) -> bytes:
    return cbor2.dumps({1: alg, 4: kid}, canonical=True)


@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
def test_round_trip(ring: Keyring) -> None:
    claims = _claims()
    token = encode(claims, ring.current)
    assert token.startswith(PREFIX)
    decoded = decode(token)
    assert decoded.claims == claims
    assert decoded.kid == ring.current.kid
    assert decoded.alg == ring.current.alg
    assert verify_at(token, TRUST, NOW) == claims


@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
def test_wire_layout_is_the_documented_canonical_cbor(ring: Keyring) -> None:
    claims = _claims(kind=CodeKind.FUSED, city=321300, colour=Colour.RED, version=7)
    cose = encode_cose(claims, ring.current)
    tagged = cbor2.loads(cose)
    assert cbor2.dumps(tagged, canonical=True) == cose
    assert tagged.tag == 18
    protected, unprotected, payload, signature = tagged.value
    assert cbor2.loads(protected) == {1: ring.current.alg, 4: ring.current.kid}
    assert dict(unprotected) == {}
    assert len(signature) == 64
    assert cbor2.loads(payload) == {
        4: NOW + TTL_S,
        6: NOW,
        7: claims.cti,
        -1: claims.subject,
        -2: [4, 3213, 3, 7],
    }
    assert cbor2.dumps(cbor2.loads(payload), canonical=True) == payload
    expected_tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    assert decode_cose(cose).to_be_signed == expected_tbs
    ring.current.private.public.verify(signature, expected_tbs)


@settings(max_examples=300, deadline=None, database=None)
@given(protected=st.binary(max_size=300), payload=st.binary(max_size=300))
def test_sig_structure_is_the_cbor_array_at_every_length(protected: bytes, payload: bytes) -> None:
    """Codes take the precomputed heads; every other length the general encoding."""
    assert sig_structure(protected, payload) == cbor2.dumps(["Signature1", protected, b"", payload])


@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
@pytest.mark.parametrize("kind", list(CodeKind), ids=[kind.label for kind in CodeKind])
def test_token_fits_the_size_budget_and_qr_version(ring: Keyring, kind: CodeKind) -> None:
    tokens = [
        encode(_claims(kind=kind, city=city, colour=colour), ring.current)
        for city in CITIES
        for colour in Colour
    ]
    longest = max(tokens, key=len)
    assert len(longest) <= BUDGET_CHARS
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(qrcode.util.QRData(longest.encode("ascii"), mode=qrcode.util.MODE_ALPHA_NUM))
    qr.make(fit=True)
    assert qr.version <= MAX_QR_VERSION


def test_check_window_boundaries() -> None:
    claims = _claims()
    check_window_at(claims, NOW + TTL_S + DEFAULT_SKEW_S)
    with pytest.raises(Expired):
        check_window_at(claims, NOW + TTL_S + DEFAULT_SKEW_S + 1)
    check_window_at(claims, NOW - DEFAULT_SKEW_S)
    with pytest.raises(NotYetValid):
        check_window_at(claims, NOW - DEFAULT_SKEW_S - 1)
    check_window_at(claims, NOW + TTL_S, skew_s=0)
    with pytest.raises(Expired):
        check_window_at(claims, NOW + TTL_S + 1, skew_s=0)
    with pytest.raises(NotYetValid):
        check_window_at(claims, NOW - 1, skew_s=0)


def test_verify_at_applies_the_skew_argument() -> None:
    token = encode(_claims(), ED_RING.current)
    assert verify_at(token, TRUST, NOW + TTL_S + 100, skew_s=100) == _claims()
    with pytest.raises(Expired):
        verify_at(token, TRUST, NOW + TTL_S + 101, skew_s=100)


def test_order_alg_before_kid() -> None:
    token = _signed(_header(-35, b"\x00" * 8), _payload(_claims()), ED_RING.current.private)
    with pytest.raises(UnsupportedAlgorithm):
        verify_at(token, TRUST, NOW)


def test_order_kid_before_signature_and_window() -> None:
    stranger = ED25519.generate(deterministic_random(b"stranger"))
    token = _signed(_header(-8, b"\x01" * 8), _payload(_claims()), stranger, signature=bytes(64))
    with pytest.raises(UnknownKeyId):
        verify_at(token, TRUST, NOW + 10**6)


def test_order_key_alg_before_signature() -> None:
    token = _signed(_header(-7, ED_RING.current.kid), _payload(_claims()), ED_RING.current.private)
    with pytest.raises(UnsupportedAlgorithm, match="key's algorithm"):
        verify_at(token, TRUST, NOW)


def test_order_signature_before_window() -> None:
    key = ED_RING.current
    token = _signed(_header(-8, key.kid), _payload(_claims()), key.private, signature=bytes(64))
    with pytest.raises(BadSignature):
        verify_at(token, TRUST, NOW + 10**6)


def test_key_validity_is_checked_at_now() -> None:
    token = encode(_claims(), ED_RING.current)
    with pytest.raises(UnknownKeyId):
        verify_at(token, TRUST, ED_RING.current.not_before - 1)


def test_caller_can_refuse_a_registered_suite() -> None:
    token = encode(_claims(), ES_RING.current)
    only_ed25519 = SuiteRegistry([ED25519])
    with pytest.raises(UnsupportedAlgorithm):
        verify_at(token, TRUST, NOW, suites=only_ed25519)
    decoded = decode(token)
    assert check_signature_at(decoded, TRUST, NOW).kid == ES_RING.current.kid


def test_rotation_keeps_old_codes_valid_for_the_overlap() -> None:
    old = Keyring.generate_at(NOW - 3600, ED25519, deterministic_random(b"rot"))
    token = encode(_claims(), old.signing_key_at(NOW))
    ring = old.rotate_at(NOW + 1, ED25519, TTL_S + 300, deterministic_random(b"rot2"))
    trust = TrustList.from_keyring(ring)
    assert verify_at(token, trust, NOW + TTL_S) == _claims()
    fresh = encode(_claims(iat=NOW + 1, exp=NOW + 1 + TTL_S), ring.signing_key_at(NOW + 1))
    assert decode(fresh).kid == ring.current.kid != old.current.kid
    with pytest.raises(UnknownKeyId):
        verify_at(token, TrustList.from_keyring(ring.prune_at(NOW + 500)), NOW + 10)


class _ThirdSuite:
    """A stand-in for SM2: Ed25519 under another algorithm id, to show suites plug in."""

    cose_alg = -65000
    jose_alg = "TEST-SUITE"

    def generate(self, random_bytes: RandomSource) -> PrivateKey:
        inner = ED25519.generate(random_bytes)
        return PrivateKey(self, inner.secret, PublicKey(self, inner.public.data))

    def sign(self, key: PrivateKey, message: bytes) -> bytes:
        return ED25519.sign(ED25519.from_seed(key.secret.reveal()), message)

    def verify(self, key: PublicKey, signature: bytes, message: bytes) -> None:
        ED25519.verify(PublicKey(ED25519, key.data), signature, message)

    def verifier(self, key: PublicKey) -> Verifier:
        return partial(self.verify, key)

    def public_to_jwk(self, key: PublicKey) -> JWKMembers:
        return {**ED25519.public_to_jwk(PublicKey(ED25519, key.data)), "crv": "TEST"}

    def public_from_jwk(self, jwk: Mapping[str, object]) -> PublicKey:
        inner = ED25519.public_from_jwk({**jwk, "crv": "Ed25519"})
        return PublicKey(self, inner.data)

    def private_to_jwk(self, key: PrivateKey) -> JWKMembers:
        raise NotImplementedError

    def private_from_jwk(self, jwk: Mapping[str, object]) -> PrivateKey:
        raise NotImplementedError


def test_a_third_suite_plugs_in_without_touching_the_codec() -> None:
    third: SigningSuite = _ThirdSuite()
    suites = DEFAULT_SUITES.with_suite(third)
    ring = Keyring.generate_at(NOW - 10, third, deterministic_random(b"sm2"))
    jwks = TrustList.from_keyring(ring).to_jwks()
    trust = TrustList.from_jwks(jwks, suites)
    token = encode(_claims(), ring.current)
    assert decode(token).alg == -65000
    assert verify_at(token, trust, NOW, suites=suites) == _claims()
    with pytest.raises(UnsupportedAlgorithm):
        verify_at(token, trust, NOW)


@pytest.mark.parametrize(
    "text",
    ["", "CE1:", "CE1", "ce1:" + "0" * 30, "CE1:" + "0" * 1000, "CE1:%%%"],
    ids=["empty", "prefix-only", "short-prefix", "lowercase", "too-long", "base45-overflow"],
)
def test_malformed_text(text: str) -> None:
    with pytest.raises(MalformedCode) as caught:
        decode(text)
    assert caught.value.reason == Reason.MALFORMED


@pytest.mark.parametrize("value", [None, b"CE1:", 42])
def test_non_text_is_malformed_not_a_type_error(value: object) -> None:
    with pytest.raises(MalformedCode):
        decode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload_change",
    [
        {4: 2**64 - 1},
        {6: -1},
        {4: True},
        {-2: [1, 3201, 1, 2**32]},
        {-2: [1, 3201, 1]},
        {-2: (1, 3201, 1, 1.0)},
        {-3: 0},
    ],
    ids=["exp-max-iat-ok", "iat-negative", "exp-bool", "version", "status-3", "float", "extra"],
)
def test_claims_set_structure(payload_change: dict[int, object]) -> None:
    claims = dict(cbor2.loads(_payload(_claims())))
    claims.update(payload_change)
    key = ED_RING.current
    token = _signed(_header(-8, key.kid), cbor2.dumps(claims, canonical=True), key.private)
    if payload_change == {4: 2**64 - 1}:
        assert verify_at(token, TRUST, NOW).exp == 2**64 - 1
    else:
        with pytest.raises(MalformedCode):
            decode(token)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"exp": True}, "exp"),
        ({"iat": NOW + TTL_S + 1}, "iat"),
        ({"exp": 2**64}, "exp"),
        ({"cti": b"12345"}, "cti"),
        ({"cti": bytearray(6)}, "cti"),
        ({"subject": b"x" * 13}, "subject"),
        ({"kind": 1}, "kind"),
        ({"colour": 1}, "colour"),
        ({"city": 330100}, "city"),
        ({"city": 3201}, "city"),
        ({"version": 2**32}, "version"),
        ({"version": -1}, "version"),
    ],
)
def test_claims_refuse_values_the_wire_cannot_carry(
    change: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        _claims(**change)


def test_subject_pseudonym_text_form() -> None:
    claims = _claims()
    assert len(claims.subject_id) == 16
    assert subject_bytes(claims.subject_id) == claims.subject
    for bad in (claims.subject_id[:-1], claims.subject_id + "A", claims.subject_id + "=="):
        with pytest.raises(ValueError):
            subject_bytes(bad)


def test_verification_errors_carry_their_reason_codes() -> None:
    token = encode(_claims(), ED_RING.current)
    cases: list[tuple[str, int, Reason]] = [
        (token[:-3], NOW, Reason.MALFORMED),
        (token, NOW + 10**6, Reason.EXPIRED),
        (token, NOW - 10**3, Reason.NOT_YET_VALID),
    ]
    for text, now, reason in cases:
        with pytest.raises(VerificationError) as caught:
            verify_at(text, TRUST, now)
        assert caught.value.reason == reason


def test_decode_does_not_check_the_signature() -> None:
    token = encode(_claims(), ED_RING.current)
    cose = bytearray(b45decode(token[len(PREFIX) :]))
    cose[-1] ^= 1
    forged = cose_to_token(bytes(cose))
    assert decode(forged).claims == _claims()
    with pytest.raises(BadSignature):
        verify_at(forged, TRUST, NOW)


def test_encode_uses_the_key_it_is_given() -> None:
    key: SigningKey = ES_RING.current
    decoded = decode(encode(_claims(), key))
    assert (decoded.alg, decoded.kid) == (-7, key.kid)
    assert check_signature_at(decoded, TRUST, NOW) == key.trusted
