"""Resident IDs and credit codes: known answers, every refusal reason, masking, properties."""

from __future__ import annotations

import json
import traceback
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import InvalidIdentifier, Reason
from codeengine.code.identifiers import (
    USCC,
    USCC_ALPHABET,
    ResidentId,
    SubjectKind,
    make_resident_id,
    make_uscc,
    parse_identifier,
    parse_resident_id,
    parse_uscc,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "identifiers.json"
_CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="ascii"))["cases"]
TODAY = date(2024, 6, 1)
# No example database: unit tests write no files.
PROPERTY = settings(database=None, deadline=None, max_examples=150)

PROVINCES = [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45]
PROVINCES += [46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83]
CATEGORIES = ["11", "12", "13", "19", "21", "29", "31", "32", "33", "34", "35", "39", "41", "49"]
CATEGORIES += ["51", "52", "53", "59", "61", "62", "69", "71", "72", "79", "81", "89", "91", "92"]
CATEGORIES += ["93", "A1", "A9", "N1", "N2", "N3", "N9", "Y1"]


def cases(op: str, *, valid: bool) -> list[Any]:
    """The vector cases of one operation, valid or invalid, with readable ids."""
    chosen = [c for c in _CASES if c["op"] == op and ("reason" not in c) == valid]
    assert chosen, f"no {op} vectors"
    return [pytest.param(c, id=c["id"]) for c in chosen]


def assert_leaks_nothing(exc: InvalidIdentifier, text: str) -> None:
    """Neither the message, the repr nor a printed traceback may contain the identifier."""
    secret = text.strip()
    printed = "".join(traceback.format_exception(exc))
    for shown in (str(exc), repr(exc), exc.detail, printed):
        assert secret not in shown
    # A chained error (a date or int parse failure) would print the value beside ours.
    assert exc.__cause__ is None
    assert exc.__context__ is None


@pytest.mark.parametrize("case", cases("resident_id", valid=True))
def test_valid_resident_id_vectors(case: dict[str, Any]) -> None:
    parsed = parse_resident_id(case["input"], date.fromisoformat(case["today"]))
    assert parsed.normalised == case["normalised"]
    assert str(parsed) == parsed.masked == case["masked"]
    assert repr(parsed) == f"ResidentId({case['masked']!r})"
    assert f"{parsed}" == case["masked"]
    assert case["normalised"] not in repr(parsed) + str(parsed) + repr([parsed])


