"""The circuit breaker the failover client uses per endpoint (re-exported from the pure layer)."""

from __future__ import annotations

__all__ = ["Breaker", "BreakerState"]

from codeengine.code.breaker import Breaker, BreakerState
