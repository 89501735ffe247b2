"""Admission over real sockets: the in-flight limit on the lane and on aiohttp, the per-source
connection cap, the idle eviction at the global cap, and ``/metrics`` on its own port.

Requests are held in flight by a handler that waits on an event the test sets, never by time.
Client sockets of the "other" source bind to 127.0.0.2 (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY

from codeengine.settings import ServiceSettings
from codeengine.web.fastlane import LANE_ROUTES, HotRequest, LaneRoute, hot
from codeengine.web.metrics import METRICS_CACHE, MetricsCache, RequestMetrics
from codeengine.web.service import METRICS, add_service_routes
from codeengine.web.worker import Serving, start_serving
from tests.integration.test_fastlane import Conn, get, on_lane, within

RELEASE = web.AppKey("release", asyncio.Event)
CROWD = "127.0.0.2"
"""The source that opens many connections; the test's other client comes from 127.0.0.1."""


@hot
async def held(request: HotRequest) -> web.StreamResponse:
    """Answers once the test releases it: a request in flight for as long as the test wants."""
    await request.app[RELEASE].wait()
    return web.json_response({"held": True})


@hot
async def quick(request: HotRequest) -> web.StreamResponse:
    return web.json_response({"quick": True})


async def plain(request: web.Request) -> web.StreamResponse:
    """A route aiohttp serves (not on the lane)."""
    return web.json_response({"plain": True})


async def plain_held(request: web.Request) -> web.StreamResponse:
    await request.app[RELEASE].wait()
    return web.json_response({"held": True})


def make_app() -> web.Application:
    app = web.Application()
    app[METRICS] = RequestMetrics("admission-test")
    app[RELEASE] = asyncio.Event()
    app[METRICS_CACHE] = MetricsCache(lambda: b"# the test's metrics\n", 1.0, lambda: 0.0)
    routes = [
        web.get("/held", held, name="held"),
        web.get("/quick", quick, name="quick"),
        web.get("/healthz", quick, name="healthz"),
        web.get("/plain", plain, name="plain"),
        web.get("/plain-held", plain_held, name="plain_held"),
    ]
    add_service_routes(app, routes, {})
    app[LANE_ROUTES] = (
        LaneRoute("GET", "/held", "held"),
        LaneRoute("GET", "/quick", "quick"),
        LaneRoute("GET", "/healthz", "healthz"),
    )
    return app


@asynccontextmanager
async def served(management_port: int = 0, **overrides: Any) -> AsyncIterator[Serving]:
    service = dataclasses.replace(ServiceSettings(), **overrides)
    serving = await start_serving(
        make_app(), "127.0.0.1", 0, service, management_port=management_port
    )
    try:
        yield serving
    finally:
        serving.runner.app[RELEASE].set()
        await serving.stop()


def refusals(why: str) -> float:
    """Connections refused so far for ``why`` (the metric as Prometheus reads it)."""
    return REGISTRY.get_sample_value("codeengine_connections_refused_total", {"why": why}) or 0.0


async def open_from(host: str, port: int) -> Conn:
    return Conn(*await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0)))


def test_past_the_in_flight_limit_requests_are_refused_at_once_with_retry_after(run: Any) -> None:
    async def scenario() -> None:
        async with served(max_in_flight=2) as serving:
            admission = serving.admission
            first, second = await Conn.open(serving.port), await Conn.open(serving.port)
            await first.send(get("/held"))
            await second.send(get("/plain-held"))  # one on the lane, one on aiohttp
            assert await within(lambda: admission.in_flight == 2)

            late = await Conn.open(serving.port)
            for path, lane in (("/quick", True), ("/plain", False)):
                await late.send(get(path))
                status, headers, body = await late.response()
                assert status == 503, path
                assert headers["retry-after"] == "1"
                assert headers["content-type"].startswith("application/json")
                assert json.loads(body)["reason"] == "OVERLOADED"
                assert on_lane(headers) is lane, path
            # Health checks are never refused for load; and nothing refused counts in flight.
            await late.send(get("/healthz"))
            assert (await late.response())[0] == 200
            assert admission.in_flight == 2 and admission.refused == 2

            serving.runner.app[RELEASE].set()
            assert (await first.response())[0] == 200
            assert (await second.response())[0] == 200
            assert await within(lambda: admission.in_flight == 0)
            await late.send(get("/quick"))
            assert (await late.response())[0] == 200, "served again once the load is gone"
            for conn in (first, second, late):
                conn.close()

    run(scenario())


def test_a_loop_lag_past_the_limit_refuses_requests_until_it_passes(run: Any) -> None:
    async def scenario() -> None:
        async with served(max_in_flight=0, max_loop_lag_ms=50) as serving:
            conn = await Conn.open(serving.port)
            # The probe's reading, given as the timer would give it.
            serving.admission.note_lag(0.2)
            await conn.send(get("/quick"))
            assert (await conn.response())[0] == 503
            serving.admission.note_lag(0.001)
            await conn.send(get("/quick"))
            assert (await conn.response())[0] == 200
            conn.close()

    run(scenario())


