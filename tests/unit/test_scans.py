"""Scan log entries: their stream form, and counting them by venue."""

from __future__ import annotations

from codeengine.scans import SCAN_FIELD_COUNT, ScanEntry, count_scans


def entry(venue: str, reason: str = "VALID", colour: str = "green") -> ScanEntry:
    return ScanEntry("t-1", venue, 320100, 1_800_000_000_000, "AAECAwQFBgcICQoL", reason, colour)


def test_stream_fields_round_trip_and_declare_their_width() -> None:
    original = entry("gate")
    fields = original.to_fields()
    assert len(fields) == SCAN_FIELD_COUNT
    as_stream = {
        str(k).encode(): str(v).encode() for k, v in zip(fields[::2], fields[1::2], strict=True)
    }
    assert ScanEntry.from_fields(as_stream) == original


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
