"""Known answers for the code format, made by tools/make_vectors.py without codeengine."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from codeengine.code.errors import Reason, VerificationError
from codeengine.code.keyring import SigningKey, key_id
from codeengine.code.model import CodeKind, Colour
from codeengine.code.sm2 import SM2
from codeengine.code.suites import ED25519, ES256, PrivateKey, b64url_decode, b64url_encode
from codeengine.code.token import Claims, decode, encode, verify_at
from codeengine.code.trustlist import TrustList
from tests.vectors_loader import Case, case_id, cases, generator, load, vectors_path

make_vectors = generator("make_vectors")

DOCUMENT = load("tokens")
TRUST = TrustList.from_jwks(DOCUMENT["trust_list"])
SKEW_S = DOCUMENT["skew_s"]


def _claims(case: Case) -> Claims:
    raw = case["claims"]
    return Claims(
        exp=raw["exp"],
        iat=raw["iat"],
        cti=bytes.fromhex(raw["cti"]),
        subject=b64url_decode(raw["subject"]),
        kind=CodeKind[raw["kind"].upper()],
        city=raw["city"],
        colour=Colour[raw["colour"].upper()],
        version=raw["version"],
    )


def _private_key(kid: str) -> PrivateKey:
    """Rebuild the generator's key with this id from its seed, through codeengine's suites."""
    for name, key in make_vectors.Vectors().keys.items():
        if b64url_encode(make_vectors.kid_of(key)) != kid:
            continue
        if isinstance(key, make_vectors.SM2Key):
            return SM2.from_scalar(key.scalar.to_bytes(32, "big"))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return ES256.from_scalar(key.private_numbers().private_value.to_bytes(32, "big"))
        return ED25519.from_seed(make_vectors.seed(name))
    raise AssertionError(f"no generator key has id {kid}")


def test_committed_file_is_what_the_generator_makes() -> None:
    regenerated = make_vectors.render(make_vectors.build())
    assert regenerated == vectors_path("tokens").read_text(encoding="ascii")


def test_every_reason_of_the_verifier_has_a_case() -> None:
    verification = {
        Reason.MALFORMED,
        Reason.UNSUPPORTED_ALG,
        Reason.UNKNOWN_KID,
        Reason.BAD_SIGNATURE,
        Reason.EXPIRED,
        Reason.NOT_YET_VALID,
    }
    expected = {case["expect"] for case in DOCUMENT["cases"]}
    assert expected == {"VALID"} | {reason.value for reason in verification}


@pytest.mark.parametrize("case", cases("tokens"), ids=case_id)
def test_case_gives_its_expected_result(case: Case) -> None:
    if case["expect"] == "VALID":
        assert verify_at(case["token"], TRUST, case["now"], SKEW_S) == _claims(case)
    else:
        with pytest.raises(VerificationError) as caught:
            verify_at(case["token"], TRUST, case["now"], SKEW_S)
        assert caught.value.reason == Reason(case["expect"]), case["why"]


@pytest.mark.parametrize("case", cases("tokens", lambda c: c["expect"] == "VALID"), ids=case_id)
def test_valid_case_bytes_and_key(case: Case) -> None:
    decoded = decode(case["token"])
    assert decoded.kid == b64url_decode(case["kid"])
    assert TRUST.key_at(decoded.kid, case["now"]).kid == decoded.kid
    private = _private_key(case["kid"])
    assert key_id(private.public) == decoded.kid
    if "tbs_hex" in case:
        assert decoded.to_be_signed.hex() == case["tbs_hex"]


@pytest.mark.parametrize(
    "case", cases("tokens", lambda c: c["expect"] == "VALID" and "tbs_hex" not in c), ids=case_id
)
def test_encoder_reproduces_the_deterministic_tokens(case: Case) -> None:
    key = SigningKey.of(_private_key(case["kid"]), 0, 2**62)
    assert encode(_claims(case), key) == case["token"]


@pytest.mark.parametrize(
    "case", cases("tokens", lambda c: c["expect"] == "VALID" and "tbs_hex" in c), ids=case_id
)
def test_encoder_signs_the_pinned_bytes_of_randomized_suites(case: Case) -> None:
    key = SigningKey.of(_private_key(case["kid"]), 0, 2**62)
    token = encode(_claims(case), key)
    assert decode(token).to_be_signed.hex() == case["tbs_hex"]
    assert verify_at(token, TRUST, case["now"], SKEW_S) == _claims(case)


def test_trust_list_reads_and_writes_back_the_same_document() -> None:
    assert TRUST.to_jwks() == DOCUMENT["trust_list"]
    assert len(TRUST) == len(DOCUMENT["trust_list"]["keys"])
