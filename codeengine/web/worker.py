"""One worker process: serve one service's app on a port shared with its siblings.

Workers bind with SO_REUSEPORT, so the kernel spreads connections across them; any number can run
side by side because every piece of state lives in the cluster. On SIGTERM or SIGINT a worker
stops accepting, lets in-flight requests finish (up to the shutdown timeout) and closes idle
keep-alive connections, so a rolling restart resets no client connection.
"""

from __future__ import annotations

__all__ = ["Serving", "serve", "start_serving", "tune_gc", "worker_main"]

import argparse
import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import uvloop
from aiohttp import web

from codeengine.logs import setup_logging
from codeengine.metrics import CONNECTIONS_EVICTED, CONNECTIONS_REFUSED, forget_process
from codeengine.settings import (
    ENV_PREFIX,
    ServiceSettings,
    Settings,
    SettingsError,
    load_settings,
    source_networks,
)
from codeengine.web.admission import ADMISSION, Admission, Sources, evict_idle, refusal_bytes
from codeengine.web.fastlane import LANE_ROUTES, Lanes
from codeengine.web.hygiene import install as quiet_http_errors
from codeengine.web.management import Management
from codeengine.web.metrics import METRICS_CACHE

AppFactory = Callable[[Settings], web.Application]
SERVICES = {"issuer": "issuer.app", "verifier": "verifier.app"}
DEFAULT_CONFIG = Path("configs/engine.toml")

log = logging.getLogger("codeengine.worker")


_TOO_MANY = refusal_bytes("too many open connections")
_TOO_MANY_FROM_SOURCE = refusal_bytes("too many open connections from this address")


class _Gate(asyncio.Protocol):
    """A new connection's first protocol: it admits the connection (per source, then in all)
    and hands it to the serving protocol, or answers 503 and closes it before reading.

    The factory cannot decide: the client's address is known only once the connection is made.
    """

    __slots__ = ("_admit",)

    def __init__(self, admit: Callable[[asyncio.Transport], asyncio.BaseProtocol | None]) -> None:
        self._admit = admit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        stream = cast(asyncio.Transport, transport)
        protocol = self._admit(stream)
        if protocol is not None:
            stream.set_protocol(protocol)
            protocol.connection_made(stream)


