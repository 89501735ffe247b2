"""The SM2 suite: GB/T 32918.5 Annex A, two other implementations, and what it refuses."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import gmalg
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import BadSignature, KeyringError
from codeengine.code.keyring import (
    Keyring,
    key_id,
    parse_private_jwk,
    parse_public_jwk,
    private_jwk,
    public_jwk,
)
from codeengine.code.registry import DEFAULT_SUITE, DEFAULT_SUITES
from codeengine.code.secret import Secret
from codeengine.code.sm2 import (
    CURVE_N,
    SM2,
    GmSSLBackend,
    SM2Suite,
    digest_e,
    on_curve,
    z_a,
)
from codeengine.code.suites import ED25519, PublicKey, b64url_encode, deterministic_random
from tests.vectors_loader import cases

(ANNEX_A,) = cases("national", lambda c: c["kind"] == "sm2")
D = bytes.fromhex(ANNEX_A["d"])
PUBLIC = bytes.fromhex(ANNEX_A["x"] + ANNEX_A["y"])
MESSAGE = ANNEX_A["message"].encode()
SIGNATURE = bytes.fromhex(ANNEX_A["r"] + ANNEX_A["s"])
# SubjectPublicKeyInfo up to the point: id-ecPublicKey with the SM2 curve (1.2.156.10197.1.301).
_SPKI_HEAD = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")


def openssl_verifies(public: bytes, message: bytes, signature: bytes, tmp_path: Path) -> bool:
    """The openssl command line's SM2 verify with the ID set (its default ID differs)."""
    pem = base64.encodebytes(_SPKI_HEAD + public).decode()
    pem_text = f"-----BEGIN PUBLIC KEY-----\n{pem}-----END PUBLIC KEY-----\n"
    (tmp_path / "key.pem").write_text(pem_text)
    (tmp_path / "message").write_bytes(message)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    (tmp_path / "signature").write_bytes(encode_dss_signature(r, s))
    answer = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin",
         "-in", "message", "-sigfile", "signature", "-digest", "sm3",
         "-pkeyopt", f"distid:{ANNEX_A['signer_id']}"],
        cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    return answer.returncode == 0


def test_public_key_of_the_annex_a_scalar() -> None:
    assert SM2.from_scalar(D).public.data == PUBLIC
    assert gmalg.SM2().generate_pk(D)[1:] == PUBLIC


def test_z_a_and_e_are_the_annex_a_values() -> None:
    za = z_a(PUBLIC, ANNEX_A["signer_id"].encode())
    assert za.hex() == ANNEX_A["z_a"]
    assert z_a(PUBLIC) == za  # the suite's default ID is the standard's
    assert digest_e(za, MESSAGE).hex() == ANNEX_A["e"]


def test_annex_a_signature_with_its_nonce_from_the_gmalg_oracle() -> None:
    k = int(ANNEX_A["k"], 16)
    signer = gmalg.SM2(D, ANNEX_A["signer_id"].encode(), b"\x04" + PUBLIC, rnd_fn=lambda _: k)
    r, s = signer.sign(MESSAGE)
    assert (r + s).hex() == ANNEX_A["r"] + ANNEX_A["s"]


def test_the_suite_verifies_the_annex_a_signature() -> None:
    key = PublicKey(SM2, PUBLIC)
    SM2.verify(key, SIGNATURE, MESSAGE)
    SM2.verifier(key)(SIGNATURE, MESSAGE)
    with pytest.raises(BadSignature):
        SM2.verify(key, SIGNATURE, b"message digesT")


def test_openssl_verifies_the_annex_a_signature_only_with_the_id(tmp_path: Path) -> None:
    assert openssl_verifies(PUBLIC, MESSAGE, SIGNATURE, tmp_path)
    assert not openssl_verifies(PUBLIC, b"message digesT", SIGNATURE, tmp_path)


@settings(max_examples=10, deadline=None)
@given(message=st.binary(max_size=200), seed=st.binary(min_size=1, max_size=8))
def test_signatures_verify_in_gmalg_and_gmalg_signatures_verify_here(
    message: bytes, seed: bytes
) -> None:
    key = SM2.generate(deterministic_random(seed))
    signature = key.sign(message)
    other = gmalg.SM2(uid=b"1234567812345678", pk=b"\x04" + key.public.data)
    assert other.verify(message, signature[:32], signature[32:])
    signer = gmalg.SM2(key.secret.reveal(), b"1234567812345678", b"\x04" + key.public.data)
    r, s = signer.sign(message)
    key.public.verify(r.rjust(32, b"\x00") + s.rjust(32, b"\x00"), message)


def test_openssl_verifies_a_signature_of_the_suite(tmp_path: Path) -> None:
    key = SM2.generate(deterministic_random(b"openssl"))
    message = b"a COSE Sig_structure"
    assert openssl_verifies(key.public.data, message, key.sign(message), tmp_path)


def test_signatures_are_randomized_and_each_verifies() -> None:
    key = SM2.from_scalar(D)
    first, second = key.sign(MESSAGE), key.sign(MESSAGE)
    assert first != second
    for signature in (first, second):
        key.public.verify(signature, MESSAGE)


