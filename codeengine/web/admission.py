"""Admission: which connections and requests a worker takes on, and which it refuses early.

A worker that takes on more than it can finish makes everyone wait: requests queue in its loop
and the latency of every answer grows with the crowd (4,000 connections gave a p99 of 1.4 s and
client timeouts where 512 gave 45 ms). So a worker refuses, cheaply and at once, what it could
only answer late, and keeps the answers it does give fast:

* **Requests in flight.** :class:`Admission` counts the requests the service wrapper is working
  on (fast lane and aiohttp alike). Past ``service.max_in_flight`` a request is answered 503
  ``OVERLOADED`` with ``Retry-After`` before any work: no access check, no store call. Health
  checks are never refused: a busy worker is alive and ready, and a load balancer that took
  busy workers out of rotation would only pile their load on the others.
* **Loop lag**, optionally (``service.max_loop_lag_ms``): a timer notes how late the loop runs
  it; while the last lag is past the limit, requests are refused the same way.
  docs/performance.md has the measurements of both signals.
* **Connections per source.** :class:`Sources` caps the connections one client address holds
  in a worker (``service.max_connections_per_source``), so that one source's idle sockets
  cannot take the places of every other client; networks named in
  ``service.unlimited_sources`` (app backends, NAT gateways) have no cap of their own.
* **Connections in all.** At ``service.max_connections`` a newcomer takes the place of a
  connection idle on the fast lane for at least a sweep (:func:`evict_idle`); only with none
  idle is it refused.
"""

from __future__ import annotations

__all__ = [
    "ADMISSION",
    "UNSHED",
    "Admission",
    "Idle",
    "Sources",
    "evict_idle",
    "overloaded",
    "refusal_bytes",
]

import asyncio
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Protocol

from aiohttp import web

from codeengine.code.errors import Reason
from codeengine.web.answers import JSON_CONTENT_TYPE
from codeengine.web.problems import REASON

SHED_RETRY_AFTER_S = 1
LAG_PROBE_S = 0.01
"""How often the loop-lag probe runs when the lag signal is on."""
EVICT_SCAN = 64
"""Connections looked at, at most, for an idle one to close when the worker is full."""
UNSHED = frozenset({"healthz", "readyz"})
"""Operations never refused for load (see the module docstring)."""

_SHED_BODY = b'{"reason":"OVERLOADED","detail":"the service is busy; retry after 1 s"}'
_SHED_HEADERS = {"Content-Type": JSON_CONTENT_TYPE, "Retry-After": str(SHED_RETRY_AFTER_S)}


def overloaded() -> web.Response:
    """The 503 ``OVERLOADED`` problem a refused request gets (made without the JSON encoder)."""
    response = web.Response(body=_SHED_BODY, status=503, headers=_SHED_HEADERS)
    response[REASON] = Reason.OVERLOADED.value
    return response