@dataclass
class Serving:
    """An app being served: its aiohttp runner, its fast lane (if on) and its listener."""

    runner: web.AppRunner
    lanes: Lanes | None
    listener: asyncio.Server
    service: ServiceSettings
    port: int
    """The port listened on (useful after binding port 0)."""
    admission: Admission
    sources: Sources
    management: Management | None = None
    stopped: bool = False

    @property
    def management_port(self) -> int:
        """The management port (``/metrics``) this worker serves; 0: none (or another worker's)."""
        return 0 if self.management is None else self.management.port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, close idle connections (once)."""
        if self.stopped:
            return
        self.stopped = True
        self.admission.stop()
        # Stop accepting first; then the lane and aiohttp finish in-flight requests and close
        # idle ones. (Server.wait_closed would wait for every connection on Python 3.12+.)
        self.listener.close()
        if self.management is not None:
            await self.management.stop()
        if self.lanes is None:
            await self.runner.cleanup()
            return
        # Side by side, so that the whole stop stays within one shutdown timeout.
        await asyncio.gather(
            self.lanes.shutdown(self.service.shutdown_timeout_s), self.runner.cleanup()
        )


async def start_serving(
    app: web.Application,
    host: str,
    port: int,
    service: ServiceSettings,
    *,
    management_port: int = 0,
) -> Serving:
    """Start serving ``app`` on ``host:port`` (SO_REUSEPORT), the hot routes on the fast lane,
    and ``/metrics`` on ``service.management_host:management_port`` (0: not served) when this
    worker is the one that holds it (codeengine.web.management)."""
    admission = Admission(service.max_in_flight, service.max_loop_lag_ms / 1000)
    app[ADMISSION] = admission
    sources = Sources(
        service.max_connections_per_source,
        source_networks(service.unlimited_sources),
        max_tracked=2 * service.max_connections,
    )
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        # A bare AppRunner keeps idle connections for about an hour (docs/architecture.md).
        keepalive_timeout=service.keepalive_timeout_s,
        shutdown_timeout=service.shutdown_timeout_s,
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    routes = app.get(LANE_ROUTES, ())
    lanes = None
    if service.fast_lane and routes:
        lanes = Lanes(
            app,
            server,
            routes,
            keepalive_timeout_s=service.keepalive_timeout_s,
            max_body_bytes=service.client_max_size_bytes,
        )

    def admit(transport: asyncio.Transport) -> asyncio.BaseProtocol | None:
        peer = transport.get_extra_info("peername")
        if not sources.admit(str(peer[0]) if peer else "", transport):
            CONNECTIONS_REFUSED.labels("source").inc()
            transport.write(_TOO_MANY_FROM_SOURCE)
            transport.close()
            return None
        # aiohttp has no connection cap of its own; past ours an idle connection makes room,
        # else the newcomer is told to come back.
        held = len(server.connections) + (len(lanes.connections) if lanes is not None else 0)
        if held >= service.max_connections:
            if lanes is None or not evict_idle(lanes.connections, lanes.tick):
                CONNECTIONS_REFUSED.labels("full").inc()
                transport.write(_TOO_MANY)
                transport.close()
                return None
            CONNECTIONS_EVICTED.inc()
        # Every connection starts on the fast lane, which hands it to aiohttp when it must.
        return server() if lanes is None else lanes()

    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(
            lambda: _Gate(admit), host, port, reuse_port=True, backlog=service.backlog
        )
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(listener.sockets[0].getsockname()[1])
    serving = Serving(runner, lanes, listener, service, bound, admission, sources)
    cache = app.get(METRICS_CACHE)
    if management_port and cache is not None:
        serving.management = Management(
            cache,
            service.management_host,
            management_port,
            keepalive_timeout_s=service.keepalive_timeout_s,
        )
        try:
            await serving.management.start()
        except BaseException:
            await serving.stop()
            raise
    admission.start(loop)
    return serving


def tune_gc(young_threshold: int) -> None:
    """Set the garbage collector up for serving, once the app has started.

    Nearly every object a request makes is freed by reference counting when the request ends;
    the cyclic collector only finds what those miss. With Python's defaults it still ran about
    once every 130 verifies (the objects of 50 requests in flight pass its young threshold of
    700) and moved what was in flight on to the older generations. In 21,000 verifies measured
    in-process with ``gc.callbacks`` that made 165 young, 15 middle and one full collection,
    and the full one, over everything the worker had loaded, stopped it for 55 ms: 4.3 µs a
    verify in all.

    So everything loaded by now is frozen (``gc.freeze``: full collections skip it) and the
    young threshold is raised past what requests in flight hold; 0 keeps the threshold in
    force (Python's default, unless something changed it).
    """
    gc.collect()
    gc.freeze()
    if young_threshold:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
    log.info("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())


async def serve(
    app: web.Application,
    host: str,
    port: int,
    service: ServiceSettings,
    *,
    management_port: int = 0,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully."""
    serving = await start_serving(app, host, port, service, management_port=management_port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        tune_gc(service.gc_young_threshold)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("serving on %s:%d", host, port)
        await stop.wait()
    finally:
        await serving.stop()


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process: ``python -m codeengine.web.worker --service issuer``."""
    parser = argparse.ArgumentParser(prog="codeengine-worker")
    parser.add_argument("--service", choices=sorted(SERVICES), required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="this worker's own log file, rotated by size (default: standard error)",
    )
    args = parser.parse_args(argv)
    config = args.config or os.environ.get(f"{ENV_PREFIX}CONFIG")
    if config is None and DEFAULT_CONFIG.exists():
        config = DEFAULT_CONFIG
    try:
        settings = load_settings(Path(config) if config else None)
    except SettingsError as exc:
        print(f"{args.service}: settings: {exc}", file=sys.stderr)
        return 2
    # The file, when given, is also standard output and error: nothing bypasses it.
    setup_logging(args.service, settings.logging, args.log_file, capture_stdio=bool(args.log_file))
    quiet_http_errors()
    factory: AppFactory = importlib.import_module(SERVICES[args.service]).create_app
    service = settings.service
    issuer = args.service == "issuer"
    port = service.issuer_port if issuer else service.verifier_port
    management = service.issuer_management_port if issuer else service.verifier_management_port
    try:
        uvloop.run(
            serve(factory(settings), service.host, port, service, management_port=management)
        )
    finally:
        # Its live gauges (the scan backlog) end with it; a crashed worker's are forgotten by
        # whoever restarts it.
        forget_process(os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