def _raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_two_thousand_idle_sockets_from_one_source_do_not_lock_out_another(run: Any) -> None:
    # Both ends of every socket live in this process.
    _raise_open_files(2 * 2_000 + 512)

    async def scenario() -> None:
        async with served(max_connections=1_000, max_connections_per_source=500) as serving:
            assert serving.lanes is not None
            lanes = serving.lanes
            refused_before = refusals("source")
            crowd: list[Conn] = []
            for _ in range(20):
                crowd += await asyncio.gather(*(open_from(CROWD, serving.port) for _ in range(100)))
            # Each of the crowd's sockets is either held or refused (503, then closed).
            reads = [asyncio.ensure_future(conn.reader.read()) for conn in crowd]
            assert await within(lambda: sum(r.done() for r in reads) == 1_500)
            refused = [r.result() for r in reads if r.done()]
            assert all(b" 503 " in answer and b"OVERLOADED" in answer for answer in refused)
            assert len(lanes.connections) == 500
            assert serving.sources.held(CROWD) == 500
            assert refusals("source") == refused_before + 1_500

            other = await Conn.open(serving.port)
            await other.send(get("/quick"))
            status, _, body = await other.response()
            assert (status, json.loads(body)) == (200, {"quick": True})

            # A closed socket gives its place back to its source.
            for conn in crowd:
                conn.close()
            assert await within(lambda: len(lanes.connections) == 1)
            again = await open_from(CROWD, serving.port)
            await again.send(get("/quick"))
            assert (await again.response())[0] == 200
            for task in reads:
                task.cancel()
            for conn in (other, again):
                conn.close()

    run(scenario())


def test_at_the_global_cap_a_newcomer_takes_the_place_of_an_idle_connection(run: Any) -> None:
    async def scenario() -> None:
        async with served(max_connections=20, max_connections_per_source=0) as serving:
            assert serving.lanes is not None
            lanes = serving.lanes
            # The test ticks the keep-alive clock itself (Lanes' timer would tick every second).
            lanes._sweep_timer = False
            busy = await Conn.open(serving.port)
            await busy.send(get("/held"))

            assert await within(lambda: serving.admission.in_flight == 1)
            idle = [await open_from(CROWD, serving.port) for _ in range(19)]
            assert await within(lambda: len(lanes.connections) == 20)

            # None has been idle for a sweep yet: the newcomer is refused.
            early = await Conn.open(serving.port)
            status, _, body = await early.response()
            assert status == 503 and json.loads(body)["reason"] == "OVERLOADED"
            assert await early.closed(within_s=30)

            assert refusals("full") >= 1
            evicted = REGISTRY.get_sample_value("codeengine_connections_evicted_total") or 0.0
            lanes.sweep()  # a tick of the keep-alive clock, as the timer gives every second
            newcomer = await Conn.open(serving.port)
            await newcomer.send(get("/quick"))
            assert (await newcomer.response())[0] == 200
            # One idle connection made room; the busy one was never a candidate.
            assert await within(lambda: sum(conn.reader.at_eof() for conn in idle) == 1)
            assert await within(lambda: len(lanes.connections) == 20)
            assert sum(conn.reader.at_eof() for conn in idle) == 1
            assert REGISTRY.get_sample_value("codeengine_connections_evicted_total") == evicted + 1
            serving.runner.app[RELEASE].set()
            assert (await busy.response())[0] == 200
            for conn in (busy, early, newcomer, *idle):
                conn.close()

    run(scenario())


def test_metrics_are_on_the_management_port_and_not_on_the_public_one(run: Any) -> None:
    async def scenario() -> None:
        async with served(management_port=_free_port()) as serving:
            assert serving.management_port
            async with aiohttp.ClientSession() as session:
                public = f"http://127.0.0.1:{serving.port}/metrics"
                async with session.get(public) as response:
                    assert response.status == 404
                management = f"http://127.0.0.1:{serving.management_port}/metrics"
                async with session.get(management) as response:
                    assert response.status == 200
                    assert await response.text() == "# the test's metrics\n"
                    assert response.content_type == "text/plain"

    run(scenario())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_worker_holds_the_management_port_and_another_takes_it_over(run: Any) -> None:
    async def scenario() -> None:
        port = _free_port()
        async with served(management_port=port) as first:
            second = await start_serving(
                make_app(), "127.0.0.1", first.port, first.service, management_port=port
            )
            try:
                assert (first.management_port, second.management_port) == (port, 0)
                await first.stop()
                # The waiting worker tries again every few seconds; the hang guard only bounds it.
                assert await within(lambda: second.management_port == port)
                async with aiohttp.ClientSession() as session:
                    url = f"http://127.0.0.1:{port}/metrics"
                    async with session.get(url) as response:
                        assert response.status == 200
            finally:
                await second.stop()

    run(scenario())