def test_no_ecdsa_twin_r_n_minus_s() -> None:
    # (r, n - s) verifies for ECDSA; for SM2 it changes t = r + s, so it must fail.
    s = int(ANNEX_A["s"], 16)
    twin = SIGNATURE[:32] + (CURVE_N - s).to_bytes(32, "big")
    with pytest.raises(BadSignature):
        PublicKey(SM2, PUBLIC).verify(twin, MESSAGE)
    assert not gmalg.SM2(uid=b"1234567812345678", pk=b"\x04" + PUBLIC).verify(
        MESSAGE, twin[:32], twin[32:]
    )


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (SIGNATURE[:63], "63 bytes"),
        (SIGNATURE + b"\x00", "65 bytes"),
        (bytes(32) + SIGNATURE[32:], "r = 0"),
        (SIGNATURE[:32] + bytes(32), "s = 0"),
        (CURVE_N.to_bytes(32, "big") + SIGNATURE[32:], "r = n"),
        (SIGNATURE[:32] + CURVE_N.to_bytes(32, "big"), "s = n"),
        (b"\xff" * 64, "r, s above n"),
        (
            SIGNATURE[:32] + (CURVE_N - int(ANNEX_A["r"], 16)).to_bytes(32, "big"),
            "r + s = n",
        ),
        (encode_dss_signature(int(ANNEX_A["r"], 16), int(ANNEX_A["s"], 16)), "DER"),
    ],
)
def test_refuses_signatures_out_of_form(signature: bytes, why: str) -> None:
    with pytest.raises(BadSignature):
        PublicKey(SM2, PUBLIC).verify(signature, MESSAGE)


def test_private_scalar_range() -> None:
    for bad in (bytes(32), (CURVE_N - 1).to_bytes(32, "big"), CURVE_N.to_bytes(32, "big")):
        with pytest.raises(KeyringError, match=r"\[1, n-2\]"):
            SM2.from_scalar(bad)
    with pytest.raises(KeyringError, match="32 bytes"):
        SM2.from_scalar(D[:31])
    assert SM2.from_scalar((CURVE_N - 2).to_bytes(32, "big")).public.data != PUBLIC


def test_generate_is_reproducible_for_a_seeded_source_and_masks_the_secret() -> None:
    first = SM2.generate(deterministic_random(b"one"))
    assert SM2.generate(deterministic_random(b"one")) == first
    assert SM2.generate(deterministic_random(b"two")).public != first.public
    assert first.secret.reveal().hex() not in repr(first)
    assert on_curve(first.public.data)


class _CountingBackend(GmSSLBackend):
    """GmSSL, counting the digests it signs: the suite must hand it e, never the message."""

    __slots__ = ("digests",)

    def __init__(self) -> None:
        self.digests: list[bytes] = []

    def sign_digest(self, secret: Secret, digest: bytes) -> tuple[int, int]:
        self.digests.append(digest)
        return super().sign_digest(secret, digest)


def test_the_suite_signs_e_through_its_backend() -> None:
    backend = _CountingBackend()
    suite = SM2Suite(backend)
    key = suite.from_scalar(D)
    backend.digests.clear()
    key.sign(MESSAGE)
    assert backend.digests == [bytes.fromhex(ANNEX_A["e"])]


def test_jwk_form_and_round_trip() -> None:
    key = SM2.from_scalar(D)
    members = SM2.public_to_jwk(key.public)
    assert members == {
        "crv": "SM2",
        "kty": "EC",
        "x": b64url_encode(PUBLIC[:32]),
        "y": b64url_encode(PUBLIC[32:]),
    }
    assert SM2.public_from_jwk(members) == key.public
    assert SM2.private_from_jwk(SM2.private_to_jwk(key)) == key
    signing = Keyring.generate_at(100, SM2, deterministic_random(b"jwk")).current
    assert parse_private_jwk(private_jwk(signing)) == signing
    trusted = parse_public_jwk(public_jwk(signing.trusted))
    assert trusted.public == signing.private.public
    assert public_jwk(signing.trusted)["alg"] == "SM2SM3"
    assert trusted.kid == key_id(signing.private.public)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crv": "P-256"}, "'crv' must be 'SM2'"),
        ({"kty": "OKP"}, "'kty' must be 'EC'"),
        ({"y": b64url_encode(bytes(32))}, "not a point on the SM2 curve"),
        ({"x": b64url_encode(PUBLIC[:31])}, "32 bytes"),
        ({"x": "not base64url!"}, "base64url"),
        ({"y": 7}, "must be a string"),
    ],
)
def test_jwk_refusals(change: dict[str, object], message: str) -> None:
    members: dict[str, object] = {**SM2.public_to_jwk(PublicKey(SM2, PUBLIC)), **change}
    with pytest.raises(KeyringError, match=message):
        SM2.public_from_jwk(members)


def test_private_jwk_whose_d_is_another_key() -> None:
    members = {**SM2.public_to_jwk(PublicKey(SM2, PUBLIC)), "d": b64url_encode(b"\x01" * 32)}
    with pytest.raises(KeyringError, match="does not belong"):
        SM2.private_from_jwk(members)


def test_every_party_accepts_sm2_while_ed25519_stays_the_signing_default() -> None:
    assert DEFAULT_SUITES.by_cose_alg(-65537) is SM2
    assert DEFAULT_SUITES.by_jose_alg("SM2SM3") is SM2
    assert DEFAULT_SUITES.by_cose_alg(-48) is None  # the expired draft's label, now ML-DSA-44
    assert DEFAULT_SUITE is ED25519
