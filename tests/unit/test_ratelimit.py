"""The token bucket: pure, time as an argument."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codeengine.code.ratelimit import TokenBucket


def test_burst_then_refill_at_the_rate() -> None:
    bucket = TokenBucket.full_at(rate_per_s=2, burst=2, now=0.0)
    bucket, wait = bucket.take_at(0.0)
    assert wait == 0.0
    bucket, wait = bucket.take_at(0.0)
    assert wait == 0.0
    bucket, wait = bucket.take_at(0.0)
    assert wait == pytest.approx(0.5)
    bucket, wait = bucket.take_at(0.5)
    assert wait == 0.0
    bucket, wait = bucket.take_at(10.0)
    assert wait == 0.0 and bucket.tokens == pytest.approx(1.0), "never more than the burst"


def test_clock_going_backwards_adds_nothing() -> None:
    bucket, _ = TokenBucket.full_at(1, 1, 10.0).take_at(10.0)
    _, wait = bucket.take_at(5.0)
    assert wait == pytest.approx(1.0)


def test_retry_after_header_is_whole_seconds_at_least_one() -> None:
    assert TokenBucket.retry_after_header(0.01) == 1
    assert TokenBucket.retry_after_header(1.2) == 2
    with pytest.raises(ValueError):
        TokenBucket.full_at(0, 1, 0.0)


def test_a_batch_takes_its_items_tokens_at_once_or_none() -> None:
    bucket = TokenBucket.full_at(10.0, 10.0, 0.0)
    after, wait = bucket.take_at(0.0, 7.0)
    assert (wait, after.tokens) == (0.0, 3.0)
    # Four more do not fit in three: nothing is taken, and the wait is for the one missing.
    refused, wait = after.take_at(0.0, 4.0)
    assert refused.tokens == 3.0 and wait == pytest.approx(0.1)
    # More than the burst never fits, however long the client waits.
    assert TokenBucket.full_at(10.0, 10.0, 0.0).take_at(100.0, 11.0)[1] > 0


_AMOUNT = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@given(
    rate=st.floats(min_value=0.001, max_value=1e6),
    burst=st.floats(min_value=1.0, max_value=1e6),
    tokens=_AMOUNT,
    updated_at=_AMOUNT,
    now=_AMOUNT,
    cost=st.floats(min_value=0.0, max_value=1e6),
)
def test_a_take_is_the_textbook_bucket(
    rate: float, burst: float, tokens: float, updated_at: float, now: float, cost: float
) -> None:
    """Refill by the time passed (none if the clock went back), cap at the burst, take if
    enough is there, else say how long until it is."""
    held = min(burst, tokens + max(0.0, now - updated_at) * rate)
    after, wait = TokenBucket(rate, burst, tokens, updated_at).take_at(now, cost)
    if held >= cost:
        assert (after, wait) == (TokenBucket(rate, burst, held - cost, now), 0.0)
    else:
        assert (after, wait) == (TokenBucket(rate, burst, held, now), (cost - held) / rate)
