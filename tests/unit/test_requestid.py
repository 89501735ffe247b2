"""Request ids and W3C traceparent: what a caller's headers may set, and the ids made here."""

from __future__ import annotations

import re

import pytest

from codeengine.logs import scrub
from codeengine.web.requestid import (
    MAX_REQUEST_ID_CHARS,
    HeaderFields,
    RequestIds,
    parse_traceparent,
    sane_request_id,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
MADE = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")


@pytest.mark.parametrize(
    "value",
    [
        "123e4567-e89b-12d3-a456-426614174000",  # a UUID: a long run the log's mask would hide
        "order-42.retry:1",
        "a",
        "x" * MAX_REQUEST_ID_CHARS,
        TRACE_ID,
    ],
)
def test_a_sane_caller_id_is_kept_as_is(value: str) -> None:
    assert sane_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (MAX_REQUEST_ID_CHARS + 1),
        "has space",
        'quote"d',
        "line\r\nInjected: 1",
        "semi;colon",
        "ünïcode",
        "{json}",
        "11010119900307425X",  # a resident ID
        "req-91320100MA1MXXXX3K",  # a USCC inside
        "a.11010119900307425x.b",
        "password:hunter2",
        "x-Secret:abc",
    ],
    ids=lambda value: repr(value[:20]),
)
def test_an_insane_caller_id_is_refused(value: str) -> None:
    assert sane_request_id(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "123e4567-e89b-12d3-a456-426614174000",
        "req-91320100MA1MXXXX3K",
        "11010119900307425X",
        "x110101199003074251",  # 18 digits inside a longer run: not a resident ID
        "password:hunter2",
        "order-42.retry:1",
        "a" * 40,
    ],
)
def test_an_id_is_sane_exactly_when_the_logs_would_show_it_unchanged(value: str) -> None:
    # Within the allowed characters the two checks agree: what the answer's header shows is
    # what every log line about the request shows.
    assert (sane_request_id(value) is not None) == (scrub(value, long_runs=False) == value)


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-00",
        f"01-{TRACE_ID}-{PARENT_ID}-01-future-field",  # a later version may add fields
        f"01-{TRACE_ID}-{PARENT_ID}-01",
    ],
)
def test_a_valid_traceparent_gives_its_trace_and_parent(value: str) -> None:
    assert parse_traceparent(value) == (TRACE_ID, PARENT_ID)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
        f"01-{TRACE_ID}-{PARENT_ID}-01extra",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        f"0-{TRACE_ID}-{PARENT_ID}-01",
        f"01-{TRACE_ID}-{PARENT_ID}-01-{'x' * 300}",  # past the length bound
    ],
    ids=lambda value: repr(value[:24]),
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_made_ids_are_a_worker_prefix_and_a_counter() -> None:
    ids = RequestIds()
    first, second = ids.new(), ids.new()
    assert MADE.fullmatch(first) and MADE.fullmatch(second)
    assert first != second
    assert first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0], "one prefix per worker"
    assert int(second.rsplit("-", 1)[1], 16) == int(first.rsplit("-", 1)[1], 16) + 1
    assert ids.text(ids.next_seq()).encode() == b"%s%x" % (ids.prefix_bytes, 3)


def test_a_reseeded_worker_makes_ids_no_other_made() -> None:
    ids = RequestIds()
    before = {ids.new() for _ in range(3)}
    ids.reseed()  # what a forked child does
    after = {ids.new() for _ in range(3)}
    assert not before & after
    assert len({ids.prefix, RequestIds().prefix}) == 2, "each worker draws its own prefix"


def test_header_fields_take_a_sane_id_and_parse_the_trace_once_asked() -> None:
    traced = HeaderFields({"X-Request-Id": "abc-1", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert (traced.request_id, traced.trace_id, traced.parent_id) == ("abc-1", TRACE_ID, PARENT_ID)
    made = HeaderFields({"X-Request-Id": "no good", "traceparent": "00-zz"})
    assert MADE.fullmatch(made.request_id)
    assert (made.trace_id, made.parent_id) == (None, None)
    bare = HeaderFields({})
    assert MADE.fullmatch(bare.request_id) and bare.request_id != made.request_id
