"""How long the failover client waits before it asks again: a Retry-After, then jitter.

Pure: the time and the random draw are arguments. Two rules:

* **Retry-After is a floor.** An endpoint that named one is not asked again sooner, by the
  request that met it or (for ``OVERLOADED``) by the ones after it. The client honours at most
  ``MAX_RETRY_AFTER_S``; if the floor is past the request's budget, the refusal is the answer
  and the caller reads ``retry_after_s`` from it.
* **Jitter on top.** Every wait adds ``draw * spread``, with ``draw`` uniform in [0, 1) and a
  spread that doubles with each retry of the request up to a cap ("full jitter" in Marc
  Brooker's *Exponential Backoff And Jitter*). Without it, every phone that met the same
  refusal at the same instant comes back at the same instant again, and a busy worker refuses
  them all once more.
"""

from __future__ import annotations

__all__ = ["MAX_RETRY_AFTER_S", "Backoff", "header", "retry_after_s"]

from collections.abc import Mapping
from dataclasses import dataclass

MAX_RETRY_AFTER_S = 60.0
"""The longest Retry-After the client honours; a longer one is taken as this."""
_MAX_DOUBLINGS = 32


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (aiohttp's headers ignore case; a dict does not)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The delay a ``Retry-After`` header names, in seconds, at most ``MAX_RETRY_AFTER_S``;
    None if there is none, or it is an HTTP date (the engine sends seconds)."""
    value = header(headers, "Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds:  # NaN: not a delay
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full jitter over an exponential spread: ``base_s``, doubled each retry, at most
    ``cap_s``."""

    base_s: float = 0.1
    cap_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("Backoff needs 0 < base_s <= cap_s")

    def spread_s(self, retry: int) -> float:
        """The jitter's range before retry number ``retry`` (0 for a request's first retry)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(max(retry, 0), _MAX_DOUBLINGS))

    def delay_s(self, retry: int, draw: float, floor_s: float = 0.0) -> float:
        """The wait before retry number ``retry``: ``floor_s`` (what a Retry-After still asks)
        plus ``draw`` (uniform in [0, 1)) times the spread."""
        if not 0.0 <= draw < 1.0:
            raise ValueError("draw must be in [0, 1)")
        return max(0.0, floor_s) + draw * self.spread_s(retry)

    def delay_within_s(self, retry: int, draw: float, floor_s: float, left_s: float) -> float:
        """:meth:`delay_s`, with the jitter taking at most half of what the budget ``left_s``
        leaves after the floor, so the retry still has time to be answered."""
        floor_s = max(0.0, floor_s)
        return min(self.delay_s(retry, draw, floor_s), floor_s + max(0.0, left_s - floor_s) / 2)
