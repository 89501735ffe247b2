"""How the verifier judges a scan a terminal checked offline: its time bounds, its verdict at
that time, how long its id is remembered (known-answer codes of tests/vectors/tokens.json)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codeengine.code.errors import Reason
from codeengine.code.offlinescans import OfflineScan, OfflineScanPolicy, judge_at, remember_for_s
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations, Verdict
from tests.vectors_loader import load

VECTORS: dict[str, Any] = load("tokens")
TRUST = TrustList.from_json(json.dumps(VECTORS["trust_list"]))
POLICY = OfflineScanPolicy(max_age_s=3 * 86_400, future_s=300, skew_s=VECTORS["skew_s"])
VALID = next(c for c in VECTORS["cases"] if c["id"] == "valid-ed25519-health-green")
IAT = 1_800_000_000


def scan_at(at_s: int, code: str = VALID["token"], city: int = 320100) -> OfflineScan:
    return OfflineScan("AAAAAAAAAAAAAAAAAAAAAA", code, "gate-1", city, at_s * 1000)


def test_a_valid_code_is_judged_at_the_scan_time_not_the_verifiers() -> None:
    # Sent two days later, when the code is long expired: it was valid when scanned.
    verdict = judge_at(scan_at(IAT + 5), TRUST, Revocations(), IAT + 2 * 86_400, POLICY)
    assert isinstance(verdict, Verdict)
    assert (verdict.valid, verdict.reason, verdict.checked_at) == (True, "VALID", IAT + 5)
    late = judge_at(scan_at(IAT + 200), TRUST, Revocations(), IAT + 201, POLICY)
    assert isinstance(late, Verdict) and late.reason == "EXPIRED"


def test_the_verifiers_revocations_apply_to_an_earlier_scan() -> None:
    revoked = Revocations(codes=frozenset({bytes.fromhex(VALID["claims"]["cti"])}))
    verdict = judge_at(scan_at(IAT + 5), TRUST, revoked, IAT + 60, POLICY)
    assert isinstance(verdict, Verdict) and verdict.reason == "REVOKED"


@pytest.mark.parametrize(
    ("at_s", "now", "reason"),
    [
        (IAT, IAT + 3 * 86_400 + 1, Reason.SCAN_TOO_OLD),
        (IAT + 301, IAT, Reason.SCAN_IN_FUTURE),
    ],
    ids=["too-old", "in-future"],
)
def test_a_time_out_of_bounds_is_refused_before_any_check(
    at_s: int, now: int, reason: Reason
) -> None:
    assert judge_at(scan_at(at_s, code="not a code"), TRUST, Revocations(), now, POLICY) is reason


def test_the_bounds_themselves_are_believed() -> None:
    for at_s, now in ((IAT, IAT + 3 * 86_400), (IAT + 300, IAT)):
        assert isinstance(judge_at(scan_at(at_s), TRUST, Revocations(), now, POLICY), Verdict)


def test_a_code_of_another_city_is_wrong_only_without_the_cross_city_policy() -> None:
    strict = OfflineScanPolicy(POLICY.max_age_s, POLICY.future_s, POLICY.skew_s, cross_city=False)
    verdict = judge_at(scan_at(IAT + 5, city=320200), TRUST, Revocations(), IAT + 5, strict)
    assert isinstance(verdict, Verdict) and (verdict.valid, verdict.reason) == (False, "WRONG_CITY")
    same = judge_at(scan_at(IAT + 5, city=320200), TRUST, Revocations(), IAT + 5, POLICY)
    assert isinstance(same, Verdict) and same.valid


def test_an_id_is_remembered_until_its_scan_would_be_too_old_to_any_verifier() -> None:
    # The margin: a verifier whose clock lags this one's by the bounds still refuses it as old.
    margin = POLICY.future_s + POLICY.skew_s
    assert remember_for_s(scan_at(IAT), IAT + 100, POLICY) == 3 * 86_400 - 99 + margin
    assert remember_for_s(scan_at(IAT), IAT + 10 * 86_400, POLICY) == 1


def test_a_scan_id_is_random_base64url_of_12_to_32_bytes() -> None:
    assert OfflineScan.valid_id("A" * 16) and OfflineScan.valid_id("_-" * 21 + "a")
    assert not OfflineScan.valid_id("A" * 15)
    assert not OfflineScan.valid_id("A" * 44)
    assert not OfflineScan.valid_id("A" * 15 + "{")
    # A pattern's $ matches before a final newline: the whole id must be the pattern's.
    assert not OfflineScan.valid_id("A" * 16 + "\n")


@pytest.mark.parametrize(
    "text",
    [
        "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH",
        "shc:/5676290952432060346029243740446031222959532654603460292540772804336028702864",
        "SSC:320102198001011234",
        "CE1:" + "A" * 600,
        "CE1:not base45 at all",
        "",
    ],
    ids=["eu-dcc", "smart-health-card", "alias-card", "too-long", "undecodable", "empty"],
)
def test_a_text_that_is_not_the_engines_code_is_refused_whole_not_judged(text: str) -> None:
    # MALFORMED as a reason, not a verdict: such a scan is neither claimed nor logged.
    assert judge_at(scan_at(IAT + 5, code=text), TRUST, Revocations(), IAT + 5, POLICY) is (
        Reason.MALFORMED
    )


def test_an_engine_code_with_a_bad_signature_is_still_a_verdict_to_log() -> None:
    altered = VALID["token"][:-2] + ("A" if VALID["token"][-2] != "A" else "B") + VALID["token"][-1]
    verdict = judge_at(scan_at(IAT + 5, code=altered), TRUST, Revocations(), IAT + 5, POLICY)
    assert isinstance(verdict, Verdict) and not verdict.valid
