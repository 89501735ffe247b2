"""The fast lane: display and verify answered without aiohttp's per-request machinery.

aiohttp costs about 20 µs of Python a request here (its request object, routing, the handler
task's bookkeeping, response preparation and the writer), two thirds of the framework floor, and
more than the whole of a display's own work. The two hot routes, display (亮码) and verify (验码),
are most of the traffic, so each worker serves them on a lane of its own:

* Every connection starts on the lane. The lane parses with ``httptools`` (llhttp, the parser
  aiohttp's own C parser wraps), and answers a request itself only when it is plain: one
  complete HTTP/1.1 keep-alive request in hand and nothing pipelined after it, to a hot route
  with a plain path, no query, exactly one ``Host``, no ``Transfer-Encoding``, ``Expect`` or
  ``Upgrade``, no repeat of a header aiohttp takes once or of ``Authorization``, at most 128
  headers of at most 8190 bytes, and a body of at most ``MAX_BODY_BYTES`` (and the service's
  own limit). Whatever aiohttp would refuse is therefore refused by aiohttp.
* Anything else, including bytes the parser refuses, is **handed over**: the lane passes the
  connection, and every byte it has read of the request in progress, to an ordinary aiohttp
  protocol, which serves it and everything after it on that connection as it would have from
  the start. A handed-over connection never comes back.
* The lane runs the very handler aiohttp would (the service wrapper: access, rate limit, problem
  bodies, metrics) with a :class:`LaneRequest`, the few parts of a request those handlers read.
  What a client gets differs only in the ``Server`` header, which the lane does not send.
* Each request's id (``X-Request-Id``, codeengine.web.requestid) is the lane's to give: the
  connection is its requests' log context (:data:`codeengine.logs.REQUEST_CONTEXT`, set once
  for the connection's task), and the id is written into the answer's bytes after its cached
  head. A request pays for a counter step and those bytes; the caller's id and ``traceparent``
  are read only when sent, and the id's text is made only when a log line asks for it.

Keep-alive timeout, the connection cap and graceful shutdown hold on the lane as on aiohttp
(:class:`Lanes`); ``service.fast_lane = false`` turns the lane off.

After a 503 ``OVERLOADED`` refusal the lane stops reading the connection until about its
``Retry-After`` (it reads again at the last sweep tick before the Retry-After has passed): a
client that asks again at once finds its request waiting in the kernel's buffer, not in the
worker's loop, which would otherwise spend its time reading and refusing the same clients over
and over; a client that waits the Retry-After finds the connection read again.
"""

from __future__ import annotations

__all__ = [
    "LANE_ROUTES",
    "MAX_BODY_BYTES",
    "FastLane",
    "HotRequest",
    "LaneRequest",
    "LaneRoute",
    "Lanes",
    "hot",
]

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Protocol, TypeVar, cast

import httptools
from aiohttp import web
from aiohttp.helpers import parse_content_type
from aiohttp.http_parser import SINGLETON_HEADERS
from aiohttp.tcp_helpers import tcp_keepalive, tcp_nodelay
from multidict import MultiDict, MultiDictProxy, MultiMapping

from codeengine.code.errors import Reason
from codeengine.logs import REQUEST_CONTEXT
from codeengine.metrics import LANE_HANDOVERS
from codeengine.web.answers import JsonAnswer
from codeengine.web.problems import REASON
from codeengine.web.requestid import (
    REQUEST_ID_HEADER,
    REQUEST_IDS,
    TRACEPARENT_HEADER,
    parse_traceparent,
    sane_request_id,
)

log = logging.getLogger("codeengine.fastlane")

T = TypeVar("T")
MAX_BODY_BYTES = 16 * 1024
"""The largest body the lane reads itself; a verify body is about 300 bytes."""
MAX_FIELD_BYTES = 8190
"""The longest request target or header the lane takes; aiohttp refuses longer ones (its
``max_line_size`` and ``max_field_size``), so the lane hands those over for that answer."""
MAX_HEADERS = 128
"""aiohttp's server refuses a request with more headers (its ``max_headers``)."""
MAX_HEAD_BYTES = 16 * 1024
"""Bytes of an unfinished request the lane holds before it hands the connection over."""
MAX_PENDING_BYTES = 64 * 1024
"""Bytes a client may send while its request is being answered before the lane stops reading."""
SWEEP_S = 1.0
RESUME_BATCH = 64
"""Paced connections let read again in one loop iteration; the others due wait an iteration a
batch, so that thousands refused in one second are not all read and answered in one iteration."""
MAX_CACHED_HEADS = 512
"""Distinct status-and-headers sets whose bytes the lane keeps (display's max-age varies)."""