@pytest.mark.parametrize("case", cases("resident_id", valid=False))
def test_invalid_resident_id_vectors(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        parse_resident_id(case["input"], date.fromisoformat(case["today"]))
    assert caught.value.reason == Reason(case["reason"])
    if len(case["input"].strip()) >= 8:
        assert_leaks_nothing(caught.value, case["input"])


@pytest.mark.parametrize("case", cases("uscc", valid=True))
def test_valid_uscc_vectors(case: dict[str, Any]) -> None:
    parsed = parse_uscc(case["input"])
    assert parsed.normalised == case["normalised"]
    assert str(parsed) == parsed.masked == case["masked"]
    assert repr(parsed) == f"USCC({case['masked']!r})"
    assert case["normalised"] not in repr(parsed) + str(parsed)


@pytest.mark.parametrize("case", cases("uscc", valid=False))
def test_invalid_uscc_vectors(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        parse_uscc(case["input"])
    assert caught.value.reason == Reason(case["reason"])
    if len(case["input"].strip()) >= 8:
        assert_leaks_nothing(caught.value, case["input"])


def test_birth_date_bounds_follow_today() -> None:
    born = make_resident_id("320102", date(2024, 6, 1), 1)
    assert parse_resident_id(born, today=date(2024, 6, 1)).normalised == born
    with pytest.raises(InvalidIdentifier) as caught:
        parse_resident_id(born, today=date(2024, 5, 31))
    assert caught.value.reason is Reason.BAD_BIRTH_DATE


def test_only_a_final_lower_case_x_is_accepted() -> None:
    standard = "11010519491231002X"
    assert parse_resident_id(standard.lower(), TODAY).normalised == standard
    with pytest.raises(InvalidIdentifier) as caught:
        parse_resident_id("11010519491231002x".replace("1", "x", 1), TODAY)
    assert caught.value.reason is Reason.BAD_CHARACTERS


def test_invalid_identifier_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="18 characters"):
        parse_uscc("123")


def test_parse_identifier_dispatches_by_kind() -> None:
    person = parse_identifier("person", "11010519491231002X", TODAY)
    enterprise = parse_identifier("enterprise", "91350100M000100Y43", TODAY)
    assert isinstance(person, ResidentId)
    assert person.kind == "person"
    assert isinstance(enterprise, USCC)
    assert enterprise.kind == "enterprise"
    # A valid code of the other kind is refused, not silently accepted.
    with pytest.raises(InvalidIdentifier):
        parse_identifier("enterprise", "11010519491231002X", TODAY)


def test_parse_identifier_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown subject kind") as caught:
        parse_identifier("robot", "11010519491231002X", TODAY)  # type: ignore[arg-type]
    assert not isinstance(caught.value, InvalidIdentifier)


def test_values_compare_and_hash_by_normalised_text() -> None:
    one = parse_resident_id("11010519491231002x", TODAY)
    assert one == parse_resident_id(" 11010519491231002X ", TODAY)
    assert len({one, parse_resident_id("11010519491231002X", TODAY)}) == 1
    with pytest.raises(AttributeError):
        one.normalised = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("region", "seq", "message"),
    [
        ("32010", 1, "region"),
        ("\uff13\uff12\uff10\uff11\uff10\uff12", 1, "region"),
        ("320102", 1000, "seq"),
    ],
)
def test_make_resident_id_refuses_bad_parts(region: str, seq: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_resident_id(region, date(1990, 1, 1), seq)


@pytest.mark.parametrize("prefix", ["9135010", "91350100M000100YI", "91350100M000100Y4X"])
def test_make_uscc_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix17"):
        make_uscc(prefix)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    """Valid resident IDs anywhere in the country, born 1900-01-01 to TODAY."""
    region = f"{draw(st.sampled_from(PROVINCES))}{draw(st.integers(0, 9999)):04d}"
    birth = draw(st.dates(date(1900, 1, 1), TODAY))
    return make_resident_id(region, birth, draw(st.integers(0, 999)))


@st.composite
def credit_codes(draw: st.DrawFn) -> str:
    """Valid credit codes of every authority and category in the table."""
    head = draw(st.sampled_from(CATEGORIES))
    region = f"{draw(st.sampled_from([*PROVINCES, 10]))}{draw(st.integers(0, 9999)):04d}"
    body = draw(st.text(alphabet=USCC_ALPHABET, min_size=9, max_size=9))
    return make_uscc(head + region + body)


padding = st.text(alphabet=" \t\r\n\u3000", max_size=3)


@PROPERTY
@given(resident_ids(), padding, padding)
def test_generated_resident_ids_round_trip(text: str, before: str, after: str) -> None:
    assert parse_resident_id(text, TODAY).normalised == text
    lowered = before + text.lower() + after
    assert parse_resident_id(lowered, TODAY).normalised == text


@PROPERTY
@given(resident_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_change_to_a_resident_id_is_refused(text: str, at: int, char: str) -> None:
    changed = text[:at] + char + text[at + 1 :]
    if changed != text:
        with pytest.raises(InvalidIdentifier) as caught:
            parse_resident_id(changed, TODAY)
        assert_leaks_nothing(caught.value, changed)


@PROPERTY
@given(credit_codes(), padding, padding)
def test_generated_credit_codes_round_trip(text: str, before: str, after: str) -> None:
    assert parse_uscc(text).normalised == text
    assert parse_uscc(before + text.lower() + after).normalised == text


@PROPERTY
@given(credit_codes(), st.integers(0, 17), st.sampled_from(USCC_ALPHABET))
def test_any_single_change_to_a_credit_code_is_refused(text: str, at: int, char: str) -> None:
    changed = text[:at] + char + text[at + 1 :]
    if changed != text:
        with pytest.raises(InvalidIdentifier) as caught:
            parse_uscc(changed)
        assert_leaks_nothing(caught.value, changed)


# Text near the real shapes reaches the deeper checks; arbitrary text covers the rest.
near_ids = st.text(alphabet="0123456789Xx \u00df\uff11\u0661", min_size=16, max_size=20)
near_codes = st.text(alphabet=USCC_ALPHABET + "IOZSVaz \u00df\uff21", min_size=16, max_size=20)


@PROPERTY
@given(st.one_of(st.text(), near_ids, near_codes))
def test_arbitrary_text_raises_nothing_but_invalid_identifier(text: str) -> None:
    kinds: tuple[SubjectKind, ...] = ("person", "enterprise")
    for kind in kinds:
        try:
            parsed = parse_identifier(kind, text, TODAY)
        except InvalidIdentifier as exc:
            assert exc.reason in Reason
            # Hypothesis also draws the module's own string constants, which our details quote,
            # so only text that could carry an identifier (six digits or more) is checked.
            if sum(char in "0123456789" for char in text) >= 6:
                assert_leaks_nothing(exc, text)
        else:
            assert parsed.normalised.isascii()
            assert len(parsed.normalised) == 18
