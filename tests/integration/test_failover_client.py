"""The failover client against two real HTTP endpoints whose answers the test decides.

The endpoints are small aiohttp servers on loopback, standing in for a city's primary and
backup: each counts what reached it and answers as told (ready or not, a status and reason, a
stall). What is under test is the client: where it sends, what it resends, when it switches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
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


@dataclass
class Endpoint:
    """One stand-in endpoint: how it answers, and what reached it."""

    ready: bool = True
    status: int = 200
    reason: str = ""
    stall_s: float = 0.0
    hits: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        async def readyz(request: web.Request) -> web.Response:
            return web.json_response({}, status=200 if self.ready else 503)

        async def anything(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path}")
            if self.stall_s:
                await asyncio.sleep(self.stall_s)
            body = {"reason": self.reason} if self.reason else {"ok": True}
            return web.json_response(body, status=self.status)

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
        primary, backup = Endpoint(stall_s=1.0), Endpoint()
        async with city_of(primary, backup, attempt_timeout_s=0.2, budget_s=2.0) as client:
            with pytest.raises(TimeoutError):
                await client.request("POST", "/v1/appeals", json_body={"reason": "x"})
            assert primary.hits == ["POST /v1/appeals"] and backup.hits == []
            primary.stall_s, primary.status = 0.0, 504
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


def test_a_store_503_is_waited_out_on_the_same_endpoint(run: Any) -> None:
    async def scenario() -> None:
        primary, backup = Endpoint(status=503, reason="STORE_UNAVAILABLE"), Endpoint()
        async with city_of(primary, backup, budget_s=3.0) as client:

            async def heal() -> None:
                await asyncio.sleep(0.4)
                primary.status, primary.reason = 200, ""

            healing = asyncio.create_task(heal())
            answer = await client.request("GET", "/v1/subjects/x/code")
            await healing
            assert (answer.status, answer.endpoint) == (200, Role.PRIMARY)
            assert backup.hits == [] and len(primary.hits) >= 2

    run(scenario())


async def becomes(client: FailoverClient, role: Role, within_s: float) -> bool:
    """Whether the client's active endpoint is ``role`` within ``within_s``."""
    for _ in range(int(within_s / 0.05)):
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
            assert await becomes(client, Role.BACKUP, within_s=2.0)
            primary.ready = True
            assert await becomes(client, Role.PRIMARY, within_s=3.0)
            events = [(e.source, e.to) for e in client.router.switches]
            assert events == [(Role.PRIMARY, Role.BACKUP), (Role.BACKUP, Role.PRIMARY)]
            assert json.loads((await client.request("GET", "/x")).body) == {"ok": True}

    run(scenario())
