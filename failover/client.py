"""The failover client that app backends and terminals use to reach one service of a city.

It holds the city's primary and backup URLs (from the city table), probes both ``/readyz``
every ``probe_interval_s``, and sends each request to the endpoint the :class:`Router` picks.
An attempt that never reaches its endpoint (connection refused) or meets one that does not hold
the city's write lease (503 ``NOT_WRITER``: nothing was applied) goes to the other endpoint at
once. An attempt whose outcome is unknown (no answer, a timeout, a gateway error 502/504) is
sent again only if the request is idempotent: reads, and writes with an ``op_id`` or an
``Idempotency-Key`` (the engine applies those once); the caller can say so for others, such as
a scan, whose resend at worst logs it twice. A 503 of the store itself (``STORE_UNAVAILABLE``,
``NOT_REPLICATED``) is not the endpoint's fault: an idempotent request is retried on the same
endpoint every 0.25 s while its budget lasts.

A 503 ``OVERLOADED`` with ``Retry-After`` (a busy worker refused the request before doing any
of it, so any request may go again) keeps the client off that endpoint until the Retry-After
has passed, in this request and in the ones after it: the request goes to the other endpoint if
that one has not asked to wait too, or waits, within its budget, until an endpoint may be tried
again. If the budget ends first, the refusal is the answer. A refusal is an answer from a live
endpoint: it does not count against its breaker.

Every wait honours the ``Retry-After`` the answer named (a store 503 and a 429
``RATE_LIMITED`` too: a request refused by its rate was not worked on either, so any request
waits it out on the same endpoint) and adds jitter on top (:mod:`failover.retry`), drawn from
the client's ``random`` source. A ``Retry-After`` that ends past the budget is not waited for:
the refusal is the answer at once, and carries the wait for the caller.

:mod:`failover.services` adds the typed calls app backends make (generate, display, convert,
verify, verify batch), which raise one exception per reason code (:mod:`failover.errors`).

Every switch is logged (city, service, from, to, why) and counted in
``codeengine_failover_switches_total``; ``codeengine_failover_active`` shows the endpoint in use.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_BACKOFF",
    "MAX_RETRY_AFTER_S",
    "Answer",
    "ClientOptions",
    "FailoverClient",
    "new_request_id",
]

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from random import random as _uniform
from typing import Any, TypedDict

import aiohttp
from prometheus_client import Counter, Gauge

from codeengine.code.breaker import Breaker
from codeengine.code.cities import City
from codeengine.code.fencing import Role
from codeengine.code.secret import Secret
from failover.errors import REQUEST_ID_HEADER, ServiceProblem, problem_from
from failover.retry import MAX_RETRY_AFTER_S, Backoff, retry_after_s
from failover.router import Outcome, Router, SwitchEvent

log = logging.getLogger("codeengine.failover")

SWITCHES = Counter(
    "codeengine_failover_switches_total",
    "Switches of a client between a city's endpoints, by city, service and new endpoint.",
    ["city", "service", "to"],
)
ACTIVE = Gauge(
    "codeengine_failover_active",
    "The endpoint a client uses: 0 primary, 1 backup.",
    ["city", "service"],
    multiprocess_mode="max",
)
ATTEMPTS = Counter(
    "codeengine_failover_attempts_total",
    "Attempts of a failover client, by city, service, endpoint and outcome.",
    ["city", "service", "endpoint", "outcome"],
)

_FALL_OVER_STATUS = {502, 504}
_FALL_OVER_REASONS = {"NOT_WRITER"}
_STORE_REASONS = {"STORE_UNAVAILABLE", "NOT_REPLICATED"}
_ENDPOINT_REASONS = {"KEYRING"}
"""503 reasons that are the endpoint's own fault (its keys are not loaded, or none is valid):
the other endpoint, which reads the same keyring, may well have them."""
_OVERLOADED = "OVERLOADED"
_RATE_LIMITED = "RATE_LIMITED"
_DONE, _OTHER, _WAIT = "done", "other", "wait"
_MARGIN_S = 0.05
"""A wait that would end this close to the deadline leaves no time for an answer."""
_MIN_WAIT_S = 0.01
DEFAULT_BACKOFF = Backoff()
"""Jitter from 0.1 s, doubling with each retry of a request, at most 2 s."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer, and which endpoint gave it."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    endpoint: Role
    attempts: int
    reason: str
    """The problem body's reason code, or "" (not a problem body); read once from the body."""
    sent_request_id: str = ""
    """The ``X-Request-Id`` every attempt of the request carried."""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def request_id(self) -> str | None:
        """The ``X-Request-Id`` the service answered with, else the one the request carried."""
        return self.headers.get(REQUEST_ID_HEADER) or self.sent_request_id or None

    @property
    def retry_after_s(self) -> float | None:
        """The ``Retry-After`` the service named, in seconds (at most ``MAX_RETRY_AFTER_S``)."""
        return retry_after_s(self.headers)

    def problem(self) -> ServiceProblem | None:
        """The exception of its reason code if this is an error answer (status 400 and up)."""
        if self.status < 400:
            return None
        try:
            document = json.loads(self.body)
        except ValueError:
            document = None
        return problem_from(
            self.status, document, self.headers, self.endpoint, self.sent_request_id or None
        )

    def raise_for_problem(self) -> Answer:
        """This answer if it is not an error; else raise the exception of its reason code."""
        problem = self.problem()
        if problem is not None:
            raise problem
        return self


