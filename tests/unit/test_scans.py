"""Scan log entries: their stream form, and counting them by venue."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codeengine.code.errors import CodeEngineError
from codeengine.code.scans import ENTRY_FIELD, ScanEntry, count_scans, packed_scan


def entry(venue: str, reason: str = "VALID", colour: str = "green") -> ScanEntry:
    return ScanEntry("t-1", venue, 320100, 1_800_000_000_000, "AAECAwQFBgcICQoL", reason, colour)


def test_an_entry_is_one_packed_field_and_reads_back() -> None:
    original = entry("gate")
    assert ScanEntry.from_fields({ENTRY_FIELD.encode(): original.pack()}) == original
    # Empty venue and colour (a refused scan) survive too.
    refused = ScanEntry("t-1", "", 320100, 1, "", "MALFORMED", "")
    assert ScanEntry.from_fields({b"e": refused.pack()}) == refused


def test_entries_of_the_earlier_layout_still_read() -> None:
    earlier = {
        b"t": b"t-1", b"v": b"gate", b"c": b"320100", b"ts": b"1800000000000",
        b"s": b"AAECAwQFBgcICQoL", b"r": b"VALID", b"col": b"green",
    }  # fmt: skip
    assert ScanEntry.from_fields(earlier) == entry("gate")


@pytest.mark.parametrize(
    "value",
    [
        b"\xc1",  # never used in msgpack
        msgpack.packb({"t": "t-1"}),
        msgpack.packb(["t-1", "gate", 320100, 1800000000000, "AAECAwQFBgcICQoL", "VALID"]),
        msgpack.packb(["t-1", "gate", "320100", 1800000000000, "s", "VALID", "green"]),
    ],
)
def test_a_packed_value_that_is_not_an_entry_is_corrupt(value: bytes) -> None:
    with pytest.raises(CodeEngineError, match="corrupt"):
        ScanEntry.from_fields({b"e": value})


def test_count_by_venue_reason_and_colour() -> None:
    entries = [entry("a"), entry("a", "EXPIRED", ""), entry("b"), entry("a", colour="red")]
    counted = count_scans(entries, "a")
    assert (counted.total, counted.by_reason, counted.by_colour) == (
        3,
        {"VALID": 2, "EXPIRED": 1},
        {"green": 1, "red": 1},
    )
    assert count_scans(entries, None).total == 4
    assert count_scans([], "a").total == 0


def test_the_writer_form_is_the_city_and_the_packed_entry() -> None:
    original = entry("gate")
    city, packed = original.packed()
    assert city == original.city
    assert ScanEntry.from_fields({ENTRY_FIELD.encode(): packed}) == original


@given(
    terminal=st.text(max_size=64),
    venue=st.text(max_size=64),
    city=st.integers(min_value=0, max_value=999_999),
    at_ms=st.integers(min_value=0, max_value=2**63 - 1),
    subject=st.text(max_size=16),
    reason=st.text(max_size=24),
    colour=st.sampled_from(["", "green", "yellow", "red", "grey"]),
)
def test_a_scan_packed_from_its_parts_is_the_entry_packed(
    terminal: str, venue: str, city: int, at_ms: int, subject: str, reason: str, colour: str
) -> None:
    parts = (terminal, venue, city, at_ms, subject, reason, colour)
    assert packed_scan(*parts) == (city, ScanEntry(*parts).pack())
    city_of, packed = packed_scan(*parts)
    assert city_of == city
    assert ScanEntry.from_fields({ENTRY_FIELD.encode(): packed}) == ScanEntry(*parts)