# The request headers the hot handlers and the request's id read, by their lower-case wire
# name; the lane keeps no other. A request that repeats one of them is handed over, so the two
# paths cannot read different values.
_KEPT = {
    b"authorization": "Authorization",
    b"content-type": "Content-Type",
    b"x-request-id": REQUEST_ID_HEADER,
    b"traceparent": TRACEPARENT_HEADER,
}
_KEPT_NAMES = frozenset(_KEPT.values())
# Headers that change how a request is framed or answered: aiohttp deals with those.
_REFUSED = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_BODYLESS = frozenset({b"GET", b"HEAD"})
# Headers aiohttp refuses to see twice in a request (400), Host among them.
_ONCE = frozenset(name.encode() for name in SINGLETON_HEADERS)
_EMPTY_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
# A path segment the lane matches as a route parameter as is: the pseudonym alphabet
# (base64url) and nothing that aiohttp would decode or normalise first.
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_OVERLOADED = Reason.OVERLOADED.value


class HotRequest(Protocol):
    """What the hot handlers read of a request: aiohttp's ``web.Request`` and
    :class:`LaneRequest` both are one."""

    @property
    def app(self) -> web.Application: ...

    @property
    def method(self) -> str: ...

    @property
    def match_info(self) -> Mapping[str, str]: ...

    @property
    def query_string(self) -> str: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_type(self) -> str: ...

    async def read(self) -> bytes: ...

    def __getitem__(self, key: web.RequestKey[T]) -> T: ...

    def __setitem__(self, key: web.RequestKey[T], value: T) -> None: ...


HotHandler = Callable[[HotRequest], Awaitable[web.StreamResponse | JsonAnswer]]
_HOT_HANDLERS: set[object] = set()


H = TypeVar("H", bound=HotHandler)


def hot(handler: H) -> H:
    """Mark a handler the lane may run: typed for :class:`HotRequest`, so it reads nothing of a
    request that :class:`LaneRequest` lacks."""
    _HOT_HANDLERS.add(handler)
    return handler


class LaneHeaders(dict[str, str]):
    """The headers the lane keeps (``Authorization``, ``Content-Type``, ``X-Request-Id``,
    ``traceparent``), by those names.

    Asking for any other is a fault of the handler, not of the request: it raises, so that a
    hot handler that starts reading a new header fails in every test that runs it on the lane
    instead of quietly seeing ``None`` there and a value on aiohttp.
    """

    __slots__ = ()

    def get(self, name: str, default: Any = None) -> Any:
        if name not in _KEPT_NAMES:
            raise KeyError(f"the fast lane keeps only {sorted(_KEPT_NAMES)}, not {name!r}")
        return dict.get(self, name, default)  # not super(): it costs as much as the rest


class LaneRequest:
    """A request the lane parsed: the parts of ``web.Request`` that :class:`HotRequest` names."""

    __slots__ = ("_state", "app", "body", "headers", "match_info", "method")

    query_string = ""
    query: MultiMapping[str] = _EMPTY_QUERY

    def __init__(
        self,
        app: web.Application,
        method: str,
        match_info: dict[str, str],
        headers: LaneHeaders,
        body: bytes,
    ) -> None:
        self.app = app
        self.method = method
        self.match_info = match_info
        self.headers = headers
        self.body = body
        """The whole body, read before the handler runs (at most ``MAX_BODY_BYTES``)."""
        self._state: dict[web.RequestKey[Any], Any] = {}

    @property
    def content_type(self) -> str:
        """The media type of the body, as aiohttp reports it (lower case, no parameters)."""
        raw = self.headers.get("Content-Type")
        if raw is None:
            return "application/octet-stream"
        return parse_content_type(raw)[0]

    async def read(self) -> bytes:
        """The whole body (the lane has read it before the handler runs)."""
        return self.body

    def __getitem__(self, key: web.RequestKey[T]) -> T:
        return cast(T, self._state[key])

    def __setitem__(self, key: web.RequestKey[T], value: T) -> None:
        self._state[key] = value


