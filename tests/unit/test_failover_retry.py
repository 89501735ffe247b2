"""The failover client's waits: a Retry-After as the floor, full jitter on top, within budget."""

from __future__ import annotations

import pytest

from failover.retry import MAX_RETRY_AFTER_S, Backoff, retry_after_s


def test_the_jitter_range_doubles_with_each_retry_up_to_its_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)
    assert [backoff.spread_s(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.spread_s(10_000) == 1.0, "no overflow for a long-retrying request"


def test_a_wait_is_the_floor_plus_the_draw_times_the_range() -> None:
    backoff = Backoff(base_s=0.1, cap_s=2.0)
    assert backoff.delay_s(0, 0.0) == 0.0
    assert backoff.delay_s(2, 0.5) == pytest.approx(0.2)
    assert backoff.delay_s(1, 0.75, floor_s=1.0) == pytest.approx(1.15)
    assert backoff.delay_s(0, 0.999, floor_s=1.0) < 1.1
    with pytest.raises(ValueError, match="draw"):
        backoff.delay_s(0, 1.0)


def test_jitter_takes_at_most_half_of_the_budget_left_after_the_floor() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0)
    assert backoff.delay_within_s(3, 0.9, floor_s=1.0, left_s=3.0) == pytest.approx(2.0)
    assert backoff.delay_within_s(0, 0.5, floor_s=1.0, left_s=10.0) == pytest.approx(1.5)


def test_a_backoff_needs_a_positive_range() -> None:
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=0.0)
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=2.0, cap_s=1.0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("3600", MAX_RETRY_AFTER_S),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("nan", None),
    ],
    ids=["one", "zero", "fraction", "negative", "past-the-cap", "http-date", "nan"],
)
def test_retry_after_is_read_in_seconds_and_capped(header: str, seconds: float | None) -> None:
    assert retry_after_s({"Retry-After": header}) == seconds


def test_no_retry_after_header_is_none() -> None:
    assert retry_after_s({}) is None
