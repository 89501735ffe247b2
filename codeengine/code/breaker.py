"""A circuit breaker as a pure state machine: every method takes the time as an argument.

Used per endpoint by the failover client and per Redis shard by the store. Nothing here reads
a clock or does I/O, so each transition is tested by handing it instants.

* **closed**: calls go through; ``failures_to_open`` consecutive failures open the breaker.
* **open**: calls are refused until ``open_for_s`` has passed since it opened.
* **half-open**: one trial call at a time is let through; a failure opens the breaker again
  (for the same period), and ``successes_to_close`` consecutive successes close it. That count
  is the hysteresis: one lucky answer from a flapping endpoint does not bring traffic back.

``calm`` is the hot path's shortcut: while it is true (closed, no failure counted) every call may
go and a success has nothing to record, so a caller reads one attribute and needs no clock.
"""

from __future__ import annotations

__all__ = ["Breaker", "BreakerState"]

from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Breaker:
    """One endpoint's (or shard's) breaker; see the module docstring."""

    failures_to_open: int = 3
    open_for_s: float = 1.0
    successes_to_close: int = 3
    trial_timeout_s: float = 5.0
    """A trial that never reports back frees the half-open slot after this long."""
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _successes: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _trial_started: float | None = field(default=None, init=False)
    calm: bool = field(default=True, init=False)
    """Closed with no failure counted: :meth:`allow` is true and :meth:`success` a no-op."""

    def __post_init__(self) -> None:
        if self.failures_to_open < 1 or self.successes_to_close < 1:
            raise ValueError("failures_to_open and successes_to_close must be at least 1")
        if self.open_for_s <= 0 or self.trial_timeout_s <= 0:
            raise ValueError("open_for_s and trial_timeout_s must be positive")

    def state(self, now: float) -> BreakerState:
        """The state at ``now``: an open breaker whose period has passed is half-open."""
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.open_for_s:
            self._state = BreakerState.HALF_OPEN
            self._successes = 0
            self._trial_started = None
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go out at ``now``; in half-open, it takes the trial slot."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._trial_started is not None and now - self._trial_started < self.trial_timeout_s:
            return False
        self._trial_started = now
        return True

    def success(self, now: float) -> bool:
        """Record a good answer; whether this closed the breaker."""
        state = self.state(now)
        self._failures = 0
        if state is BreakerState.HALF_OPEN:
            self._trial_started = None
            self._successes += 1
            if self._successes >= self.successes_to_close:
                self._state = BreakerState.CLOSED
                self.calm = True
                return True
            return False
        # A late answer while open changes nothing: the period still runs.
        self.calm = state is BreakerState.CLOSED
        return False

    def failure(self, now: float) -> bool:
        """Record a failed call; whether this opened the breaker."""
        state = self.state(now)
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN:
            self._open(now)
            return True
        self._failures += 1
        self.calm = False
        if self._failures >= self.failures_to_open:
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self.calm = False
        self._opened_at = now
        self._failures = 0
        self._successes = 0
        self._trial_started = None