def refusal_bytes(detail: str) -> bytes:
    """A whole 503 ``OVERLOADED`` answer that closes the connection, for a refused connection."""
    body = f'{{"reason":"OVERLOADED","detail":"{detail}"}}'.encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Content-Type: {JSON_CONTENT_TYPE}\r\n"
        f"Retry-After: {SHED_RETRY_AFTER_S}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Admission:
    """One worker's count of requests in flight and its loop's lag, and whether to refuse."""

    __slots__ = ("_probe", "in_flight", "lag_s", "lagging", "limit", "max_lag_s", "refused")

    def __init__(self, max_in_flight: int, max_lag_s: float = 0.0) -> None:
        """``max_in_flight`` 0: no limit; ``max_lag_s`` 0: the lag is not watched."""
        self.limit = max_in_flight or (1 << 62)
        self.max_lag_s = max_lag_s
        self.in_flight = 0
        self.lagging = False
        self.lag_s = 0.0
        self.refused = 0
        self._probe: asyncio.TimerHandle | None = None

    def full(self) -> bool:
        """Whether a request arriving now is refused."""
        return self.in_flight >= self.limit or self.lagging

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching the loop's lag (when a limit is set)."""
        if self.max_lag_s > 0 and self._probe is None:
            self._schedule(loop)

    def stop(self) -> None:
        """Stop the lag probe."""
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        self.lagging = False

    def note_lag(self, lag_s: float) -> None:
        """One lag reading: refuse while it is past the limit."""
        self.lag_s = lag_s
        self.lagging = lag_s > self.max_lag_s

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        due = loop.time() + LAG_PROBE_S
        self._probe = loop.call_at(due, self._probed, loop, due)

    def _probed(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self.note_lag(max(0.0, loop.time() - due))
        self._schedule(loop)


ADMISSION = web.AppKey("admission", Admission)
"""The worker's :class:`Admission`; an app without one refuses nothing."""

Network = IPv4Network | IPv6Network


class Sources:
    """Connections held per client address, up to ``cap`` each (0: no cap).

    A source's transports are kept in a list and the closed ones dropped when it reaches the
    cap, or when all lists together hold ``max_tracked`` (closed ones included): no bookkeeping
    runs when a connection closes, so neither the lane nor aiohttp needs to report it.
    """

    def __init__(self, cap: int, unlimited: Iterable[Network] = (), max_tracked: int = 0) -> None:
        self.cap = cap
        self._unlimited = tuple(unlimited)
        self._exempt: dict[str, bool] = {}
        self._held: dict[str, list[asyncio.BaseTransport]] = {}
        self._tracked = 0
        self._max_tracked = max(max_tracked, 2 * cap, 1024)

    def admit(self, host: str, transport: asyncio.BaseTransport) -> bool:
        """Count ``transport`` for ``host``; False, counting nothing, if the source is full."""
        if not self.cap or self._is_exempt(host):
            return True
        held = self._held.get(host)
        if held is None:
            held = self._held[host] = []
        elif len(held) >= self.cap:
            live = [t for t in held if not t.is_closing()]
            self._tracked -= len(held) - len(live)
            held[:] = live
            if len(held) >= self.cap:
                return False
        held.append(transport)
        self._tracked += 1
        if self._tracked > self._max_tracked:
            self._prune()
        return True

    def held(self, host: str) -> int:
        """Open connections counted for ``host``."""
        return sum(not t.is_closing() for t in self._held.get(host, ()))

    def _prune(self) -> None:
        tracked = 0
        for host, held in list(self._held.items()):
            live = [t for t in held if not t.is_closing()]
            if live:
                self._held[host] = live
                tracked += len(live)
            else:
                del self._held[host]
        self._tracked = tracked
        # Every connection open: drop less often, or each admission would scan them all.
        self._max_tracked = max(self._max_tracked, 2 * tracked)

    def _is_exempt(self, host: str) -> bool:
        if not self._unlimited:
            return False
        exempt = self._exempt.get(host)
        if exempt is None:
            try:
                address = ip_address(host.partition("%")[0])
            except ValueError:
                exempt = False
            else:
                exempt = any(address in network for network in self._unlimited)
            if len(self._exempt) < 65_536:
                self._exempt[host] = exempt
        return exempt


class Idle(Protocol):
    """What :func:`evict_idle` needs of a connection (the fast lane's ``FastLane``)."""

    @property
    def busy(self) -> bool: ...

    @property
    def idle_since(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


def evict_idle(connections: Iterable[Idle], tick: int) -> bool:
    """Close one connection idle since before ``tick``; whether one was found.

    Only the first ``EVICT_SCAN`` connections are looked at, so that a full worker pays a
    bounded price for each newcomer.
    """
    for index, connection in enumerate(connections):
        if index >= EVICT_SCAN:
            return False
        if not (connection.busy or connection.closed) and connection.idle_since < tick:
            connection.close()
            return True
    return False
