"""The typed answers read from the documented JSON, and refuse what is not."""

from __future__ import annotations

import pytest

from codeengine.code.model import CityCode, CodeKind, Colour
from failover.errors import CodeRefused, Expired, RecordTampered, UnexpectedAnswer
from failover.results import Converted, DisplayedCode, Licence, Scan, Subject, Verdict


def test_a_gate_sees_valid_reason_and_colour_only_and_the_rest_is_none() -> None:
    verdict = Verdict.from_json({"valid": True, "reason": "VALID", "colour": "green"})
    assert verdict == Verdict(True, "VALID", Colour.GREEN)
    assert (verdict.kind, verdict.city, verdict.as_of) == (None, None, None)
    assert not verdict.degraded


def test_a_full_verdict_with_licences() -> None:
    verdict = Verdict.from_json(
        {
            "valid": True,
            "reason": "VALID",
            "colour": "red",
            "kind": "fused",
            "city": 320100,
            "checked_at": 10,
            "as_of": 9,
            "degraded": True,
            "licences": [{"type": "driving", "masked": "32****01"}],
        }
    )
    assert (verdict.colour, verdict.kind, verdict.city) == (Colour.RED, CodeKind.FUSED, 320100)
    assert (verdict.checked_at, verdict.as_of, verdict.degraded) == (10, 9, True)
    assert verdict.licences == (Licence("driving", "32****01"),)


def test_check_raises_the_class_of_a_refused_verdict_reason() -> None:
    with pytest.raises(Expired) as expired:
        Verdict(False, "EXPIRED").check()
    assert isinstance(expired.value, CodeRefused) and expired.value.status == 200
    with pytest.raises(RecordTampered) as tampered:
        Verdict(False, "RECORD_TAMPERED", Colour.GREY).check()
    assert tampered.value.extra == {"colour": "grey"}


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"valid": "yes", "reason": "VALID"},
        {"valid": True},
        {"valid": True, "reason": "VALID", "colour": "purple"},
        {"valid": True, "reason": "VALID", "city": True},
        {"valid": True, "reason": "VALID", "licences": ["x"]},
    ],
    ids=["not-an-object", "valid-not-bool", "no-reason", "unknown-colour", "city-bool", "licence"],
)
def test_a_verdict_of_another_shape_is_an_unexpected_answer(document: object) -> None:
    with pytest.raises(UnexpectedAnswer):
        Verdict.from_json(document)


def test_the_issuer_answers_read_as_values() -> None:
    subject = Subject.from_json(
        {"subject": "A" * 16, "kind": "health", "city": 320100, "colour": "grey", "version": 1,
         "created": True}
    )  # fmt: skip
    assert (subject.kind, subject.city, subject.colour) == (
        CodeKind.HEALTH,
        CityCode(320100),
        Colour.GREY,
    )
    shown = DisplayedCode.from_json(
        {"token": "CE1:ABC", "colour": "green", "version": 2, "issued_at": 100,
         "expires_at": 220, "refresh_at": 160, "kind": "enterprise_service", "city": 320500}
    )  # fmt: skip
    assert (shown.kind, shown.refresh_at) == (CodeKind.ENTERPRISE_SERVICE, 160)
    converted = Converted.from_json(
        {"subject": "A" * 16, "colour": "green", "shows": "red", "version": 3,
         "applied": False, "op_id": "op"}
    )  # fmt: skip
    assert (converted.colour, converted.shows, converted.applied) == (
        Colour.GREEN,
        Colour.RED,
        False,
    )
    with pytest.raises(UnexpectedAnswer):
        Converted.from_json({"subject": "A" * 16, "colour": "green"})


def test_a_scan_sends_its_venue_only_when_it_has_one() -> None:
    assert Scan("CE1:X", "gate", 320100).to_json() == {
        "code": "CE1:X",
        "terminal": "gate",
        "city": 320100,
    }
    assert Scan("CE1:X", "gate", 320100, "hall").to_json()["venue"] == "hall"
