"""The terminal SDK: same reasons as online, a stale list refuses everything, clock injected."""

from __future__ import annotations

import json

import pytest

from codeengine.errors import KeyringError
from codeengine.keyring import Keyring
from codeengine.model import CodeKind, Colour
from codeengine.suites import ED25519, b64url_encode, deterministic_random
from codeengine.token import Claims, encode
from codeengine.trustlist import TrustList
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
