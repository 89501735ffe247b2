"""``/healthz`` (the process is up) and ``/readyz`` (it can do its work now)."""

from __future__ import annotations

__all__ = ["HEALTH_ROUTES", "READINESS_CHECKS", "ReadinessCheck"]

from collections.abc import Awaitable, Callable

from aiohttp import web

from codeengine.code.errors import CodeEngineError

ReadinessCheck = Callable[[], Awaitable[None]]
"""A named check raises CodeEngineError (or any exception) when the service is not ready."""

READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
HEALTH_ROUTES = web.RouteTableDef()


@HEALTH_ROUTES.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up and its loop answers."""
    return web.json_response({"status": "ok"})


@HEALTH_ROUTES.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    """Every readiness check passes: the cluster answers and the keys are loaded."""
    failed: dict[str, str] = {}
    for name, check in request.app[READINESS_CHECKS].items():
        try:
            await check()
        except CodeEngineError as exc:
            failed[name] = exc.reason.value
        except Exception as exc:
            failed[name] = type(exc).__name__
    if failed:
        return web.json_response({"status": "not ready", "failed": failed}, status=503)
    return web.json_response({"status": "ready"})
