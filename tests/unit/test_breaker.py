"""The breaker's transitions, driven by instants handed to it."""

from __future__ import annotations

import pytest

from codeengine.code.breaker import Breaker, BreakerState


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    breaker = Breaker(failures_to_open=3, open_for_s=1.0)
    assert not breaker.failure(0.0)
    assert not breaker.failure(0.1)
    breaker.success(0.2)
    assert not breaker.failure(0.3)
    assert not breaker.failure(0.4)
    assert breaker.state(0.4) is BreakerState.CLOSED
    assert breaker.failure(0.5)
    assert breaker.state(0.5) is BreakerState.OPEN
    assert not breaker.allow(0.6)


def test_open_turns_half_open_after_its_period_and_lets_one_trial_through() -> None:
    breaker = Breaker(failures_to_open=1, open_for_s=1.0, trial_timeout_s=2.0)
    breaker.failure(10.0)
    assert not breaker.allow(10.99)
    assert breaker.state(11.0) is BreakerState.HALF_OPEN
    assert breaker.allow(11.0)
    assert not breaker.allow(11.5), "a second call while the trial is out"
    assert breaker.allow(13.0), "a trial that never reported frees its slot"


def test_half_open_needs_consecutive_successes_to_close() -> None:
    breaker = Breaker(failures_to_open=1, open_for_s=1.0, successes_to_close=3)
    breaker.failure(0.0)
    for at in (1.0, 1.1):
        assert breaker.allow(at)
        assert not breaker.success(at)
        assert breaker.state(at) is BreakerState.HALF_OPEN
    assert breaker.allow(1.2)
    assert breaker.success(1.2)
    assert breaker.state(1.2) is BreakerState.CLOSED


def test_a_failure_in_half_open_opens_it_again_for_a_full_period() -> None:
    breaker = Breaker(failures_to_open=1, open_for_s=1.0, successes_to_close=2)
    breaker.failure(0.0)
    assert breaker.allow(1.0)
    breaker.success(1.0)
    assert breaker.allow(1.1)
    assert breaker.failure(1.1)
    assert breaker.state(2.0) is BreakerState.OPEN
    assert breaker.state(2.1) is BreakerState.HALF_OPEN
    assert breaker.allow(2.1)
    assert not breaker.success(2.1), "the successes before the failure do not count"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failures_to_open": 0},
        {"successes_to_close": 0},
        {"open_for_s": 0},
        {"trial_timeout_s": -1},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Breaker(**kwargs)  # type: ignore[arg-type]


def test_calm_is_true_only_while_closed_with_no_failure_counted() -> None:
    breaker = Breaker(failures_to_open=2, open_for_s=1.0, successes_to_close=1)

    def calm_after(step: object) -> bool:
        return breaker.calm

    assert calm_after(None)
    assert not calm_after(breaker.failure(0.0)), "a counted failure is reset by a success"
    assert calm_after(breaker.success(0.1))
    assert not calm_after((breaker.failure(0.2), breaker.failure(0.3)))
    assert not breaker.allow(0.4)
    assert not calm_after(breaker.success(0.5)), "a late answer does not end the open period"
    assert breaker.allow(1.3), "the trial of the half-open breaker"
    assert not calm_after(None)
    assert breaker.success(1.3)
    assert calm_after(None) and breaker.allow(1.4)
