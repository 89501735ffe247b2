"""What a malformed or abandoned request leaves behind, with the fast lane on and off: a JSON
problem, nothing of the request in the log, and no server error in the metrics.

A test app stands in for the services (the service wrapper around a handler that reads its
body as they do), served by ``start_serving`` as the workers serve, with aiohttp's protocol
replaced as the worker replaces it (``codeengine.web.hygiene.install``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web, web_server
from aiohttp.web_protocol import RequestHandler

from codeengine.logs import JSONFormatter, LimitedHandler
from codeengine.settings import ServiceSettings
from codeengine.web.body import read_body
from codeengine.web.fastlane import LANE_ROUTES, HotRequest, LaneRoute, hot
from codeengine.web.hygiene import install
from codeengine.web.metrics import RequestMetrics
from codeengine.web.service import METRICS, add_service_routes
from codeengine.web.worker import Serving, start_serving
from tests.integration.test_fastlane import Conn

HANG_GUARD_S = 30.0
"""A deadline only against a hang: each wait ends as soon as what it waits for is so."""
API_KEY = "k3y-2c9f1b7e4a6d8c0b3f5e7a9c1d3b5f7e"
RESIDENT_ID = "110101199003074258"
BARE_LF = (
    b"POST /body HTTP/1.1\nHost: x\nAuthorization: Bearer " + API_KEY.encode() + b"\n"
    b"Content-Type: application/json\nContent-Length: 33\n\n"
    b'{"identifier":"' + RESIDENT_ID.encode() + b'"}'
)


@hot
async def body_length(request: HotRequest) -> web.StreamResponse:
    """The length of the body, read as the services read theirs."""
    return web.json_response({"length": len(await read_body(request))})


class Seen:
    """The request metrics of the test app, as plain counts by (operation, reason)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.answered = asyncio.Event()

    def record(self, operation: str, reason: str, seconds: float) -> None:
        self.counts[(operation, reason)] = self.counts.get((operation, reason), 0) + 1
        self.answered.set()


class CountingMetrics(RequestMetrics):
    def __init__(self, seen: Seen) -> None:
        super().__init__("hygiene-test")
        self.seen = seen

    def record(self, operation: str, reason: str, seconds: float) -> None:
        self.seen.record(operation, reason, seconds)
        super().record(operation, reason, seconds)


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """aiohttp's protocol replaced as in a worker; every log line of the test, as JSON."""
    monkeypatch.setattr(web_server, "RequestHandler", RequestHandler)  # restored after
    install()
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(JSONFormatter("test"))
    handler = LimitedHandler(target, window_s=0)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


@asynccontextmanager
async def served(seen: Seen, **overrides: Any) -> AsyncIterator[Serving]:
    service = dataclasses.replace(ServiceSettings(), **overrides)
    app = web.Application(client_max_size=service.client_max_size_bytes)
    app[METRICS] = CountingMetrics(seen)
    add_service_routes(app, [web.post("/body", body_length, name="body")], {})
    app[LANE_ROUTES] = (LaneRoute("POST", "/body", "body"),)
    serving = await start_serving(app, "127.0.0.1", 0, service)
    try:
        yield serving
    finally:
        await serving.stop()


async def read_all(conn: Conn) -> bytes:
    return await asyncio.wait_for(conn.reader.read(), HANG_GUARD_S)


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
def test_a_bare_lf_request_gets_a_json_problem_and_leaves_nothing_in_the_log(
    run: Any, quiet: io.StringIO, fast_lane: bool
) -> None:
    async def scenario() -> None:
        async with served(Seen(), fast_lane=fast_lane) as serving:
            conn = await Conn.open(serving.port)
            await conn.send(BARE_LF)
            raw = await read_all(conn)
            conn.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"400"
        assert b"content-type: application/json" in head.lower()
        assert json.loads(body) == {
            "reason": "MALFORMED_REQUEST",
            "detail": "the request is not valid HTTP/1.1",
        }
        for secret in (API_KEY.encode(), RESIDENT_ID.encode(), b"Bearer"):
            assert secret not in raw
        lines = [json.loads(line) for line in quiet.getvalue().splitlines()]
        refused = [line for line in lines if line["message"] == "malformed request refused"]
        assert [(r["reason"], r["status"]) for r in refused] == [("MALFORMED_REQUEST", 400)]
        assert API_KEY not in quiet.getvalue() and RESIDENT_ID not in quiet.getvalue()
        assert not any("exc_type" in line for line in lines)

    run(scenario())


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
def test_a_body_over_the_limit_gets_413_as_a_json_problem(run: Any, fast_lane: bool) -> None:
    async def scenario() -> None:
        async with served(Seen(), fast_lane=fast_lane, client_max_size_bytes=1000) as serving:
            conn = await Conn.open(serving.port)
            body = b"x" * 1001
            head = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"
            await conn.send(head + body)
            status, _, answer = await conn.response()
            assert (status, json.loads(answer)["reason"]) == (413, "BODY_TOO_LARGE")
            await conn.send(head.replace(b"1001", b"1000") + body[:1000])
            status, _, answer = await conn.response()
            assert (status, json.loads(answer)) == (200, {"length": 1000})
            conn.close()

    run(scenario())


def test_a_client_gone_mid_body_is_counted_as_client_closed_not_internal(
    run: Any, quiet: io.StringIO
) -> None:
    async def scenario() -> None:
        seen = Seen()  # made on the scenario's loop, as its event must be
        async with served(seen, fast_lane=False) as serving:
            conn = await Conn.open(serving.port)
            await conn.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n12345")
            conn.writer.transport.abort()
            await asyncio.wait_for(seen.answered.wait(), HANG_GUARD_S)
        assert seen.counts == {("body", "CLIENT_CLOSED"): 1}
        assert "exc_type" not in quiet.getvalue() and "unhandled" not in quiet.getvalue()

    run(scenario())


def test_a_client_gone_mid_body_on_the_lane_is_not_a_request(run: Any) -> None:
    async def scenario() -> None:
        seen = Seen()
        async with served(seen, fast_lane=True) as serving:
            conn = await Conn.open(serving.port)
            await conn.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n12345")
            conn.writer.transport.abort()
            # A complete request on a new connection: counted, and the only one counted.
            conn = await Conn.open(serving.port)
            await conn.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            status, _, _ = await conn.response()
            conn.close()
        assert status == 200
        assert seen.counts == {("body", "OK"): 1}

    run(scenario())
