"""Which days retention drops: the last ``retention_days`` days up to today are kept."""

from __future__ import annotations

from datetime import date

import pytest

from codeengine.code.recordstatus import read_status_fields, status_fields
from codeengine.records.consumer import StreamLag
from codeengine.records.export import day_window, parse_day
from codeengine.records.retention import days_to_drop
from codeengine.records.status import status_document

TODAY = date(2026, 12, 7)


@pytest.mark.parametrize(
    ("kept", "retention", "dropped"),
    [
        (["2026-11-09", "2026-11-10", "2026-12-07"], 28, ["2026-11-09"]),
        (["2026-12-06", "2026-12-07"], 1, ["2026-12-06"]),
        (["2026-12-08", "2026-12-07"], 1, []),  # a day after today is never old
        (["2025-01-01", "tuple()", "2026-11-01"], 28, ["2025-01-01", "2026-11-01"]),
        ([], 28, []),
    ],
    ids=["the-29th-day-goes", "one-day-keeps-today", "future-stays", "not-a-day-stays", "none"],
)
def test_days_to_drop(kept: list[str], retention: int, dropped: list[str]) -> None:
    assert days_to_drop(kept, TODAY, retention) == dropped


def test_a_retention_below_one_day_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        days_to_drop(["2026-12-07"], TODAY, 0)


def test_the_status_hash_reads_back_with_its_age() -> None:
    days = {"scans": [("2026-12-06", 5, 100), ("2026-12-07", 2, 50)], "changes": [], "access": []}
    lag = [StreamLag("scans", 320500, 4, 1.5)]
    status = status_document(days, lag, 28, 1_000_000)
    assert (status["oldest_day"], status["rows"], status["store_bytes"]) == ("2026-12-06", 7, 150)
    back = read_status_fields(status_fields(status), 1_000_000 + 31_000)
    assert (back["age_s"], back["stale"], back["lag_entries"]) == (31.0, True, 4)
    assert back["days"] == [{"day": "2026-12-06", "rows": {"scans": 5}},
                            {"day": "2026-12-07", "rows": {"scans": 2}}]  # fmt: skip
    assert read_status_fields(status_fields(status), 1_000_000 + 30_000)["stale"] is False
    with pytest.raises(ValueError, match="not readable"):
        read_status_fields({**status_fields(status), "lag": "[[1]]"}, 0)


@pytest.mark.parametrize(
    "text", ["2026-12-5", "2026-02-30", "20261205", "\uff12\uff10\uff12\uff16-12-05", ""]
)
def test_an_export_day_is_a_calendar_day(text: str) -> None:
    with pytest.raises(ValueError):
        parse_day(text)


def test_a_china_day_starts_at_16_utc_the_day_before() -> None:
    assert day_window(parse_day("2026-12-05")) == (1_796_400_000_000, 1_796_486_400_000)
