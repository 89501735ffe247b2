"""The floors of the HTTP throughput harness: what the framework, and one store GET, cost alone.

    python -m bench.floors --kind framework --port PORT
    python -m bench.floors --kind store --port PORT

* ``framework``: a bare aiohttp + uvloop handler, ``GET /floor`` answers ``{"status": "ok"}``.
* ``store``: the same handler and body at ``GET /store-floor``, after one GET of a fixed key over
  one raw RESP connection per process to the node that owns the key's slot. Requests share the
  connection: the commands queued during one loop tick leave in one ``write()`` and each request
  waits for its reply in order (RESP answers in order), as a pipelining client does. No deadline,
  no breaker, no redirect handling after start-up: about the least a store round trip can cost in
  this process, not a usable client. It speaks TLS and logs in as the services' user when the
  ``[cluster]`` settings say so, as the services do, so the floor carries the same TLS cost.

Both run through :func:`codeengine.web.worker.serve` with the services' own settings (read from
the same ``CODEENGINE_*`` environment): SO_REUSEPORT, backlog, keep-alive timeout, no access log,
``client_max_size``, uvloop. Any number of these processes can share one port, as workers do.
"""

from __future__ import annotations

__all__ = ["FLOOR_BODY", "FLOOR_KEY", "FLOOR_VALUE", "RespConnection", "create_app", "main"]

import argparse
import asyncio
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import cast

import hiredis
import uvloop
from aiohttp import web

from codeengine.settings import Settings, load_settings, parse_nodes
from codeengine.store.security import StoreSecurity
from codeengine.web.runtime import store_settings
from codeengine.web.worker import serve

FLOOR_BODY = {"status": "ok"}
FLOOR_KEY = b"bench:floor"
FLOOR_VALUE = b"v" * 160  # About a displayed token's size.
KINDS = ("framework", "store")


def pack(*args: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RespConnection(asyncio.Protocol):
    """One Redis connection; replies resolve the waiting commands in the order they were sent."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiters: deque[asyncio.Future[object]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, host: str, port: int, security: StoreSecurity) -> RespConnection:
        """Connect to one node, over TLS and logged in as the services are when they are."""
        loop = asyncio.get_running_loop()
        context = security.ssl_context
        if context is None:
            _, protocol = await loop.create_connection(cls, host, port)
        else:
            name = security.server_name or host
            _, protocol = await loop.create_connection(
                cls, host, port, ssl=context, server_hostname=name
            )
        auth = security.auth_args
        if auth is not None:
            reply = await protocol.command(
                *(a if isinstance(a, bytes) else a.encode() for a in auth)
            )
            if isinstance(reply, hiredis.ReplyError):
                raise ConnectionError(f"the store refused the login: {reply}")
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, but they are one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("the store connection closed"))

    def command(self, *args: bytes) -> asyncio.Future[object]:
        """Queue one command for this loop tick's write; the future resolves to its reply.

        An error reply is a value, not an exception. Every command queued during one tick
        leaves in one ``write()``, as a pipelining client does (codeengine.store.cluster does).
        """
        if self._transport is None:
            raise ConnectionError("the store connection is closed")
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(pack(*args))
        return waiter

    def _flush(self) -> None:
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self._transport is not None:
            self._transport.write(data)

    def close(self) -> None:
        """Close the connection; waiting commands fail."""
        if self._transport is not None:
            self._transport.close()


async def connect_to_owner(
    nodes: Sequence[tuple[str, int]], key: bytes, security: StoreSecurity
) -> RespConnection:
    """A connection to the node that owns ``key``: ask any node, follow one MOVED."""
    host, port = nodes[0]
    conn = await RespConnection.open(host, port, security)
    reply = await conn.command(b"GET", key)
    if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("MOVED "):
        conn.close()
        address = str(reply).split()[2]
        host, _, port_text = address.rpartition(":")
        conn = await RespConnection.open(host or nodes[0][0], int(port_text), security)
    elif isinstance(reply, hiredis.ReplyError):
        raise ConnectionError(f"the store answered {reply}")
    return conn


STORE = web.AppKey("store", RespConnection)


async def framework_floor(request: web.Request) -> web.Response:
    """The framework floor: a small JSON body, nothing else."""
    return web.json_response(FLOOR_BODY)


async def store_floor(request: web.Request) -> web.Response:
    """The store floor: one GET over the process's connection, then the same small body."""
    value = await request.app[STORE].command(b"GET", FLOOR_KEY)
    if not isinstance(value, bytes):
        raise web.HTTPServiceUnavailable(text="the floor key is missing")
    return web.json_response(FLOOR_BODY)


def create_app(kind: str, settings: Settings) -> web.Application:
    """The ``framework`` or ``store`` floor app, with the services' body cap."""
    app = web.Application(client_max_size=settings.service.client_max_size_bytes)
    if kind == "framework":
        app.router.add_get("/floor", framework_floor)
        return app
    nodes = parse_nodes(settings.cluster.nodes)
    security = store_settings(settings).security

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        conn = await connect_to_owner(nodes, FLOOR_KEY, security)
        reply = await conn.command(b"SET", FLOOR_KEY, FLOOR_VALUE)
        if isinstance(reply, hiredis.ReplyError):
            raise ConnectionError(f"the store answered {reply}")
        app[STORE] = conn
        yield
        conn.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/store-floor", store_floor)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one floor on ``--port`` until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="bench.floors", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s floor-{args.kind}[%(process)d] %(levelname)s %(message)s",
    )
    settings = load_settings()
    app = create_app(args.kind, settings)
    uvloop.run(serve(app, settings.service.host, args.port, settings.service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
