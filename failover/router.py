"""Which endpoint of a city a client uses: a pure state machine over two breakers.

The client reports every outcome (requests and probes) with its time; the router answers which
endpoint to try first and says when it switched. Rules:

* Start on the primary.
* Leave the active endpoint when its breaker is not closed and the other's is closed: never
  trade a failing endpoint for one that is failing too (a Redis fault shared by both must not
  make clients flap between them).
* Return to the primary as soon as its breaker is closed again; closing takes
  ``successes_to_close`` good answers after its open period (the hysteresis).
* Every attempt may fall over to the other endpoint once (``order``), whatever the states say:
  refusing locally is never better than trying.
* Except that an endpoint that refused for load (503 ``OVERLOADED``) and named a
  ``Retry-After`` is not tried again before that time (``hold_off``): ``order`` leaves it out
  until then, and ``free_at`` says when the first one may be tried. Asking again earlier only
  adds to its load, and the engine stops reading such a connection until then anyway.
"""

from __future__ import annotations

__all__ = ["Outcome", "Router", "SwitchEvent"]

from enum import StrEnum
from typing import NamedTuple

from codeengine.code.breaker import Breaker, BreakerState
from codeengine.code.fencing import Role


class Outcome(StrEnum):
    OK = "ok"
    """An answer from the endpoint itself (any status it meant to give)."""
    FAILED = "failed"
    """No answer, a timeout, a gateway error, or a probe that says not ready."""


class SwitchEvent(NamedTuple):
    at: float
    source: Role
    to: Role
    why: str


class Router:
    """The active endpoint of one service of one city, and the breakers behind the choice."""

    def __init__(self, primary: Breaker, backup: Breaker) -> None:
        self.breakers = {Role.PRIMARY: primary, Role.BACKUP: backup}
        self.active = Role.PRIMARY
        self.switches: list[SwitchEvent] = []
        self.not_before: dict[Role, float] = {}
        """Endpoints that asked to be left alone (Retry-After), and until when."""

    def order(self, now: float) -> tuple[Role, ...]:
        """The endpoint to try first, and the one to fall over to; without those held off
        (:meth:`hold_off`) at ``now``, so possibly none."""
        self._decide(now)
        roles = (self.active, self.active.other)
        if not self.not_before:
            return roles
        return tuple(role for role in roles if self.not_before.get(role, now) <= now)

    def hold_off(self, role: Role, until: float) -> None:
        """Try ``role`` no more before ``until`` (it refused for load and named a Retry-After);
        a breaker state this does not touch: a busy endpoint is alive."""
        self.not_before[role] = max(until, self.not_before.get(role, until))

    def free_at(self, now: float) -> float:
        """The first instant from ``now`` on at which some endpoint may be tried."""
        for role, until in list(self.not_before.items()):
            if until <= now:
                del self.not_before[role]
        if len(self.not_before) < len(Role):
            return now
        return min(self.not_before.values())

    def report(self, role: Role, outcome: Outcome, now: float) -> SwitchEvent | None:
        """Feed one outcome of ``role``; the switch it caused, if any."""
        breaker = self.breakers[role]
        if outcome is Outcome.OK:
            breaker.success(now)
        else:
            breaker.failure(now)
        return self._decide(now)

    def probe_due(self, role: Role, now: float) -> bool:
        """Whether a probe of ``role`` may go now (an open breaker waits for its period)."""
        return self.breakers[role].allow(now)

    def _decide(self, now: float) -> SwitchEvent | None:
        active, other = self.active, self.active.other
        active_state = self.breakers[active].state(now)
        other_state = self.breakers[other].state(now)
        if active is Role.BACKUP and other_state is BreakerState.CLOSED:
            return self._switch(Role.PRIMARY, now, "primary recovered")
        if active_state is not BreakerState.CLOSED and other_state is BreakerState.CLOSED:
            return self._switch(other, now, f"{active} failing")
        return None

    def _switch(self, to: Role, now: float, why: str) -> SwitchEvent:
        event = SwitchEvent(now, self.active, to, why)
        self.active = to
        self.switches.append(event)
        del self.switches[:-100]
        return event
