"""Conversion rules: the shipped file, every refusal of a bad one, merging periods, precedence."""

from __future__ import annotations

import csv
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import BadRequest
from codeengine.code.identifiers import make_resident_id
from codeengine.code.model import Colour
from codeengine.code.rules import (
    Rule,
    RulesError,
    effective_colour_at,
    load_rules,
    merge_risk_at,
    parse_rules,
)
from codeengine.code.secret import Secret
from codeengine.store.batches import COLUMNS, BadRow, RiskRow, RowParser

DAY = 86400
NOW = 1_800_000_000
RED, YELLOW, GREEN, GREY = Colour.RED, Colour.YELLOW, Colour.GREEN, Colour.GREY


def test_the_shipped_rules_load() -> None:
    rules = load_rules()
    assert rules.version >= 1 and rules.no_data in (GREEN, GREY)
    assert rules.rules["positive"] == Rule("positive", RED, 14 * DAY)
    assert rules.rules["negative_test"].clears == frozenset({YELLOW})


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": 2,
        "policy": {"no_data": "grey"},
        "types": {"positive": {"colour": "red", "duration_days": 14}},
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 0}, "version"),
        ({"policy": {"no_data": "red"}}, "policy.no_data"),
        ({"types": {}}, "at least one"),
        ({"types": {"Bad-Name": {"colour": "red", "duration_days": 1}}}, "lower-case"),
        ({"types": {"x": {"colour": "purple", "duration_days": 1}}}, "types.x.colour"),
        ({"types": {"x": {"colour": "red", "duration_days": 0}}}, "needs a duration"),
        ({"types": {"x": {"colour": "red", "duration_days": 400}}}, "duration_days"),
        ({"types": {"x": {"colour": "green", "duration_days": 0, "clears": ["blue"]}}}, "clears"),
        ({"types": {"x": {"colour": "red", "duration_days": 1, "extra": 1}}}, "only"),
        ({"extra": True}, "only"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(_document(**changes))


def test_merging_keeps_the_latest_end_per_colour_and_is_idempotent() -> None:
    red7, yellow7 = Rule("c", RED, 7 * DAY), Rule("v", YELLOW, 7 * DAY)
    negative = Rule("n", GREEN, 0, frozenset({YELLOW}))
    risk = merge_risk_at((), red7, NOW - DAY, NOW)
    assert risk == ((RED, NOW + 6 * DAY),)
    assert merge_risk_at(risk, red7, NOW - DAY, NOW) == risk, "the same record twice"
    assert merge_risk_at(risk, red7, NOW - 3 * DAY, NOW) == risk, "an earlier end never shortens"
    both = merge_risk_at(risk, yellow7, NOW, NOW)
    assert both == ((YELLOW, NOW + 7 * DAY), (RED, NOW + 6 * DAY))
    assert merge_risk_at(both, negative, NOW, NOW) == ((RED, NOW + 6 * DAY),)
    assert merge_risk_at(both, red7, NOW - 30 * DAY, NOW + 6 * DAY) == ((YELLOW, NOW + 7 * DAY),)
    assert merge_risk_at((), red7, NOW - 8 * DAY, NOW) == (), "a period already over adds nothing"


def test_the_strongest_running_colour_shows_and_a_period_ends_at_its_instant() -> None:
    risk = ((YELLOW, NOW + 100), (RED, NOW + 50))
    assert effective_colour_at(GREEN, risk, None, NOW) is RED
    assert effective_colour_at(GREEN, risk, None, NOW + 49) is RED
    assert effective_colour_at(GREEN, risk, None, NOW + 50) is YELLOW
    assert effective_colour_at(GREEN, risk, None, NOW + 100) is GREEN
    assert effective_colour_at(GREY, (), None, NOW) is GREY
    assert effective_colour_at(RED, risk, None, NOW + 100) is RED, "ops set red: it stays"
    override = (GREEN, NOW + 10)
    assert effective_colour_at(GREEN, risk, override, NOW + 9) is GREEN
    assert effective_colour_at(GREEN, risk, override, NOW + 10) is RED


def _parser(fmt: str = "csv") -> RowParser:
    parser = RowParser(fmt, load_rules(), Secret(b"p" * 32), NOW, date(2027, 1, 15))  # type: ignore[arg-type]
    if fmt == "csv":
        assert parser.feed(1, b"identifier,record_type,event_time,source,city\r\n") is None
    return parser


ID = make_resident_id("320102", date(1980, 5, 6), 123)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{ID[:-1]}{'1' if ID[-1] != '1' else '2'},positive,{NOW},cdc,320100", "BAD_CHECK_DIGIT"),
        (f"{ID},unknown,{NOW},cdc,320100", "UNKNOWN_RECORD_TYPE"),
        (f"{ID},positive,{NOW + 3600},cdc,320100", "BAD_EVENT_TIME"),
        (f"{ID},positive,2027-01-15T08:00:00,cdc,320100", "BAD_EVENT_TIME"),
        (f"{ID},positive,yesterday,cdc,320100", "BAD_EVENT_TIME"),
        (f"{ID},positive,{NOW},,320100", "BAD_SOURCE"),
        (f"{ID},positive,{NOW},cdc,999999", "UNKNOWN_CITY"),
        (f"{ID},positive,{NOW},cdc", "BAD_ROW"),
        ("\xff\xfe", "BAD_ROW"),
    ],
)
def test_a_bad_row_is_named_by_line_and_reason(line: str, reason: str) -> None:
    raw = line.encode("latin-1") if line.startswith("\xff") else line.encode()
    assert _parser().feed(7, raw) == BadRow(7, reason)