class ClientOptions(TypedDict, total=False):
    """The keyword options of :class:`FailoverClient`, for the typed clients built on it."""

    attempt_timeout_s: float
    budget_s: float
    probe_interval_s: float
    breaker: Callable[[], Breaker]
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]
    backoff: Backoff
    api_key: str | Secret | None


def new_request_id() -> str:
    """A request id for ``X-Request-Id``: a UUID with its dashes, which the services keep as
    the id of their log lines (a run of 18 letters and digits would look like a resident ID
    to them, and be replaced)."""
    return str(uuid.uuid4())


def _with_request_id(headers: Mapping[str, str] | None) -> tuple[dict[str, str], str]:
    """``headers`` with an ``X-Request-Id`` (the caller's, else a new one), and that id."""
    given = dict(headers or {})
    for name, value in given.items():
        if name.lower() == REQUEST_ID_HEADER.lower():
            return given, value
    request_id = new_request_id()
    given[REQUEST_ID_HEADER] = request_id
    return given, request_id


def _idempotent(method: str, json_body: Any, headers: Mapping[str, str] | None) -> bool:
    if method.upper() in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"):
        return True
    if isinstance(json_body, dict) and "op_id" in json_body:
        return True
    return headers is not None and any(k.lower() == "idempotency-key" for k in headers)


def _reason(status: int, body: bytes) -> str:
    if status < 400:
        return ""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    return str(document.get("reason", "")) if isinstance(document, dict) else ""


