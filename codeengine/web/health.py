"""``/healthz`` (the process is up) and ``/readyz`` (it can do its work now)."""

from __future__ import annotations

__all__ = ["HEALTH_ROUTES", "READINESS_CHECKS", "ReadinessCheck"]

from collections.abc import Awaitable, Callable

from aiohttp import web

from codeengine.code.errors import CodeEngineError
from codeengine.web.routes import JSON, PUBLIC, Route

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""A named check raises CodeEngineError (or any exception) when the service is not ready, and
returns a reason code when it is ready but degraded (a shard down: requests for it fail, the
rest are served)."""

READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Every readiness check passes: the cluster answers and the keys are loaded.

    A shard that does not answer while the others do leaves the worker ready, saying so under
    ``degraded``: every worker shares the store, so taking them all out of a load balancer
    would turn a partial outage into a whole one (and a verifier answers degraded codes).
    """
    failed: dict[str, str] = {}
    degraded: dict[str, str] = {}
    for name, check in request.app[READINESS_CHECKS].items():
        try:
            note = await check()
        except CodeEngineError as exc:
            failed[name] = exc.reason.value
        except Exception as exc:
            failed[name] = type(exc).__name__
        else:
            if note is not None:
                degraded[name] = note
    if failed:
        return web.json_response({"status": "not ready", "failed": failed}, status=503)
    if degraded:
        return web.json_response({"status": "ready", "degraded": degraded})
    return web.json_response({"status": "ready"})


_READINESS = {
    "schema": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string"},
            "failed": {"type": "object", "additionalProperties": {"type": "string"}},
            "degraded": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
}
_UP = {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}
HEALTH_ROUTES = [
    Route(
        "GET",
        "/healthz",
        healthz,
        "healthz",
        scope=PUBLIC,
        summary="The process is up",
        answers={"200": ("Up", {JSON: {"schema": _UP}})},
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "readyz",
        scope=PUBLIC,
        summary="The cluster answers and the keys are loaded (`degraded`: a shard is down)",
        answers={
            "200": ("Ready", {JSON: _READINESS}),
            "503": ("Not ready; `failed` says why", {JSON: _READINESS}),
        },
    ),
]