@dataclass(frozen=True, slots=True)
class LaneRoute:
    """A route the lane serves: ``method`` and ``template``, an exact path such as
    ``/v1/verify`` or one with one parameter that is a whole segment, such as
    ``/v1/subjects/{subject}/code``; ``name`` is the aiohttp route whose handler answers it."""

    method: str
    template: str
    name: str

    def __post_init__(self) -> None:
        self.parts()  # a template the lane cannot match fails here, at the app's factory

    def parts(self) -> tuple[str, str, str]:
        """``(prefix, param, suffix)``; an exact path is its own prefix, with no param."""
        if "{" not in self.template:
            return self.template, "", ""
        prefix, _, rest = self.template.partition("{")
        param, _, suffix = rest.partition("}")
        if not prefix.endswith("/") or "{" in suffix or (suffix and not suffix.startswith("/")):
            raise ValueError(f"lane route {self.template!r}: one parameter, a whole path segment")
        return prefix, param, suffix


LANE_ROUTES = web.AppKey("lane_routes", tuple[LaneRoute, ...])
"""The app's routes the lane may serve (a tuple of :class:`LaneRoute`), set by its factory."""


class _Bound:
    """A lane route with its handler: matches a raw path, gives its match info."""

    __slots__ = ("exact", "handler", "method", "param", "prefix", "suffix")

    def __init__(self, route: LaneRoute, handler: HotHandler) -> None:
        prefix, self.param, suffix = route.parts()
        self.method = route.method.encode()
        self.exact = b"" if self.param else prefix.encode()
        self.prefix = prefix.encode()
        self.suffix = suffix.encode()
        self.handler = handler

    def match(self, path: bytes) -> dict[str, str] | None:
        if self.exact:
            return {} if path == self.exact else None
        if not (path.startswith(self.prefix) and path.endswith(self.suffix)):
            return None
        segment = path[len(self.prefix) : len(path) - len(self.suffix)]
        if not segment or not _PLAIN.issuperset(segment):
            return None
        return {self.param: segment.decode()}