class FailoverClient:
    """One service (``issuer`` or ``verifier``) of one city, with failover; see the module."""

    def __init__(
        self,
        city: City,
        service: str,
        session: aiohttp.ClientSession,
        *,
        attempt_timeout_s: float = 2.0,
        budget_s: float = 5.0,
        probe_interval_s: float = 0.5,
        breaker: Callable[[], Breaker] = Breaker,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _uniform,
        backoff: Backoff = DEFAULT_BACKOFF,
        api_key: str | Secret | None = None,
    ) -> None:
        """``clock`` and ``sleep`` are the client's time, ``random`` (uniform in [0, 1)) its
        jitter: a test passes its own. ``api_key`` goes as ``Authorization: Bearer`` on every
        request that does not bring its own header."""
        primary, backup = city.endpoints(service)
        self.urls = {Role.PRIMARY: primary, Role.BACKUP: backup}
        self.city, self.service = city.code, service
        self._session = session
        self._attempt_timeout_s = attempt_timeout_s
        self._budget_s = budget_s
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._backoff = backoff
        if isinstance(api_key, str):
            api_key = Secret(api_key.encode())
        self._api_key = api_key
        self._refusal: Answer | None = None
        """The last refusal for load, the answer when every endpoint asks to wait too long."""
        self.router = Router(breaker(), breaker())
        self.attempt_log: collections.Counter[tuple[str, str]] = collections.Counter()
        """Attempts by endpoint and what they met (a status and reason, or "no answer")."""
        self._probe_task: asyncio.Task[None] | None = None
        self._active_gauge = ACTIVE.labels(str(city.code), service)
        self._active_gauge.set(0)

    @property
    def active(self) -> Role:
        return self.router.active

    # Requests.

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Answer:
        """Send the request with failover; the last answer, or the last error if none came.

        ``idempotent`` says whether the request may be sent again after an attempt whose
        outcome is unknown (no answer, a timeout, a gateway error, a store 503). By default,
        reads are, and writes are when they carry an ``op_id`` or an ``Idempotency-Key``.
        Whatever it says, a request that never reached an endpoint (connection refused) or was
        refused with ``NOT_WRITER`` or ``OVERLOADED`` (nothing applied) goes to the other
        endpoint; after ``OVERLOADED`` not to the same one before its Retry-After. One refused
        with 429 ``RATE_LIMITED`` waits its Retry-After and goes again. Every wait adds jitter;
        none ends past the budget.
        """
        if idempotent is None:
            idempotent = _idempotent(method, json_body, headers)
        # One id for every attempt, primary and backup alike: their log lines share it.
        headers, request_id = _with_request_id(headers)
        deadline = self._clock() + self._budget_s
        attempts = retries = 0
        answer: Answer | None = None
        error: BaseException | None = None
        while True:
            # The Retry-After of an endpoint that asked this request to come back to it.
            asked_s: float | None = None
            for role in self.router.order(self._clock()):
                left = deadline - self._clock()
                if left <= 0:
                    break
                attempts += 1
                try:
                    status, body, answer_headers = await self._attempt(
                        role, method, path, json_body, headers, min(left, self._attempt_timeout_s)
                    )
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    error = exc
                    self.attempt_log[(role.value, "no answer")] += 1
                    self._report(role, Outcome.FAILED, "no answer")
                    if idempotent or isinstance(exc, aiohttp.ClientConnectorError):
                        continue
                    raise
                reason = _reason(status, body)
                answer = Answer(status, body, answer_headers, role, attempts, reason, request_id)
                verdict = self._judge(answer, idempotent)
                if verdict == _OTHER:
                    continue
                if verdict == _DONE:
                    return answer
                asked_s = answer.retry_after_s or 0.0
                break
            now = self._clock()
            # Later than now if every endpoint asked to wait (Retry-After).
            free_at = self.router.free_at(now)
            floor_s = max(free_at - now, 0.0) if asked_s is None else asked_s
            if now + floor_s >= deadline - _MARGIN_S:
                return self._past_budget(answer, error, attempts, request_id, held=free_at > now)
            delay_s = self._backoff.delay_within_s(retries, self._random(), floor_s, deadline - now)
            # A draw near 0 must not spin: the wait is never under _MIN_WAIT_S (below the margin,
            # so never past the deadline either).
            await self._sleep(max(delay_s, _MIN_WAIT_S))
            retries += 1

    def _past_budget(
        self,
        answer: Answer | None,
        error: BaseException | None,
        attempts: int,
        request_id: str,
        *,
        held: bool,
    ) -> Answer:
        """What a request ends with when no endpoint may be tried again within its budget: its
        last answer, else the last refusal for load if every endpoint still asks to wait
        (``held``), else its last error."""
        if answer is None and held and self._refusal is not None:
            answer = replace(self._refusal, attempts=attempts, sent_request_id=request_id)
        if answer is None:
            raise error or TimeoutError("failover budget spent")
        return answer

    def _judge(self, answer: Answer, idempotent: bool) -> str:
        """What to do after an answer: return it, try the other endpoint, or wait and retry."""
        role, status, reason = answer.endpoint, answer.status, answer.reason
        self.attempt_log[(role.value, f"{status} {reason}".rstrip())] += 1
        if status in _FALL_OVER_STATUS:
            self._report(role, Outcome.FAILED, f"status {status}")
            return _OTHER if idempotent else _DONE
        if reason in _FALL_OVER_REASONS:
            return _OTHER  # the other endpoint holds the city's writes: not a failure
        if status == 503 and reason in _ENDPOINT_REASONS:
            self._report(role, Outcome.FAILED, reason)
            return _OTHER if idempotent else _DONE
        if reason == _OVERLOADED and status == 503:
            wait_s = answer.retry_after_s
            if wait_s is not None:
                self._report(role, Outcome.OK, "answered")
                self.router.hold_off(role, self._clock() + wait_s)
                self._refusal = answer
                return _OTHER
        self._report(role, Outcome.OK, "answered")
        if reason == _RATE_LIMITED and status == 429 and answer.retry_after_s is not None:
            return _WAIT  # refused before any work, as OVERLOADED; its rate is per client
        return _WAIT if reason in _STORE_REASONS and idempotent else _DONE

    async def _attempt(
        self,
        role: Role,
        method: str,
        path: str,
        json_body: Any,
        headers: Mapping[str, str] | None,
        timeout_s: float,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        if self._api_key is not None and not (
            headers and any(k.lower() == "authorization" for k in headers)
        ):
            bearer = f"Bearer {self._api_key.reveal().decode()}"
            headers = {**(headers or {}), "Authorization": bearer}
        async with self._session.request(
            method, self.urls[role] + path, json=json_body, headers=headers, timeout=timeout
        ) as response:
            return response.status, await response.read(), response.headers

    def _report(self, role: Role, outcome: Outcome, what: str) -> None:
        ATTEMPTS.labels(str(self.city), self.service, role.value, outcome.value).inc()
        event = self.router.report(role, outcome, self._clock())
        if event is not None:
            self._switched(event, what)

    def _switched(self, event: SwitchEvent, what: str) -> None:
        SWITCHES.labels(str(self.city), self.service, event.to.value).inc()
        self._active_gauge.set(0 if event.to is Role.PRIMARY else 1)
        log.warning(
            "city %s %s: switched %s -> %s (%s; last: %s)",
            self.city,
            self.service,
            event.source,
            event.to,
            event.why,
            what,
        )

    # Probes.

    async def probe(self, role: Role) -> bool:
        """One readiness probe of ``role``, fed to its breaker; whether it was ready."""
        timeout = aiohttp.ClientTimeout(total=min(1.0, self._attempt_timeout_s))
        try:
            async with self._session.get(self.urls[role] + "/readyz", timeout=timeout) as r:
                ready = r.status == 200
                await r.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            ready = False
        self._report(role, Outcome.OK if ready else Outcome.FAILED, "probe")
        return ready

    async def _probe_forever(self) -> None:
        while True:
            now = self._clock()
            due = [role for role in Role if self.router.probe_due(role, now)]
            await asyncio.gather(*(self.probe(role) for role in due))
            await asyncio.sleep(self._probe_interval_s)

    def start(self) -> None:
        """Start probing both endpoints in the background."""
        self._probe_task = asyncio.get_running_loop().create_task(self._probe_forever())

    async def stop(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
