"""The four questions of the topic library against a small known set of scans in the embedded
engine: each answer exact, pages cut by their cursors, windows half-open, contact windows
closed at both edges."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from codeengine.records.engine import RecordsEngine
from codeengine.records.queries import (
    Contact,
    CountRow,
    SubjectScan,
    VenueScan,
    contacts,
    counts,
    subject_scans,
    venue_scans,
)
from tests.integration.records_support import engine_for

T0 = 1_800_000_000_000
"""On a whole minute (and two)."""
CITY, OTHER_CITY = 320100, 320200

# (at_ms, venue, subject, terminal, city, reason, colour)
SCANS = [
    (T0, "venue-a", "subj-x", "t1", CITY, "VALID", "green"),
    (T0 + 1000, "venue-a", "subj-y", "t1", CITY, "VALID", "green"),
    (T0 + 1000, "venue-a", "subj-z", "t2", CITY, "VALID", "green"),
    (T0 + 2000, "venue-a", "subj-y", "t2", CITY, "VALID", "green"),
    (T0 + 500, "venue-b", "subj-x", "t3", CITY, "VALID", "green"),
    (T0 - 500, "venue-b", "subj-v", "t3", CITY, "EXPIRED", ""),
    (T0 + 1501, "venue-b", "subj-u", "t3", CITY, "VALID", "green"),
    (T0 + 60_000, "venue-b", "subj-w", "t3", CITY, "VALID", "yellow"),
    (T0 + 500, "venue-c", "subj-x", "t9", OTHER_CITY, "VALID", "green"),
    (T0 + 600, "venue-c", "subj-y", "t9", OTHER_CITY, "VALID", "green"),
    (T0 + 10 * 60_000, "venue-a", "subj-x", "t1", CITY, "VALID", "green"),
]


@pytest.fixture(scope="module")
def engine() -> Iterator[RecordsEngine]:
    database = f"q_{os.urandom(4).hex()}"
    engine = engine_for(database)
    values = ", ".join(
        f"('{terminal}', '{venue}', {city}, fromUnixTimestamp64Milli({at}), '{subject}', "
        f"'{reason}', '{colour}')"
        for at, venue, subject, terminal, city, reason, colour in SCANS
    )
    engine.command(f"INSERT INTO {database}.scans VALUES {values}")
    yield engine
    engine.command(f"DROP DATABASE IF EXISTS {database}")


def test_a_venue_window_is_half_open_and_paged_by_its_cursor(engine: RecordsEngine) -> None:
    first = venue_scans(engine, "venue-a", T0, T0 + 2000, limit=2)
    assert first == [
        VenueScan(T0, "subj-x", "t1", CITY, "VALID", "green"),
        VenueScan(T0 + 1000, "subj-y", "t1", CITY, "VALID", "green"),
    ]
    last = first[-1]
    rest = venue_scans(engine, "venue-a", T0, T0 + 2000, 2, (last.at_ms, last.subject,
                                                            last.terminal))  # fmt: skip
    # Same millisecond, the next subject; the scan at T0 + 2000 is outside the window.
    assert rest == [VenueScan(T0 + 1000, "subj-z", "t2", CITY, "VALID", "green")]
    assert venue_scans(engine, "venue-a", T0 + 1, T0 + 1000, 10) == []


def test_a_subject_trajectory_is_in_time_order_and_paged(engine: RecordsEngine) -> None:
    first = subject_scans(engine, "subj-x", T0, T0 + 3_600_000, limit=2)
    assert first == [
        SubjectScan(T0, "venue-a", "t1", CITY, "VALID", "green"),
        SubjectScan(T0 + 500, "venue-b", "t3", CITY, "VALID", "green"),
    ]
    cursor = (first[-1].at_ms, first[-1].venue, first[-1].terminal)
    # Same millisecond as the cursor, a later venue: on the next page.
    assert subject_scans(engine, "subj-x", T0, T0 + 3_600_000, 2, cursor) == [
        SubjectScan(T0 + 500, "venue-c", "t9", OTHER_CITY, "VALID", "green"),
        SubjectScan(T0 + 600_000, "venue-a", "t1", CITY, "VALID", "green"),
    ]
    assert subject_scans(engine, "subj-x", T0 + 1, T0 + 600_000, 10) == [
        SubjectScan(T0 + 500, "venue-b", "t3", CITY, "VALID", "green"),
        SubjectScan(T0 + 500, "venue-c", "t9", OTHER_CITY, "VALID", "green"),
    ]


def test_counts_are_by_step_result_and_colour_of_one_city(engine: RecordsEngine) -> None:
    assert counts(engine, CITY, None, T0 - 60_000, T0 + 120_000, 60) == [
        CountRow(T0 - 60_000, "EXPIRED", "", 1),
        CountRow(T0, "VALID", "green", 6),
        CountRow(T0 + 60_000, "VALID", "yellow", 1),
    ]
    assert counts(engine, CITY, None, T0, T0 + 120_000, 120) == [
        CountRow(T0, "VALID", "green", 6),
        CountRow(T0, "VALID", "yellow", 1),
    ]
    assert counts(engine, CITY, "venue-b", T0, T0 + 3_600_000, 3600) == [
        CountRow(T0 - T0 % 3_600_000, "VALID", "green", 2),
        CountRow(T0 - T0 % 3_600_000, "VALID", "yellow", 1),
    ]
    assert counts(engine, OTHER_CITY, None, T0, T0 + 60_000, 60) == [
        CountRow(T0, "VALID", "green", 2)
    ]
    with pytest.raises(ValueError, match="whole number of minutes"):
        counts(engine, CITY, None, T0, T0 + 60_000, 90)


def test_contacts_are_within_the_window_at_both_edges(engine: RecordsEngine) -> None:
    # subj-x: venue-a at T0 and T0 + 600 s, venue-b and venue-c at T0 + 500. A window of 1 s
    # takes a scan exactly 1,000 ms away (before or after) and leaves one 1,001 ms away.
    found = contacts(engine, "subj-x", T0, T0 + 3_600_000, window_s=1, limit=10)
    assert found == [
        Contact("subj-v", "venue-b", T0 - 500, T0 - 500, T0 + 500, 1),
        Contact("subj-y", "venue-a", T0 + 1000, T0 + 1000, T0, 1),
        Contact("subj-y", "venue-c", T0 + 600, T0 + 600, T0 + 500, 1),
        Contact("subj-z", "venue-a", T0 + 1000, T0 + 1000, T0, 1),
    ]
    page = contacts(engine, "subj-x", T0, T0 + 3_600_000, 1, 2, ("subj-v", "venue-b"))
    assert [(c.subject, c.venue) for c in page] == [("subj-y", "venue-a"), ("subj-y", "venue-c")]
    # A wider window takes subj-y's second scan at venue-a and subj-u at venue-b.
    wide = contacts(engine, "subj-x", T0, T0 + 3_600_000, window_s=2, limit=10)
    assert Contact("subj-y", "venue-a", T0 + 1000, T0 + 2000, T0, 2) in wide
    assert Contact("subj-u", "venue-b", T0 + 1501, T0 + 1501, T0 + 500, 1) in wide
    # Only the subject's scans inside the query's window count: from T0 + 1 it has none at
    # venue-a until T0 + 600 s, when no one else was there.
    later = contacts(engine, "subj-x", T0 + 1, T0 + 3_600_000, window_s=1, limit=10)
    pairs = [(c.subject, c.venue) for c in later]
    assert pairs == [("subj-v", "venue-b"), ("subj-y", "venue-c")]
    assert contacts(engine, "subj-nobody", T0, T0 + 3_600_000, 1, 10) == []