class Lanes:
    """One worker's lane connections: routes, the Date header, keep-alive, shutdown."""

    def __init__(
        self,
        app: web.Application,
        handover: Callable[[], asyncio.BaseProtocol],
        routes: Sequence[LaneRoute],
        *,
        keepalive_timeout_s: float,
        max_body_bytes: int = MAX_BODY_BYTES,
        sweep_timer: bool = True,
    ) -> None:
        """``sweep_timer`` False: no timer sweeps every ``SWEEP_S``, the owner calls
        :meth:`sweep` (a test, which then decides when the keep-alive clock ticks)."""
        if app.middlewares or app.on_response_prepare:
            # The lane does not run them: serving around them would skip what they do.
            raise ValueError("the fast lane cannot serve an app with middlewares or hooks")
        self.app = app
        self.handover = handover
        self.connections: set[FastLane] = set()
        self.closing = False
        self.tick = 0
        self._keepalive_ticks = max(1, round(keepalive_timeout_s / SWEEP_S))
        self.max_body_bytes = min(max_body_bytes, MAX_BODY_BYTES)
        """Larger bodies go to aiohttp, which applies the app's own limit (413)."""
        self._routes = [_Bound(route, _handler(app, route)) for route in routes]
        self._heads: dict[tuple[object, ...], bytes] = {}
        self._date_second = 0
        self._date = b""
        self._sweep_timer = sweep_timer
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self._paced: dict[int, list[FastLane]] = {}
        """Connections that do not read, by the tick at which they read again."""
        self._resuming: collections.deque[FastLane] = collections.deque()
        """Connections due to read again, let go RESUME_BATCH an iteration."""
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> FastLane:
        """A protocol for a new connection (the server's protocol factory)."""
        if self.loop is None:
            # Kept: on Python 3.11 every asyncio.get_running_loop() makes a getpid() system
            # call, about 3 µs a request under load here.
            self.loop = asyncio.get_running_loop()
            self._schedule_sweep()
        return FastLane(self)

    def forget(self, lane: FastLane) -> None:
        """``lane`` closed or was handed over."""
        self.connections.discard(lane)
        if self._drained is not None and not self.connections:
            self._drained.set()

    def route(self, method: bytes, path: bytes) -> tuple[HotHandler, dict[str, str]] | None:
        """The handler and match info for a plain request line, or None."""
        for bound in self._routes:
            if bound.method == method:
                found = bound.match(path)
                if found is not None:
                    return bound.handler, found
        return None

    def encode(self, response: web.StreamResponse | JsonAnswer, request_id: bytes) -> bytes:
        """``response`` as HTTP/1.1 bytes: status line, its headers, Length, ``X-Request-Id``
        and Date, body."""
        if type(response) is JsonAnswer:
            # The head of the response aiohttp would send for it, written out once.
            key: tuple[object, ...] = (response.status, response.cache_control)
            head = self._heads.get(key) or self._keep_head(key, response.response())
            data = response.body.encode()
            return b"%s%d\r\nX-Request-Id: %s%s%s" % (
                head,
                len(data),
                request_id,
                self._date_line(),
                data,
            )
        if (
            type(response) is not web.Response
            # The public ``cookies`` makes a cookie jar on first use: ask whether one exists.
            or response._cookies
            or response.chunked
            or response.compression
            or response.status in (204, 304)
            or response.keep_alive is False
        ):
            raise TypeError("the lane sends plain keep-alive responses with a body only")
        body = response.body
        if type(body) is not bytes:
            raise TypeError("the lane sends bytes bodies only")
        # A hot route answers with a handful of header sets: each is written out once. The
        # request's id is not among them (the wrapper leaves it to the lane on the lane).
        key = (response.status, *response.headers.items())
        head = self._heads.get(key) or self._keep_head(key, response)
        return b"%s%d\r\nX-Request-Id: %s%s%s" % (
            head,
            len(body),
            request_id,
            self._date_line(),
            body,
        )

    def _keep_head(self, key: tuple[object, ...], response: web.Response) -> bytes:
        """``response``'s head, kept under ``key`` while fewer than MAX_CACHED_HEADS are.

        A JsonAnswer's key is its status and Cache-Control, a response's its status and header
        items (tuples): the two kinds never share a key."""
        head = self._head(response)
        if len(self._heads) < MAX_CACHED_HEADS:
            self._heads[key] = head
        return head

    @staticmethod
    def _head(response: web.Response) -> bytes:
        """Status line and headers, up to the value of Content-Length."""
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        typed = False
        for name, value in response.headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} has a line break")
            lowered = name.lower()
            if lowered == "content-length":
                continue
            typed = typed or lowered == "content-type"
            head.append(f"{name}: {value}")
        if not typed:
            head.append("Content-Type: application/octet-stream")
        head.append("Content-Length: ")
        return "\r\n".join(head).encode()

    def _date_line(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date = f"\r\nDate: {formatdate(second, usegmt=True)}\r\n\r\n".encode()
            self._date_second = second
        return self._date

    def pace(self, lane: FastLane, retry_after_s: float) -> int:
        """The tick at which ``lane``, which stops reading now, reads again: the last tick
        before ``retry_after_s`` from now has passed (at least the next one).

        The tick now under way began up to a sweep ago, so the connection reads again at the
        tick ``floor(retry_after_s / SWEEP_S)`` from this one: never after the Retry-After, at
        most one sweep before it. A client that waits the Retry-After therefore never waits
        longer (resuming at the tick after it held such clients' requests up to a second more:
        served p99 1.2 s in bench.overload, docs/performance.md). Until then the keep-alive
        clock leaves the connection alone; from then on it is idle as if it had just been
        answered.
        """
        due = self.tick + max(1, math.floor(retry_after_s / SWEEP_S))
        paced = self._paced.get(due)
        if paced is None:
            self._paced[due] = [lane]
        else:
            paced.append(lane)
        return due

    def sweep(self) -> None:
        """One tick of the keep-alive clock: close connections idle past the timeout, and let
        the paced connections due read again.

        A connection idle since tick ``t`` closes at tick ``t + ticks + 1``: idle for at least
        the timeout, at most one sweep longer.
        """
        self.tick += 1
        if self._paced:
            chain = not self._resuming
            for due in [due for due in self._paced if due <= self.tick]:
                self._resuming.extend(self._paced.pop(due))
            if chain and self._resuming:
                self._resume_batch()
        for lane in list(self.connections):
            if (
                not lane.busy
                and not lane.paced_until
                and self.tick - lane.idle_since > self._keepalive_ticks
            ):
                lane.close()

    def _resume_batch(self) -> None:
        resuming = self._resuming
        for _ in range(min(RESUME_BATCH, len(resuming))):
            resuming.popleft().unpace()
        if resuming:
            assert self.loop is not None
            self.loop.call_soon(self._resume_batch)

    def _sweep(self) -> None:
        self.sweep()
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        if self._sweep_timer:
            assert self.loop is not None
            self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    async def shutdown(self, timeout_s: float) -> None:
        """Close idle connections now and the others once their answer is written."""
        self.closing = True
        self._drained = asyncio.Event()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for lane in list(self.connections):
            if not lane.busy:
                lane.close()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout_s)
        for lane in list(self.connections):
            lane.close()


