"""Signing suites: known answers from the RFCs, libsodium against OpenSSL, JWK members."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import BadSignature, KeyringError
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import (
    DEFAULT_SUITE,
    ED25519,
    ES256,
    PrivateKey,
    SigningSuite,
    SuiteRegistry,
    _der_signature,
    b64url_decode,
    b64url_encode,
    deterministic_random,
    low_s,
)

# The order n of the P-256 group (SEC 2), written out here rather than taken from the code.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# RFC 8037 appendix A.1 (key), A.4 (JWS signature of "Example of Ed25519 signing").
RFC8037_JWK = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_SIGNING_INPUT = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = (
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)
# RFC 7515 appendix A.3: ES256 key and the signature of its example JWS (raw r||s, as in COSE).
RFC7515_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",
}
RFC7515_SIGNING_INPUT = (
    b"eyJhbGciOiJFUzI1NiJ9"
    b".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    b"cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
)
RFC7515_SIGNATURE = (
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)

SUITES = [ED25519, ES256]
SUITE_IDS = ["Ed25519", "ES256"]


def _key(suite: SigningSuite, seed: bytes = b"test") -> PrivateKey:
    return suite.generate(deterministic_random(seed))


def test_ed25519_rfc8037_known_answer() -> None:
    key = ED25519.private_from_jwk(RFC8037_JWK)
    assert ED25519.public_to_jwk(key.public)["x"] == RFC8037_JWK["x"]
    signature = key.sign(RFC8037_SIGNING_INPUT)
    assert b64url_encode(signature) == RFC8037_SIGNATURE
    key.public.verify(signature, RFC8037_SIGNING_INPUT)


def test_es256_rfc7515_known_answer() -> None:
    key = ES256.private_from_jwk(RFC7515_JWK)
    assert ES256.private_to_jwk(key) == {
        "crv": "P-256",
        "kty": "EC",
        "x": RFC7515_JWK["x"],
        "y": RFC7515_JWK["y"],
        "d": RFC7515_JWK["d"],
    }
    # The RFC's signature has the high s of its pair: refused here (low-S), while its twin
    # (r, n - s), the same signature spelt the one way this engine accepts, verifies.
    signature = b64url_decode(RFC7515_SIGNATURE)
    with pytest.raises(BadSignature, match="low-S"):
        key.public.verify(signature, RFC7515_SIGNING_INPUT)
    twin = _twin(signature)
    key.public.verify(twin, RFC7515_SIGNING_INPUT)
    with pytest.raises(BadSignature):
        key.public.verify(twin, RFC7515_SIGNING_INPUT + b".")


def _twin(signature: bytes) -> bytes:
    """The other spelling (r, n - s) of an ES256 signature."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (P256_ORDER - s).to_bytes(32, "big")


def test_es256_signs_low_s_and_refuses_the_high_twin() -> None:
    key = _key(ES256)
    verify = ES256.verifier(key.public)
    for attempt in range(200):
        message = attempt.to_bytes(2, "big")
        signature = key.sign(message)
        assert int.from_bytes(signature[32:], "big") <= P256_ORDER // 2
        verify(signature, message)
        with pytest.raises(BadSignature, match="low-S"):
            verify(_twin(signature), message)


def test_low_s_picks_the_lower_of_the_pair() -> None:
    half = P256_ORDER // 2
    assert low_s(half) == half
    assert low_s(half + 1) == P256_ORDER - half - 1 == half
    assert low_s(1) == 1
    assert low_s(P256_ORDER - 1) == 1


@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=200))
def test_libsodium_and_openssl_ed25519_agree(seed: bytes, message: bytes) -> None:
    ours = ED25519.from_seed(seed)
    theirs = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    signature = ours.sign(message)
    assert signature == theirs.sign(message)
    theirs.public_key().verify(signature, message)
    ours.public.verify(theirs.sign(message), message)


def test_es256_signature_is_raw_and_openssl_verifies_it() -> None:
    key = _key(ES256)
    signature = key.sign(b"message")
    assert len(signature) == 64
    scalar = int.from_bytes(key.secret.reveal(), "big")
    public = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, b"message", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(der, b"massage", ec.ECDSA(hashes.SHA256()))


# Integers whose 32-byte form starts with a zero byte, with its top bit set, or neither.
_COORDINATES = (
    st.integers(0, 2**256 - 1)
    | st.integers(0, 2**248 - 1)
    | st.integers(0, 2**240)
    | st.sampled_from([0, 1, 2**248 - 1, 2**248, 2**255 - 1, 2**255, 2**256 - 1])
)


