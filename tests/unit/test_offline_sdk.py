"""The terminal SDK: same reasons as online, a stale list refuses everything, clock injected."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.base45 import ALPHABET
from codeengine.code.errors import KeyringError, VerificationError
from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.suites import ED25519, ES256, b64url_encode, deterministic_random
from codeengine.code.token import (
    Claims,
    _bstr,
    _protected_header,
    check_signature_at,
    cose_to_token,
    decode_cose,
    encode,
    encode_cose,
    sig_structure,
)
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import (
    Revocations,
    Verdict,
    offline_verdict_at,
    precheck_at,
    refusal,
)
from tests.unit.test_token import _ThirdSuite
from verifier.offline import CachedList, OfflineVerifier

NOW = 1_800_000_000
RING = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"terminal"))
TRUST = TrustList.from_keyring(RING).to_json()


def code(iat: int = NOW, cti: bytes = b"\x01" * 6, colour: Colour = Colour.YELLOW) -> str:
    claims = Claims(NOW + 120, iat, cti, b"\x07" * 12, CodeKind.HEALTH, 320500, colour, 4)
    return encode(claims, RING.current)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(
    revocations: dict[str, list[str]] | None = None, fetched_at: int = NOW
) -> tuple[OfflineVerifier, Clock]:
    clock = Clock(NOW)
    rev = None if revocations is None else json.dumps(revocations)
    cached = CachedList.from_documents(TRUST, rev, fetched_at)
    return OfflineVerifier(cached, max_age_s=3600, clock=clock), clock


def test_valid_code_answers_the_signed_colour_as_of_issue() -> None:
    sdk, _ = verifier()
    verdict = sdk.verify(code() + "\r\n")
    assert verdict.to_json() == {
        "valid": True,
        "reason": "VALID",
        "colour": "yellow",
        "kind": "health",
        "city": 320500,
        "checked_at": NOW,
        "as_of": NOW,
        "degraded": False,
    }


def test_stale_list_refuses_until_updated() -> None:
    sdk, clock = verifier()
    clock.now = NOW + 3601
    assert sdk.verify(code()).reason == "TRUST_LIST_STALE" and sdk.stale
    sdk.update(CachedList.from_documents(TRUST, None, NOW + 3600))
    assert sdk.verify(code()).reason == "EXPIRED", "fresh lists, and a code long expired"
    assert not sdk.stale


@pytest.mark.parametrize(
    ("revocations", "reason"),
    [
        ({"codes": ["010101010101"], "keys": []}, "REVOKED"),
        ({"codes": [], "keys": [b64url_encode(RING.current.kid)]}, "REVOKED"),
        ({"codes": ["020202020202"], "keys": []}, "VALID"),
    ],
    ids=["code", "key", "other-code"],
)
def test_revocations(revocations: dict[str, list[str]], reason: str) -> None:
    sdk, _ = verifier(revocations)
    assert sdk.verify(code()).reason == reason


def test_time_window_and_tampering_use_the_injected_clock() -> None:
    sdk, clock = verifier()
    clock.now = NOW + 120 + 31
    assert sdk.verify(code()).reason == "EXPIRED"
    clock.now = NOW - 31
    assert sdk.verify(code()).reason == "NOT_YET_VALID"
    clock.now = NOW
    text = code()
    altered = text[:-3] + ("0" if text[-3] != "0" else "1") + text[-2:]
    assert sdk.verify(altered).reason in {"BAD_SIGNATURE", "MALFORMED"}
    assert sdk.verify("").reason == "MALFORMED"


def test_bad_revocation_lists_are_refused() -> None:
    for document in ("[]", '{"codes": "x"}', '{"codes": ["zz"]}'):
        with pytest.raises(KeyringError):
            CachedList.from_documents(TRUST, document, NOW)


# The offline verdict is written out in one function for speed; it must give exactly the verdict
# of the checks the online verifier shares (precheck_at, then check_signature_at).
ED_KEY = Keyring.generate_at(NOW - 900, ED25519, deterministic_random(b"eq-ed"), lifetime_s=1800)
ES_KEY = Keyring.generate_at(NOW - 300, ES256, deterministic_random(b"eq-es"), lifetime_s=600)
# A key of a suite the default registry does not accept: its codes are UNSUPPORTED_ALG.
THIRD_KEY = Keyring.generate_at(NOW - 900, _ThirdSuite(), deterministic_random(b"eq-3"))
EQ_TRUST = TrustList.of([ED_KEY.current.trusted, ES_KEY.current.trusted, THIRD_KEY.current.trusted])
SIGNERS = {"Ed25519": ED_KEY.current, "ES256": ES_KEY.current, "third": THIRD_KEY.current}
ALTERATIONS = ["none", "text", "cose-byte", "alg-swapped", "alg-unsupported", "kid-unknown"]


def _reference_verdict(text: str, revocations: Revocations, now: int, skew_s: int) -> Verdict:
    checked = precheck_at(text, EQ_TRUST, revocations, now, skew_s)
    if isinstance(checked, Verdict):
        return checked
    claims = checked.claims
    try:
        check_signature_at(checked, EQ_TRUST, now)
    except VerificationError as exc:
        return refusal(exc, now, claims)
    return Verdict(True, "VALID", now, claims.colour, claims.kind, claims.city, claims.iat,
                   False, claims.subject)  # fmt: skip


def _altered(claims: Claims, signer: str, alteration: str, where: int, value: int) -> str:
    key = SIGNERS[signer]
    cose = encode_cose(claims, key)
    if alteration == "text":
        text = cose_to_token(cose)
        position = where % len(text)
        replacement = ALPHABET[value % len(ALPHABET)]
        return text[:position] + replacement + text[position + 1 :]
    if alteration == "cose-byte":
        position = where % len(cose)
        cose = cose[:position] + bytes((value,)) + cose[position + 1 :]
    elif alteration != "none":
        alg = {"alg-swapped": -15 - key.alg, "alg-unsupported": -35}.get(alteration, key.alg)
        kid = bytes(8) if alteration == "kid-unknown" else key.kid
        decoded = decode_cose(cose)
        protected = _protected_header(alg, kid)
        cose = b"".join(
            (b"\xd2\x84", _bstr(protected), b"\xa0", _bstr(decoded.payload),
             _bstr(key.private.sign(sig_structure(protected, decoded.payload))))
        )  # fmt: skip
    return cose_to_token(cose)


@settings(max_examples=400, deadline=None, database=None)
@given(
    offsets=st.tuples(st.integers(-700, 700), st.integers(0, 300)),
    now_offset=st.integers(-1000, 1000),
    skew_s=st.integers(0, 60),
    signer=st.sampled_from(sorted(SIGNERS)),
    alteration=st.sampled_from(ALTERATIONS),
    where=st.integers(0),
    value=st.integers(0, 255),
    revoke=st.sampled_from(["nothing", "code", "key", "other"]),
)
def test_offline_verdict_is_the_shared_checks_verdict(
    offsets: tuple[int, int],
    now_offset: int,
    skew_s: int,
    signer: str,
    alteration: str,
    where: int,
    value: int,
    revoke: str,
) -> None:
    iat = NOW + offsets[0]
    claims = Claims(iat + offsets[1], iat, b"\x05" * 6, b"\x07" * 12, CodeKind.FUSED, 321300,
                    Colour.RED, 9)  # fmt: skip
    text = _altered(claims, signer, alteration, where, value)
    revocations = {
        "nothing": Revocations(),
        "code": Revocations(codes=frozenset({claims.cti})),
        "key": Revocations(keys=frozenset({SIGNERS[signer].kid})),
        "other": Revocations(frozenset({b"\x06" * 6}), frozenset({bytes(8)})),
    }[revoke]
    now = NOW + now_offset
    assert offline_verdict_at(text, EQ_TRUST, revocations, now, skew_s) == _reference_verdict(
        text, revocations, now, skew_s
    )


def test_the_equivalence_test_reaches_every_reason() -> None:
    """The cases above are not all refused alike: each reason is reached, and acceptance."""
    reasons = set()
    for alteration in ALTERATIONS:
        for now_offset in (-400, 0, 200, 700):
            for revoke in (Revocations(), Revocations(codes=frozenset({b"\x05" * 6}))):
                claims = Claims(NOW + 120, NOW, b"\x05" * 6, b"\x07" * 12, CodeKind.FUSED,
                                321300, Colour.RED, 9)  # fmt: skip
                for signer in SIGNERS:
                    text = _altered(claims, signer, alteration, 150, 7)
                    verdict = offline_verdict_at(text, EQ_TRUST, revoke, NOW + now_offset, 30)
                    reasons.add(verdict.reason)
    assert reasons == {"VALID", "MALFORMED", "UNSUPPORTED_ALG", "UNKNOWN_KID", "BAD_SIGNATURE",
                       "EXPIRED", "NOT_YET_VALID", "REVOKED"}  # fmt: skip
