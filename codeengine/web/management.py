"""The management port: ``/metrics`` off the public port, served by one worker for all.

The port is bound without SO_REUSEPORT, so one worker of a service holds it and the others try
again every ``RETRY_S`` (the first to try after the holder exits takes it over). One holder
means one rendering a ``service.metrics_cache_s`` for the whole service, and a scraper that
always reads the same rendering process: each worker kept its own cache, two scrapes in a row
could land on two workers whose renderings were made a second apart, and a counter could seem
to go back, which Prometheus reads as a restart of the process.
"""

from __future__ import annotations

__all__ = ["RETRY_S", "Management"]

import asyncio
import contextlib
import errno
import logging
import socket

from aiohttp import web

from codeengine.web.metrics import MetricsCache, management_app

RETRY_S = 2.0
"""How often a worker that does not hold the management port tries to take it."""

log = logging.getLogger("codeengine.worker")


class Management:
    """This worker's part in serving the management port: holding it, or waiting to."""

    def __init__(
        self, cache: MetricsCache, host: str, port: int, *, keepalive_timeout_s: float
    ) -> None:
        self._runner = web.AppRunner(
            management_app(cache),
            handle_signals=False,
            access_log=None,
            keepalive_timeout=keepalive_timeout_s,
            shutdown_timeout=1.0,
        )
        self._host = host
        self._port = port
        self._waiting: asyncio.Task[None] | None = None
        self.port = 0
        """The port this worker serves ``/metrics`` on; 0 while another worker holds it."""

    async def start(self) -> None:
        """Take the port now if it is free, else keep trying in the background."""
        await self._runner.setup()
        if not await self._take():
            self._waiting = asyncio.create_task(self._wait_for_port())

    async def _take(self) -> bool:
        try:
            sock = socket.create_server((self._host, self._port), backlog=128)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.port = int(sock.getsockname()[1])
        log.info("metrics on %s:%d", self._host, self.port)
        return True

    async def _wait_for_port(self) -> None:
        while True:
            await asyncio.sleep(RETRY_S)
            if await self._take():
                return

    async def stop(self) -> None:
        """Stop waiting for the port, and serving it."""
        if self._waiting is not None:
            self._waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiting
        await self._runner.cleanup()
