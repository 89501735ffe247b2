"""The failover client against two real HTTP endpoints whose answers the test decides.

The endpoints are small aiohttp servers on loopback, standing in for a city's primary and
backup: each counts what reached it and answers as told (ready or not, a status and reason, a
stall). What is under test is the client: where it sends, what it resends, when it switches.

Nothing here waits a set time for something to happen: an endpoint changes its answers after
so many hits, a stalled one never answers, and a switch is waited for with a deadline that is
only a guard against a hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from codeengine.code.breaker import Breaker
from codeengine.code.cities import Endpoints, load_cities
from codeengine.code.fencing import Role
from codeengine.code.model import CityCode
from failover.client import FailoverClient

HANG_GUARD_S = 30.0
"""A deadline only against a hang: every wait here ends as soon as what it waits for is so."""


@dataclass
class Endpoint:
    """One stand-in endpoint: how it answers, and what reached it."""

    ready: bool = True
    status: int = 200
    reason: str = ""
    stalls: bool = False
    """Never answers (until the server stops): the client can only give up on it."""
    healed_at_hit: int = 0
    """From this hit on (if not 0), answers 200 with no reason, as a store that came back."""
    retry_after: str = ""
    """The Retry-After header of its answers, if any."""
    hits: list[str] = field(default_factory=list)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def readyz(request: web.Request) -> web.Response:
            return web.json_response({}, status=200 if self.ready else 503)

        async def anything(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path}")
            self.reached.set()
            if self.healed_at_hit and len(self.hits) >= self.healed_at_hit:
                self.status, self.reason = 200, ""
            if self.stalls:
                await asyncio.Event().wait()
            body = {"reason": self.reason} if self.reason else {"ok": True}
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response(body, status=self.status, headers=headers)

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


@asynccontextmanager
async def city_of(
    primary: Endpoint, backup: Endpoint, **options: Any
) -> AsyncIterator[FailoverClient]:
    async with TestServer(primary.app()) as p, TestServer(backup.app()) as b:
        city = dataclasses.replace(
            load_cities()[CityCode(320100)],
            primary=Endpoints(str(p.make_url("")).rstrip("/"), "http://127.0.0.1:9"),
            backup=Endpoints(str(b.make_url("")).rstrip("/"), "http://127.0.0.1:9"),
        )
        async with aiohttp.ClientSession() as session:

            def breaker() -> Breaker:
                return Breaker(failures_to_open=2, open_for_s=0.3, successes_to_close=2)

            client = FailoverClient(
                city, "issuer", session, breaker=breaker, probe_interval_s=0.05, **options
            )
            yield client
            await client.stop()


def test_a_primary_that_answers_502_sends_reads_and_op_id_writes_to_the_backup(run: Any) -> None:
    async def scenario() -> None:
        primary, backup = Endpoint(status=502), Endpoint()
        async with city_of(primary, backup) as client:
            read = await client.request("GET", "/v1/subjects/x/code")
            assert (read.status, read.endpoint) == (200, Role.BACKUP)
            write = await client.request("POST", "/v1/subjects/x/status", json_body={"op_id": "a"})
            assert (write.status, write.endpoint) == (200, Role.BACKUP)
            assert client.active is Role.BACKUP, "two gateway errors open the primary's breaker"

    run(scenario())


def test_a_write_without_an_operation_id_is_not_sent_twice_after_an_unknown_outcome(
    run: Any,
) -> None:
    async def scenario() -> None:
        primary, backup = Endpoint(stalls=True), Endpoint()
        async with city_of(primary, backup, attempt_timeout_s=1.0, budget_s=2.0) as client:
            with pytest.raises(TimeoutError):
                await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            # The server may take its time to read what the client sent before giving up.
            await asyncio.wait_for(primary.reached.wait(), HANG_GUARD_S)
            assert primary.hits == ["POST /v1/appeals"] and backup.hits == []
            primary.stalls, primary.status = False, 504
            answer = await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            assert answer.status == 504 and backup.hits == [], "a gateway error may have applied"
            explicit = await client.request(
                "POST", "/v1/appeals", json_body={"reason": "x"}, idempotent=True
            )
            assert (explicit.status, explicit.endpoint) == (200, Role.BACKUP)

    run(scenario())


def test_not_writer_goes_to_the_other_endpoint_even_for_a_plain_write(run: Any) -> None:
    async def scenario() -> None:
        primary, backup = Endpoint(status=503, reason="NOT_WRITER"), Endpoint()
        async with city_of(primary, backup) as client:
            answer = await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            assert (answer.status, answer.endpoint) == (200, Role.BACKUP)
            assert len(primary.hits) == 1 and len(backup.hits) == 1
            assert client.active is Role.PRIMARY, "a redirect is not a failure of the endpoint"

    run(scenario())


def test_an_endpoint_without_its_keys_sends_idempotent_calls_to_the_other(run: Any) -> None:
    async def scenario() -> None:
        primary, backup = Endpoint(status=503, reason="KEYRING"), Endpoint()
        async with city_of(primary, backup) as client:
            read = await client.request("GET", "/v1/subjects/x/code")
            assert (read.status, read.endpoint) == (200, Role.BACKUP)
            write = await client.request("POST", "/v1/subjects/x/status", json_body={"op_id": "a"})
            assert (write.status, write.endpoint) == (200, Role.BACKUP)
            assert client.active is Role.BACKUP, "two KEYRING answers open the primary's breaker"
        # A plain write may have done work before the keys were needed: not sent twice.
        primary, backup = Endpoint(status=503, reason="KEYRING"), Endpoint()
        async with city_of(primary, backup) as client:
            plain = await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            assert (plain.status, plain.reason, plain.endpoint) == (503, "KEYRING", Role.PRIMARY)
            assert backup.hits == []

    run(scenario())


def test_a_store_503_is_waited_out_on_the_same_endpoint(run: Any) -> None:
    async def scenario() -> None:
        primary = Endpoint(status=503, reason="STORE_UNAVAILABLE", healed_at_hit=3)
        backup = Endpoint()
        # The budget only bounds a hang: the store comes back at the third attempt.
        async with city_of(primary, backup, budget_s=HANG_GUARD_S) as client:
            answer = await client.request("GET", "/v1/subjects/x/code")
            assert (answer.status, answer.endpoint) == (200, Role.PRIMARY)
            assert backup.hits == [] and len(primary.hits) == 3

    run(scenario())


class Clock:
    """The client's time: moves only when the client sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def overloaded(retry_after: str = "1", healed_at_hit: int = 0) -> Endpoint:
    return Endpoint(
        status=503, reason="OVERLOADED", retry_after=retry_after, healed_at_hit=healed_at_hit
    )