@settings(max_examples=400, deadline=None, database=None)
@given(r=_COORDINATES, s=_COORDINATES)
def test_es256_der_of_a_raw_signature_is_the_librarys(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert _der_signature(raw) == encode_dss_signature(r, s)


def test_es256_signatures_with_a_short_integer_verify() -> None:
    """About 1 in 128 signatures has an r or s below 2**248: its DER integer is shorter."""
    key = _key(ES256)
    verify = ES256.verifier(key.public)
    for attempt in range(10_000):
        message = attempt.to_bytes(4, "big")
        signature = key.sign(message)
        if signature[0] == 0 or signature[32] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero byte in 10,000")
    verify(signature, message)
    key.public.verify(signature, message)
    with pytest.raises(BadSignature):
        verify(signature, message + b".")


@pytest.mark.parametrize("prepared", [False, True], ids=["verify", "verifier"])
@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_bad_signatures_raise(suite: SigningSuite, prepared: bool) -> None:
    key = _key(suite)
    verify = suite.verifier(key.public) if prepared else key.public.verify
    signature = key.sign(b"message")
    verify(signature, b"message")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    for bad, message in [
        (flipped, b"message"),
        (signature, b"messagE"),
        (signature[:-1], b"message"),
        (signature + b"\x00", b"message"),
        (b"", b"message"),
        (bytes(64), b"message"),
    ]:
        with pytest.raises(BadSignature):
            verify(bad, message)
    other = _key(suite, b"other").public
    with pytest.raises(BadSignature):
        (suite.verifier(other) if prepared else other.verify)(signature, b"message")


def test_ed25519_short_signature_cannot_borrow_message_bytes() -> None:
    # libsodium verifies signature||message as one buffer; a 63-byte signature followed by a
    # message starting with the real last byte would re-form a valid pair if lengths went unchecked.
    key = _key(ED25519)
    signature = key.sign(b"message")
    with pytest.raises(BadSignature):
        key.public.verify(signature[:63], signature[63:] + b"message")


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_generation_is_deterministic_for_a_seeded_source(suite: SigningSuite) -> None:
    assert _key(suite, b"a") == _key(suite, b"a")
    assert _key(suite, b"a").public != _key(suite, b"b").public


def test_es256_generation_rejects_scalars_outside_the_group() -> None:
    candidates = [b"\xff" * 32, bytes(32), (7).to_bytes(32, "big")]
    key = ES256.generate(lambda n: candidates.pop(0))
    assert key.secret.reveal() == (7).to_bytes(32, "big")
    assert candidates == []


def test_deterministic_random_is_one_stream() -> None:
    whole = deterministic_random(b"s")(100)
    pieces = deterministic_random(b"s")
    assert pieces(30) + pieces(70) == whole
    assert deterministic_random(b"t")(100) != whole


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_jwk_round_trips(suite: SigningSuite) -> None:
    key = _key(suite)
    assert suite.public_from_jwk(suite.public_to_jwk(key.public)) == key.public
    assert suite.private_from_jwk(suite.private_to_jwk(key)) == key
    assert set(suite.private_to_jwk(key)) - set(suite.public_to_jwk(key.public)) == {"d"}


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_private_jwk_with_another_keys_d_is_refused(suite: SigningSuite) -> None:
    jwk = suite.private_to_jwk(_key(suite)) | {"d": suite.private_to_jwk(_key(suite, b"x"))["d"]}
    with pytest.raises(KeyringError, match="'d'"):
        suite.private_from_jwk(jwk)


@pytest.mark.parametrize(
    ("suite", "change", "problem"),
    [
        (ED25519, {"kty": "EC"}, "'kty'"),
        (ED25519, {"crv": "X25519"}, "'crv'"),
        (ED25519, {"x": RFC8037_JWK["x"][:-1]}, "'x'"),
        (ED25519, {"x": RFC8037_JWK["x"] + "="}, "'x'"),
        (ED25519, {"x": 5}, "'x'"),
        (ES256, {"crv": "P-384"}, "'crv'"),
        (ES256, {"y": None}, "'y'"),
        (ES256, {"y": RFC7515_JWK["x"]}, "not a point"),
        (ES256, {"x": b64url_encode(bytes(33))}, "'x'"),
    ],
)
def test_bad_public_jwk_members_are_refused(
    suite: SigningSuite, change: dict[str, object], problem: str
) -> None:
    jwk: dict[str, object] = {
        **(RFC8037_JWK if suite is ED25519 else RFC7515_JWK),
        **change,
    }
    with pytest.raises(KeyringError, match=problem):
        suite.public_from_jwk(jwk)


@pytest.mark.parametrize("text", ["AA==", "AB", "A", "A+8", "A/8", "AA AA", "ÀA", "AAA\n"])
def test_b64url_decode_refuses_every_other_spelling(text: str) -> None:
    with pytest.raises(ValueError):
        b64url_decode(text)


@given(st.binary(max_size=64))
@settings(max_examples=50, deadline=None, database=None)
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data


def test_private_key_repr_hides_the_secret() -> None:
    key = _key(ED25519)
    secret = key.secret.reveal()
    for text in (repr(key), str(key)):
        assert secret.hex() not in text
        assert b64url_encode(secret) not in text
        assert repr(secret) not in text


def test_registry_finds_suites_by_both_names() -> None:
    assert DEFAULT_SUITE is ED25519
    assert DEFAULT_SUITES.by_cose_alg(-8) is ED25519
    assert DEFAULT_SUITES.by_cose_alg(-7) is ES256
    assert DEFAULT_SUITES.by_jose_alg("EdDSA") is ED25519
    assert DEFAULT_SUITES.by_jose_alg("ES256") is ES256
    assert DEFAULT_SUITES.by_cose_alg(-35) is None
    assert DEFAULT_SUITES.by_jose_alg("none") is None
    assert list(SuiteRegistry([ED25519])) == [ED25519]


def test_registry_refuses_a_second_suite_with_the_same_id() -> None:
    with pytest.raises(KeyringError):
        DEFAULT_SUITES.with_suite(ED25519)
    with pytest.raises(KeyringError):
        SuiteRegistry([ES256, ES256])


def test_ed25519_refuses_the_non_canonical_spelling_of_a_signature() -> None:
    """S + l satisfies the equation too; RFC 8032 5.1.7 refuses S >= l, so codes stay unique."""
    ell = 2**252 + 27742317777372353535851937790883648493
    key = _key(ED25519)
    signature = key.sign(b"message")
    s = int.from_bytes(signature[32:], "little")
    twin = signature[:32] + (s + ell).to_bytes(32, "little")
    key.public.verify(signature, b"message")
    with pytest.raises(BadSignature):
        key.public.verify(twin, b"message")