def _handler(app: web.Application, route: LaneRoute) -> HotHandler:
    """The handler aiohttp runs for the route named ``route.name`` with ``route.method``."""
    resource = app.router.named_resources().get(route.name)
    if resource is None:
        raise ValueError(f"lane route {route.name!r}: the app has no route of that name")
    if resource.canonical != route.template:
        raise ValueError(
            f"lane route {route.name!r}: {route.template!r} is not its path {resource.canonical!r}"
        )
    for candidate in resource:
        if candidate.method == route.method:
            # The service wrapper keeps the handler it wraps (service_handler), and aiohttp's
            # wrapper around it the one the lane runs (on_aiohttp).
            inner = getattr(candidate.handler, "__wrapped__", None)
            if inner not in _HOT_HANDLERS:
                raise ValueError(f"lane route {route.name!r}: its handler is not marked @hot")
            return cast(HotHandler, getattr(candidate.handler, "lane_handler", candidate.handler))
    raise ValueError(f"lane route {route.name!r}: no {route.method} handler")


class FastLane(asyncio.Protocol):
    """One connection on the lane, until it closes or is handed over to aiohttp."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        """Every byte of the request in progress (what a handover passes on)."""
        self._pending = bytearray()
        """Bytes that came while an answer was being worked out."""
        self._holds: set[str] = set()
        """Why reading is paused: ``pending`` (too much sent ahead), ``writing`` (the client
        is not reading its answers), ``paced`` (refused, until its Retry-After has passed)."""
        self._begun = 0
        self._complete = 0
        self._url = bytearray()
        self._headers = LaneHeaders()
        self._header_count = 0
        self._once: set[bytes] = set()
        self._body = bytearray()
        self._refuse = ""
        self._found: tuple[HotHandler, dict[str, str]] | None = None
        self._announced_body = False
        self._task: asyncio.Task[None] | None = None
        """The connection's serving task (:meth:`_serve`), from its first request on."""
        self._waiting: asyncio.Future[tuple[HotHandler, LaneRequest] | None] | None = None
        """What the serving task awaits between requests: the next one, or None to end."""
        self.busy = False
        self.idle_since = lanes.tick
        self.paced_until = 0
        """The tick at which a refused connection reads again; 0 when it is not paced."""
        self._seq = 0
        """The number of the request being answered, for its made id (RequestIds)."""

    # The request being answered, as its log lines see it (codeengine.logs.RequestFields).

    @property
    def request_id(self) -> str:
        """The id of the request being answered: the caller's if sane, else the made one."""
        inbound = dict.get(self._headers, REQUEST_ID_HEADER)
        if inbound is not None:
            sane = sane_request_id(inbound)
            if sane is not None:
                return sane
        return REQUEST_IDS.text(self._seq)

    def _request_id_bytes(self) -> bytes:
        """:attr:`request_id` as the answer's header value, made without the text."""
        if REQUEST_ID_HEADER in self._headers:  # dict's own lookup: LaneHeaders.get is Python
            inbound = self._headers[REQUEST_ID_HEADER]
            if sane_request_id(inbound) is not None:
                return inbound.encode()
        return b"%s%x" % (REQUEST_IDS.prefix_bytes, self._seq)

    @property
    def trace_id(self) -> str | None:
        """The trace id of the request's valid ``traceparent``, if it came with one."""
        trace = self._trace()
        return None if trace is None else trace[0]

    @property
    def parent_id(self) -> str | None:
        """The parent id of the request's valid ``traceparent``, if it came with one."""
        trace = self._trace()
        return None if trace is None else trace[1]

    def _trace(self) -> tuple[str, str] | None:
        raw = dict.get(self._headers, TRACEPARENT_HEADER)
        return None if raw is None else parse_traceparent(raw)

    # Connection events.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)
        # As aiohttp sets its connections: no Nagle delay, TCP keep-alive probes.
        tcp_nodelay(self._transport, True)
        tcp_keepalive(self._transport)
        self._lanes.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lanes.forget(self)
        self._end_serving()

    def data_received(self, data: bytes) -> None:
        if self.busy or self.paced_until:
            self._pending += data
            if len(self._pending) > MAX_PENDING_BYTES:
                self._hold("pending")
            return
        self._received += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._handover("header")
            return
        except httptools.HttpParserError:
            # aiohttp's parser gives malformed bytes the answer it always gives.
            self._handover("malformed")
            return
        if self._begun > 1:
            # More than one request in hand: aiohttp answers them in order.
            self._handover("pipelined")
        elif self._refuse:
            self._handover(self._refuse)
        elif self._complete == 0:
            if len(self._received) > MAX_HEAD_BYTES + self._lanes.max_body_bytes:
                self._handover("large")
        else:
            self._start()

    @property
    def closed(self) -> bool:
        """Closed or closing (or handed over): nothing more to close here."""
        return self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        """Close the connection (keep-alive timeout, shutdown, a full worker's eviction)."""
        if self._transport is not None:
            self._transport.close()
        self._end_serving()

    def pause_writing(self) -> None:
        # The client is not reading its answers: read no more requests until it does.
        self._hold("writing")

    def resume_writing(self) -> None:
        self._release("writing")

    def _hold(self, why: str) -> None:
        if not self._holds and self._transport is not None:
            self._transport.pause_reading()
        self._holds.add(why)

    def _release(self, why: str) -> None:
        if why in self._holds:
            self._holds.discard(why)
            if not self._holds and self._transport is not None:
                self._transport.resume_reading()

    def unpace(self) -> None:
        """Read again after a refusal (:meth:`Lanes.pace`): idle from now, the bytes that came
        meanwhile parsed first."""
        self.paced_until = 0
        self.idle_since = self._lanes.tick
        if self.closed:
            return  # closed or evicted while paced: nothing to read
        pending = bytes(self._pending)
        self._pending.clear()
        self._release("pending")
        self._release("paced")
        if pending:
            self.data_received(pending)

    # Parser callbacks (httptools calls them from feed_data).

    def on_message_begin(self) -> None:
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_FIELD_BYTES:
            self._refuse = "large"

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if len(name) > MAX_FIELD_BYTES or len(value) > MAX_FIELD_BYTES:
            self._refuse = "large"
        lowered = name.lower()
        if lowered in _ONCE:
            # Host twice, say: aiohttp refuses the request; so it must be the one to answer.
            if lowered in self._once:
                self._refuse = "header"
            self._once.add(lowered)
        kept = _KEPT.get(lowered)
        if kept is not None:
            if kept in self._headers:
                self._refuse = "header"
            self._headers[kept] = value.decode("utf-8", "surrogateescape")
        elif lowered in _REFUSED:
            self._refuse = "header"
        elif lowered == b"content-length" and value.strip() != b"0":
            self._announced_body = True

    def on_headers_complete(self) -> None:
        # Decided before the body: aiohttp may answer a request it does not route (404, 405)
        # without waiting for a body, so what the lane does not serve goes over now.
        parser = self._parser
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
            self._refuse = "version"
        elif b"host" not in self._once or self._header_count > MAX_HEADERS:
            # HTTP/1.1 requires exactly one Host (RFC 9112 §3.2): aiohttp answers 400.
            self._refuse = "header"
        elif b"?" in self._url or b"#" in self._url:
            self._refuse = "query"
        else:
            method = parser.get_method()
            self._found = self._lanes.route(method, bytes(self._url))
            if self._found is None:
                self._refuse = "route"
            elif self._announced_body and method in _BODYLESS:
                # aiohttp answers a GET without reading the body it announces; the lane would
                # wait for it first.
                self._refuse = "header"

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self._lanes.max_body_bytes:
            self._refuse = "large"

    def on_message_complete(self) -> None:
        self._complete += 1

    # Answering.

    def _start(self) -> None:
        assert self._found is not None  # no refusal: on_headers_complete found the route
        handler, match_info = self._found
        method = self._parser.get_method().decode()
        request = LaneRequest(self._lanes.app, method, match_info, self._headers, bytes(self._body))
        self._seq = REQUEST_IDS.next_seq()
        self.busy = True
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            self._waiting = None
            waiting.set_result((handler, request))
            return
        loop = self._lanes.loop
        assert loop is not None
        # Kept: the loop holds tasks only weakly.
        self._task = loop.create_task(self._serve(handler, request))

    async def _serve(self, handler: HotHandler, request: LaneRequest) -> None:
        """Answer the connection's requests one after another, while it stays on the lane.

        One task for the connection rather than one per request: a request then costs a future
        instead of a task and its coroutine, about 0.5-1 µs less (timeit). Handlers run in a
        task, so ``asyncio.timeout`` works in them, and a client that goes away does not cancel
        the answer being worked out, as on aiohttp. Unlike aiohttp, the requests of one
        connection share that task's context: a hot handler must not keep request state in a
        context variable (none does), or the next request on the connection would see it.
        The lane's own is the one exception: the connection stands for the request it is
        answering, so the context is set once for all of them.
        """
        loop = self._lanes.loop
        assert loop is not None
        REQUEST_CONTEXT.set(self)
        while True:
            try:
                response = await handler(request)
                data = self._lanes.encode(response, self._request_id_bytes())
            except Exception:
                # The service wrapper answers every failure; this is a fault of the lane itself.
                log.exception("fast lane failed to answer %s", request.method)
                self._abort()
                return
            transport = self._transport
            if transport is None or transport.is_closing():
                return
            transport.write(data)
            if self._lanes.closing:
                transport.close()
                return
            # Waited on before the connection is ready for its next request: from then on,
            # _start hands every request to this task.
            waiting = self._waiting = loop.create_future()
            self._reset()
            if response.status == 503 and _refused(response):
                # What came early waits with what the kernel holds, until unpace.
                self.paced_until = self._lanes.pace(self, _retry_after_s(response))
                self._hold("paced")
            elif self._pending:
                pending = bytes(self._pending)
                self._pending.clear()
                self._release("pending")
                self.data_received(pending)
                del pending
            elif self._holds:
                # Nothing came early (the usual case, which pays for no copy or call).
                self._release("pending")
            # An idle connection keeps nothing of the request it answered: its body, its answer
            # and the bytes that came early would otherwise stay until the next request, some
            # 30-50 KiB a connection at worst.
            del request, data, response
            following = await waiting
            if following is None:
                return
            handler, request = following

    def _end_serving(self) -> None:
        """End the serving task if it waits for a request (closed, handed over)."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def _reset(self) -> None:
        """Ready for the next request on this connection."""
        self.busy = False
        self.idle_since = self._lanes.tick
        self._received.clear()
        self._url.clear()
        self._body.clear()
        self._headers = LaneHeaders()
        self._found = None
        self._announced_body = False
        self._once.clear()
        self._header_count = self._begun = self._complete = 0

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _handover(self, why: str) -> None:
        """Pass the connection, and the bytes read of the request in progress, to aiohttp."""
        transport = self._transport
        if transport is None:
            return  # closed meanwhile: nothing to hand over, nothing to count
        LANE_HANDOVERS.labels(why).inc()
        self._lanes.forget(self)
        self._transport = None
        self._end_serving()
        protocol = self._lanes.handover()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if "writing" in self._holds:
            # The transport tells a protocol only when its buffer crosses the mark, and it
            # crossed it while the lane was the protocol: pass the news on, or aiohttp would
            # write without waiting and never hear of it until the buffer drains.
            cast(asyncio.Protocol, protocol).pause_writing()
        received = bytes(self._received + self._pending)
        self._received.clear()
        self._pending.clear()
        if received:
            cast(asyncio.Protocol, protocol).data_received(received)
        if self._holds:
            # aiohttp paces its reading itself from here on.
            self._holds.clear()
            transport.resume_reading()


def _refused(response: web.StreamResponse | JsonAnswer) -> bool:
    """Whether ``response`` is admission's refusal (503 ``OVERLOADED``), not a store's 503."""
    return type(response) is web.Response and response.get(REASON) == _OVERLOADED


def _retry_after_s(response: web.StreamResponse | JsonAnswer) -> float:
    """The seconds ``response`` asks the client to wait (a sweep if it names none)."""
    headers = cast(web.Response, response).headers
    try:
        return max(0.0, float(headers.get("Retry-After", SWEEP_S)))
    except ValueError:
        return SWEEP_S
