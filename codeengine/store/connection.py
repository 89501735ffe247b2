"""The wire under the cluster client: RESP packing, pipelined connections, call deadlines.

Nothing here knows the cluster: a :class:`Connection` reports its loss to whoever opened it,
:class:`Expiry` fails waiters whose deadline passed, and :class:`AckPool` keeps a node's
connections for commands that block theirs.
"""

from __future__ import annotations

__all__ = [
    "AckPool",
    "Arg",
    "Connection",
    "Expiry",
    "TimedOut",
    "consume_outcome",
    "open_connection",
    "pack_command",
    "pack_pair",
]

import asyncio
import itertools
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis

from codeengine.code.errors import StoreUnavailable
from codeengine.store.security import (
    PLAIN,
    StoreSecurity,
    refusal_for_auth,
    refusal_for_handshake,
    refusal_for_silence,
)

Arg = str | bytes | int | float


def _pack_python(args: Sequence[Arg]) -> bytes:
    """RESP2 multi-bulk packing, for a hiredis without ``pack_command``."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a command argument must be str, bytes, int or float, not {arg!r}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _pack_hiredis(args: Sequence[Arg]) -> bytes:
    # The stub types the argument as a one-element tuple and leaves the result untyped.
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    return packed


pack_command = _pack_hiredis if hasattr(hiredis, "pack_command") else _pack_python


def pack_pair(command: bytes, first: str | bytes, second: str | bytes) -> bytes:
    """``pack_command((command, first, second))`` for a command of two keys (display and verify
    read a subject's record and token with one MGET each): one format, 0.26 against 0.34 µs
    through hiredis's general packer (timeit)."""
    one = first.encode() if isinstance(first, str) else first
    two = second.encode() if isinstance(second, str) else second
    return b"*3\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
        len(command), command, len(one), one, len(two), two,
    )  # fmt: skip


class Collector:
    """Stands in the waiter queue for each command of a ``send_many``; fills one future."""

    __slots__ = ("expected", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, reply: Any) -> None:
        self.replies.append(reply)
        if len(self.replies) == self.expected:
            self.future.set_result(self.replies)

    def set_exception(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Connection(asyncio.Protocol):
    """One pipelined RESP2 connection: a write buffer flushed once per tick, a FIFO of waiters."""

    def __init__(self, lost: Callable[[Connection, str], None], max_in_flight: int) -> None:
        self._lost = lost
        self._max_in_flight = max_in_flight
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        # A None waiter is a reply nobody reads (the one to ASKING or to a script prelude).
        self._waiters: deque[asyncio.Future[Any] | None] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self.open = False

    def send(self, packed: bytes, *, discard: bool = False) -> asyncio.Future[Any]:
        """Queue one packed command for this tick's write; the future gets its raw reply."""
        if not self.open:
            raise StoreUnavailable("store connection closed")
        if len(self._waiters) >= self._max_in_flight:
            raise StoreUnavailable("too many store commands in flight")
        waiter = self._loop.create_future()
        self._waiters.append(None if discard else waiter)
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(packed)
        return waiter

    def send_many(self, packed: Sequence[bytes]) -> asyncio.Future[list[Any]]:
        """Queue many commands at once; one future gets all their raw replies, in order."""
        if not self.open:
            raise StoreUnavailable("store connection closed")
        if len(self._waiters) + len(packed) > self._max_in_flight:
            raise StoreUnavailable("too many store commands in flight")
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        collector = Collector(future, len(packed))
        self._waiters.extend(itertools.repeat(collector, len(packed)))  # type: ignore[arg-type]
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.extend(packed)
        return future

    def _flush(self) -> None:
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self.open and self._transport is not None:
            self._transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        waiters = self._waiters
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                waiter = waiters.popleft()
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError):
            # A reply nobody asked for or bytes that are not RESP: the stream cannot be trusted.
            self.close("store protocol error")

    def connection_lost(self, exc: Exception | None) -> None:
        self.close("store connection lost")

    def close(self, reason: str) -> None:
        """Fail every waiting command and drop the connection; the node reconnects on next use."""
        was_open, self.open = self.open, False
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_exception(StoreUnavailable(reason))
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.abort()
        if was_open:
            self._lost(self, reason)


_PING = b"*1\r\n$4\r\nPING\r\n"


async def open_connection(
    addr: tuple[str, int],
    security: StoreSecurity,
    lost: Callable[[Connection, str], None],
    max_in_flight: int,
    timeout_s: float,
) -> Connection:
    """A connection to ``addr`` over TLS if configured, logged in, proven to answer.

    Its first command is ``AUTH`` (or ``PING`` with no login): a wrong password, and a server
    that speaks the other protocol, show up here, at connect, as a :class:`StoreRefused` that
    names the setting, not as the first real command's failure. A TLS server hangs up on
    plain text; a plain-text server waits for the end of a line that a TLS greeting never
    sends, so a handshake unanswered within ``timeout_s`` says which setting to suspect too.
    """
    loop = asyncio.get_running_loop()
    name = f"{addr[0]}:{addr[1]}"
    context = security.ssl_context
    made: list[Connection] = []

    def factory() -> Connection:
        conn = Connection(lost, max_in_flight)
        made.append(conn)
        return conn

    try:
        async with asyncio.timeout(timeout_s):
            try:
                if context is None:
                    _, conn = await loop.create_connection(factory, *addr)
                else:
                    _, conn = await loop.create_connection(
                        factory, *addr, ssl=context, server_hostname=security.server_name or addr[0]
                    )
            except ssl.SSLError as exc:
                raise refusal_for_handshake(exc, security, name) from exc
            except ConnectionResetError as exc:
                if context is None:
                    raise
                raise refusal_for_handshake(exc, security, name) from exc
            auth = security.auth_args
            try:
                reply = await conn.send(_PING if auth is None else pack_command(auth))
            except StoreUnavailable as exc:
                conn.close("store connection refused")
                raise refusal_for_silence(security, name) from exc
    except TimeoutError:
        for conn in made:
            conn.close("store connect timed out")
        raise TimedOut(_silent_for(security, name, timeout_s, made)) from None
    except asyncio.CancelledError:
        # The caller was cancelled half-way (a background task at shutdown, between the TLS
        # handshake and AUTH's answer): the connection belongs to nobody yet, so nothing else
        # would ever close it, and its transport would be found unclosed by the collector.
        for conn in made:
            conn.close("store connect cancelled")
        raise
    if isinstance(reply, hiredis.ReplyError):
        conn.close("store connection refused")
        raise refusal_for_auth(str(reply), security, name)
    return conn