def test_good_rows_in_csv_and_ndjson_and_iso_times_with_offsets() -> None:
    row = _parser().feed(2, f"{ID},positive,{NOW - DAY},cdc,320100\n".encode())
    assert isinstance(row, RiskRow) and (row.line, row.event_at, row.city) == (2, NOW - DAY, 320100)
    assert ID not in repr(row), "a parsed row holds the pseudonym, not the identifier"
    iso = _parser().feed(3, f"{ID},positive,2027-01-14T08:00:00+08:00,cdc,320100".encode())
    assert isinstance(iso, RiskRow) and iso.event_at == 1_799_884_800
    nd = _parser("ndjson").feed(
        1,
        b'{"identifier": "%s", "record_type": "positive", "event_time": %d, "source": "cdc", '
        b'"city": 320100}' % (ID.encode(), NOW),
    )
    assert isinstance(nd, RiskRow) and nd.subject == row.subject
    assert _parser("ndjson").feed(4, b'{"identifier": 1}') == BadRow(4, "BAD_ROW")
    assert _parser().feed(5, b"   \n") is None


def test_a_csv_must_start_with_its_header() -> None:
    parser = RowParser("csv", load_rules(), Secret(b"p" * 32), NOW, date(2027, 1, 15))
    with pytest.raises(BadRequest, match="header"):
        parser.feed(1, f"{ID},positive,{NOW},cdc,320100".encode())


def test_a_carriage_return_inside_a_csv_line_is_a_bad_row() -> None:
    assert _parser().feed(9, f"{ID},posi\rtive,{NOW},cdc,320100\n".encode()) == BadRow(9, "BAD_ROW")


@settings(database=None, deadline=None, max_examples=300)
@given(st.lists(st.text(alphabet=',"\r\n\t\x00 \\aé1X', max_size=8), min_size=4, max_size=6))
def test_csv_lines_split_exactly_as_the_csv_module_splits_them(parts: list[str]) -> None:
    # Lines without quotes or line breaks skip csv.reader; every line must split the same.
    text = ",".join(parts)
    try:
        values: list[str] | None = next(csv.reader([text]), [])
    except csv.Error:
        values = None
    expected = values if values and len(values) == len(COLUMNS) else None
    assert _parser()._fields(text) == expected
