"""Access, problems and metrics for every route, wrapped around each handler once at start-up.

Each handler is wrapped when its route is added: the wrapper checks the route's scope and the
client's rate, turns any failure into a problem body, and counts and times the answer by
operation and reason. aiohttp runs it inside one more wrapper that gives the request its id
(the log context and the answer's ``X-Request-Id``, codeengine.web.requestid); the fast lane
runs it bare and gives the id itself, so the lane pays nothing for that wrapper. The wrapper
knows its operation and scope from the start, so a request pays for no lookup of either. This
replaces an aiohttp middleware: with any middleware installed, aiohttp runs every request
through a chain built around it plus a frame of its own, which cost about 10 µs a request here,
a tenth of the framework floor.

A catch-all route, added last, answers paths and methods no route serves with the same problem
bodies (404 ``NOT_FOUND``, 405 ``METHOD_NOT_ALLOWED`` with ``Allow``).
"""

from __future__ import annotations

__all__ = [
    "METRICS",
    "UNMATCHED",
    "add_routes",
    "add_service_routes",
    "on_aiohttp",
    "service_handler",
    "via_service",
]

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import cast

from aiohttp import web
from aiohttp.typedefs import Handler

from codeengine.logs import REQUEST_CONTEXT
from codeengine.web.admission import ADMISSION, UNSHED, overloaded
from codeengine.web.answers import JsonAnswer
from codeengine.web.auth import CLIENT, authorize
from codeengine.web.fastlane import LANE_ROUTES, HotHandler, HotRequest, LaneRequest, LaneRoute
from codeengine.web.metrics import RequestMetrics
from codeengine.web.problems import REASON, problem_for
from codeengine.web.requestid import REQUEST_ID_HEADER, HeaderFields
from codeengine.web.routes import Route

METRICS = web.AppKey("request_metrics", RequestMetrics)
UNMATCHED = "unmatched"
_OK = "OK"


def service_handler(handler: Handler, operation: str, scope: str | None) -> HotHandler:
    """``handler`` behind authorization (if ``scope``), problem mapping and request metrics.

    The wrapper reads only what :class:`~codeengine.web.fastlane.HotRequest` names, so the fast
    lane can run it too; it passes its request on to ``handler`` as is, and the lane serves only
    routes whose handler is marked ``@hot`` (typed for a HotRequest).
    """
    clock = time.perf_counter
    # A hot handler may answer with a JsonAnswer (codeengine.web.answers).
    inner = cast(Callable[[web.Request], Awaitable[web.StreamResponse | JsonAnswer]], handler)

    sheddable = operation not in UNSHED

    async def wrapped(request: HotRequest) -> web.StreamResponse | JsonAnswer:
        started = clock()
        response: web.StreamResponse | JsonAnswer
        # Refused before any work when the worker is saturated (codeengine.web.admission).
        admission = request.app.get(ADMISSION) if sheddable else None
        if admission is not None and admission.full():
            admission.refused += 1
            response = overloaded()
        else:
            if admission is not None:
                admission.in_flight += 1
            try:
                if scope is not None:
                    authorize(request, scope)
                response = await inner(cast(web.Request, request))
                if type(response) is JsonAnswer and type(request) is not LaneRequest:
                    # aiohttp sends responses only; the lane writes a JsonAnswer itself.
                    response = response.response()
            except Exception as exc:  # problem_for maps every kind, and logs the unexpected ones
                client = _client_name(request)
                latency = clock() - started
                response = problem_for(exc, operation, request.method, client, latency)
            finally:
                if admission is not None:
                    admission.in_flight -= 1
        # Problems (status >= 400) carry their reason; a success has none to look up.
        if response.status < 400:
            reason = _OK
        else:
            reason = cast(web.StreamResponse, response).get(REASON, _OK)
        request.app[METRICS].record(operation, reason, clock() - started)
        return response

    wrapped.__name__ = wrapped.__qualname__ = f"service_{operation}"
    wrapped.__doc__ = handler.__doc__
    wrapped.__wrapped__ = handler  # type: ignore[attr-defined]
    return wrapped


def on_aiohttp(wrapped: HotHandler) -> Handler:
    """``wrapped`` (a :func:`service_handler`) as aiohttp runs it: with the request's id in the
    log context while it answers, and in the answer's ``X-Request-Id``.

    The lane runs ``wrapped`` itself (``lane_handler``), with the connection as the log context
    and the id written by the lane (codeengine.web.fastlane)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        fields = HeaderFields(request.headers)
        context = REQUEST_CONTEXT.set(fields)
        try:
            # Served by aiohttp, the wrapper answers with a response: a JsonAnswer only on the
            # lane.
            response = cast(web.StreamResponse, await wrapped(request))
        finally:
            REQUEST_CONTEXT.reset(context)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = fields.request_id
        return response

    handle.__name__ = handle.__qualname__ = wrapped.__name__
    handle.__doc__ = wrapped.__doc__
    handle.__wrapped__ = wrapped.__wrapped__  # type: ignore[attr-defined]
    handle.lane_handler = wrapped  # type: ignore[attr-defined]
    return handle


def _client_name(request: HotRequest) -> str | None:
    """The authenticated client's name, for a log line; None before authentication."""
    try:
        return request[CLIENT].name
    except KeyError:
        return None


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """No route serves this path, or not with this method: 405 with Allow, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name == UNMATCHED:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


def add_service_routes(
    app: web.Application, routes: Iterable[web.RouteDef], scopes: Mapping[str, str]
) -> None:
    """Add ``routes`` with their handlers wrapped, then the catch-all for everything else.

    ``scopes`` maps a route's name (its operation) to the scope it needs; routes not named there
    are open. Every route must have a name: it labels the route's metrics.
    """
    for route in routes:
        if not route.kwargs.get("name"):
            raise ValueError(f"route {route.method} {route.path} needs a name")
        name = route.kwargs["name"]
        handler = service_handler(cast(Handler, route.handler), name, scopes.get(name))
        served = on_aiohttp(handler)
        web.RouteDef(route.method, route.path, served, route.kwargs).register(app.router)
    fallback = on_aiohttp(service_handler(_unmatched, UNMATCHED, None))
    app.router.add_route("*", "/{path:.*}", fallback, name=UNMATCHED)


def add_routes(app: web.Application, routes: Sequence[Route]) -> None:
    """Serve the declared ``routes``: each behind its scope, the lane's among them on the lane.

    The scopes and the lane's routes are read off the declarations here, once, when the app is
    built; :func:`add_service_routes` wraps the handlers.
    """
    # PUBLIC is the only scope that is not a string.
    scopes = {route.name: route.scope for route in routes if isinstance(route.scope, str)}
    defs = [web.RouteDef(r.method, r.path, r.handler, {"name": r.name}) for r in routes]
    add_service_routes(app, defs, scopes)
    app[LANE_ROUTES] = tuple(LaneRoute(r.method, r.path, r.name) for r in routes if r.lane)


def via_service(handler: HotHandler) -> Handler:
    """A hot handler for a route list that :func:`add_service_routes` takes: it may answer with
    a :class:`~codeengine.web.answers.JsonAnswer`, which only the service wrapper turns into a
    response. Only a cast for the type checker: registered with aiohttp unwrapped, such a
    handler would fail on every request that gets a JsonAnswer."""
    return cast(Handler, handler)