def _silent_for(
    security: StoreSecurity, name: str, timeout_s: float, made: Sequence[Connection]
) -> str:
    """What a connect that timed out waited for (``made``: the transport came up)."""
    if security.ssl_context is not None and not (made and made[0].open):
        return (
            f"store {name}: no TLS handshake within {timeout_s:g} s; the node is stalled or "
            "unreachable, or its port does not speak TLS (check cluster.tls)"
        )
    first = "AUTH" if security.auth_args is not None else "PING"
    return f"store {name}: no answer to {first} within {timeout_s:g} s"


def consume_outcome(future: asyncio.Future[Any]) -> None:
    """Done-callback for background work: retrieve its outcome so nothing logs 'never retrieved'."""
    if not future.cancelled():
        future.exception()


class Expiry:
    """Fails waiters past their deadline, bucketed so that a command arms no timer of its own.

    ``asyncio.timeout`` per command costs as much client CPU as the rest of a pipelined GET;
    here one timer serves every command whose deadline falls in the same few milliseconds.
    A caller takes its waiter out of the bucket once answered (:meth:`add` returns the
    bucket): otherwise every answered future, and its reply, would live on until its deadline,
    some 4,000 of each at 15,000 reads a second, all of them for the garbage collector to count.
    """

    __slots__ = ("_buckets", "_per_s")

    def __init__(self, resolution_s: float) -> None:
        self._per_s = 1 / resolution_s
        self._buckets: dict[int, set[asyncio.Future[Any]]] = {}

    def add(self, waiter: asyncio.Future[Any], deadline: float) -> set[asyncio.Future[Any]]:
        """Fail ``waiter`` at ``deadline`` unless it is done or taken out of the returned set."""
        tick = int(deadline * self._per_s) + 1
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            waiter.get_loop().call_at(tick / self._per_s, self._expire, tick)
        bucket.add(waiter)
        return bucket

    def __len__(self) -> int:
        """Waiters held for their deadline."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def _expire(self, tick: int) -> None:
        for waiter in self._buckets.pop(tick, ()):
            if not waiter.done():
                waiter.set_exception(TimedOut("store call timed out"))


class TimedOut(StoreUnavailable):
    """A call's deadline passed before its reply came."""


class AckPool:
    """Connections to one node for commands that hold their connection (``WAIT``): one call each.

    A ``WAIT`` blocks its connection on the server until the replicas answer or its timeout
    passes, up to half a second when a replica is gone; on the shared pipelined connection it
    would hold up every read behind it. Each call here takes an idle connection (or opens
    one, up to ``limit``) and gives it back once answered; one that failed is closed, since a
    late reply would still hold it.
    """

    __slots__ = ("_all", "_idle", "addr", "closed", "connect_timeout_s", "limit", "security")

    def __init__(
        self,
        addr: tuple[str, int],
        connect_timeout_s: float,
        limit: int,
        security: StoreSecurity = PLAIN,
    ) -> None:
        self.addr = addr
        self.security = security
        self.connect_timeout_s = connect_timeout_s
        self.limit = limit
        self.closed = False
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()

    async def call(self, packed: Sequence[bytes], deadline: float, expiry: Expiry) -> list[Any]:
        """Send ``packed`` in one write on a connection of its own; the raw replies."""
        if self.closed:
            # A connection opened now would belong to nobody: nothing closes the pool again.
            raise StoreUnavailable("store client closed")
        conn = await self._take(deadline)
        future = conn.send_many(packed)
        bucket = expiry.add(future, deadline)
        try:
            replies = await future
        except BaseException:
            conn.close("store call failed")
            raise
        finally:
            bucket.discard(future)
        if conn.open:
            self._idle.append(conn)
        return replies

    async def _take(self, deadline: float) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.open:
                return conn
        if len(self._all) >= self.limit:
            raise StoreUnavailable("too many store writes in flight")
        timeout_s = min(deadline - asyncio.get_running_loop().time(), self.connect_timeout_s)
        conn = await open_connection(self.addr, self.security, self._lost, 16, timeout_s)
        if self.closed:  # closed while this connection was being opened
            conn.close("store client closed")
            raise StoreUnavailable("store client closed")
        self._all.add(conn)
        return conn

    def _lost(self, conn: Connection, reason: str) -> None:
        self._all.discard(conn)

    def close(self) -> None:
        """Close every connection, failing the calls still waiting; refuse calls after."""
        self.closed = True
        self._idle.clear()
        for conn in list(self._all):
            conn.close("store client closed")