def test_an_overloaded_endpoint_is_left_alone_until_its_retry_after(run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        primary, backup = overloaded(healed_at_hit=2), Endpoint()
        async with city_of(primary, backup, clock=clock, sleep=clock.sleep) as client:
            # Refused before any work: even a plain write goes to the other endpoint.
            answer = await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            assert (answer.status, answer.endpoint) == (200, Role.BACKUP)
            clock.now += 0.9
            answer = await client.request("GET", "/v1/subjects/x/code")
            assert (answer.status, answer.endpoint) == (200, Role.BACKUP)
            assert len(primary.hits) == 1, "not asked again before its Retry-After"
            clock.now += 0.1
            answer = await client.request("GET", "/v1/subjects/x/code")
            assert (answer.status, answer.endpoint) == (200, Role.PRIMARY)
            assert (len(primary.hits), len(backup.hits), clock.sleeps) == (2, 2, [])
            assert client.active is Role.PRIMARY, "a busy endpoint is not a failing one"

    run(scenario())


def draws(*values: float) -> Callable[[], float]:
    """The client's random source: ``values`` in order (more draws than given fail the test)."""
    source = iter(values)
    return lambda: next(source)


def test_with_both_endpoints_overloaded_the_client_waits_their_retry_after(run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        primary, backup = overloaded("2", healed_at_hit=2), overloaded("1")
        async with city_of(
            primary, backup, clock=clock, sleep=clock.sleep, random=draws(0.5, 0.5)
        ) as client:
            answer = await client.request("GET", "/v1/subjects/x/code")
            # The backup is free again first, after 1 s: the client waits that plus half the
            # first retry's jitter range (0.1 s). The backup refuses again; the primary is free
            # 0.95 s later, plus half the second range (0.2 s), and answers.
            assert (answer.status, answer.endpoint) == (200, Role.PRIMARY)
            assert clock.sleeps == [pytest.approx(1.05), pytest.approx(1.05)]
            assert (len(primary.hits), len(backup.hits)) == (2, 2)

    run(scenario())


def test_a_store_503_is_retried_after_its_retry_after_plus_jitter_and_only_if_idempotent(
    run: Any,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        primary = Endpoint(status=503, reason="STORE_UNAVAILABLE", retry_after="1")
        async with city_of(
            primary, Endpoint(), clock=clock, sleep=clock.sleep, random=draws(0.25)
        ) as client:
            plain = await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            assert (plain.status, plain.reason, clock.sleeps) == (503, "STORE_UNAVAILABLE", [])
            primary.healed_at_hit = len(primary.hits) + 2
            read = await client.request("GET", "/v1/subjects/x/code")
            assert (read.status, read.endpoint, read.attempts) == (200, Role.PRIMARY, 2)
            assert clock.sleeps == [pytest.approx(1.0 + 0.25 * 0.1)]

    run(scenario())


def test_a_store_retry_after_past_the_budget_makes_the_503_the_answer_at_once(
    run: Any,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        primary = Endpoint(status=503, reason="STORE_UNAVAILABLE", retry_after="10")
        async with city_of(
            primary, Endpoint(), clock=clock, sleep=clock.sleep, random=draws()
        ) as client:
            answer = await client.request("GET", "/v1/subjects/x/code")
            assert (answer.status, answer.retry_after_s, answer.attempts) == (503, 10.0, 1)
            assert clock.sleeps == [] and len(primary.hits) == 1

    run(scenario())


def test_a_retry_after_beyond_the_budget_makes_the_refusal_the_answer(run: Any) -> None:
    async def scenario() -> None:
        clock = Clock()
        primary, backup = overloaded("30"), overloaded("30")
        async with city_of(primary, backup, clock=clock, sleep=clock.sleep) as client:
            answer = await client.request("GET", "/v1/subjects/x/code")
            assert (answer.status, answer.reason, answer.attempts) == (503, "OVERLOADED", 2)
            clock.now += 1.0
            again = await client.request("GET", "/v1/subjects/x/code")
            assert (again.status, again.reason, again.attempts) == (503, "OVERLOADED", 0)
            assert (len(primary.hits), len(backup.hits), clock.sleeps) == (1, 1, [])

    run(scenario())


async def becomes(client: FailoverClient, role: Role) -> bool:
    """Whether the client's active endpoint becomes ``role`` (polled, up to the hang guard)."""
    for _ in range(int(HANG_GUARD_S / 0.05)):
        if client.active is role:
            return True
        await asyncio.sleep(0.05)
    return client.active is role


def test_probes_move_an_idle_client_and_bring_it_back_with_hysteresis(run: Any) -> None:
    async def scenario() -> None:
        primary, backup = Endpoint(), Endpoint()
        async with city_of(primary, backup) as client:
            client.start()
            primary.ready = False
            assert await becomes(client, Role.BACKUP)
            primary.ready = True
            assert await becomes(client, Role.PRIMARY)
            events = [(e.source, e.to) for e in client.router.switches]
            assert events == [(Role.PRIMARY, Role.BACKUP), (Role.BACKUP, Role.PRIMARY)]
            assert json.loads((await client.request("GET", "/x")).body) == {"ok": True}

    run(scenario())
