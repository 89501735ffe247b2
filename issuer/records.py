"""The records service as the ops console sees it: its last published status, and its age.

The records service publishes a compact status to Redis every ten seconds
(``codeengine.code.recordstatus``); ``GET /v1/ops/records`` (scope ``admin``) reads it back with
its age at the issuer's clock and ``stale`` once it is older than three periods, so a records
service that stopped, or cannot reach Redis, shows as stale, not as quiet.
"""

from __future__ import annotations

__all__ = ["RECORDS_OPS_ROUTES"]

import logging

from aiohttp import web

from codeengine.code.errors import BadRequest
from codeengine.code.recordstatus import STALE_AFTER_S, read_status_fields
from codeengine.store.redisstore import RedisStore
from codeengine.web.routes import JSON, Route
from codeengine.web.runtime import CLOCK, STORE

log = logging.getLogger("codeengine.issuer")


async def records_view(request: web.Request) -> web.Response:
    """The records service's last status, with its age; ``published: false`` if none."""
    store = request.app[STORE]
    if not isinstance(store, RedisStore):
        raise BadRequest("this store keeps no records status")
    fields = await store.records_status()
    now_ms = int(request.app[CLOCK]() * 1000)
    if fields is None:
        return web.json_response({"published": False, "stale": True})
    try:
        status = read_status_fields(fields, now_ms)
    except ValueError as exc:
        # Written by another version, or by hand: shown as missing, and said in the log.
        log.warning("records status not readable: %s", exc)
        return web.json_response({"published": False, "stale": True})
    return web.json_response({"published": True, **status})


RECORDS_OPS_ROUTES = [
    Route(
        "GET",
        "/v1/ops/records",
        records_view,
        "records_view",
        scope="admin",
        summary="The records service for the ops console: lag, days kept, store size (ops)",
        description="The status the records service last published (every 10 s): "
        "`published_at` (ms) and its `age_s`; `stale` once it is older than "
        f"{STALE_AFTER_S:g} s (the records service is down or cannot reach Redis); "
        "`lag` per stream, `days` with rows per table, `oldest_day` kept, `retention_days`, "
        "`store_bytes`, `rows` and `tables`. `published: false` if it never published.",
        answers={"200": ("The records service's status", {JSON: {"type": "object"}})},
        problems=(503,),
    ),
]
