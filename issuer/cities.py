"""Ops view of the per-city endpoints: who holds each city's write lease, and planned switches.

A handover sets a hold; the endpoint holding the lease passes it on at its next beat, and the
answer comes once it has (at most two lease periods).

``GET /v1/ops/cities`` lists every city of the table with its lease holder, epoch and latest
switches (the ops console reads it). ``POST /v1/ops/cities/{city}/handover`` moves a city's
writes on purpose (a planned failover) and holds them there; ``hold_s: 0`` lifts the hold, and
the lease returns to the primary by the usual rule. Both need scope ``admin``.
"""

from __future__ import annotations

__all__ = ["CITY_OPS_ROUTES"]

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from codeengine.code.cities import City, load_cities
from codeengine.code.errors import BadRequest
from codeengine.code.fencing import Lease, Role, Switch
from codeengine.code.model import CITIES, CityCode
from codeengine.store.redisstore import RedisStore
from codeengine.web.body import Field, read_object
from codeengine.web.routes import Route, object_body, path_param, ref
from codeengine.web.runtime import SETTINGS, STORE

MAX_HOLD_S = 7 * 24 * 3600
HANDOVER_FIELDS = {
    "to": Field(str, max_length=8, schema={"enum": [role.value for role in Role]}),
    "hold_s": Field(
        int,
        minimum=0,
        maximum=MAX_HOLD_S,
        schema={"description": "Keep the lease there this long; 0 lifts a hold."},
    ),
}
SWITCHES_SHOWN = 20
HANDOVER_POLL_S = 0.1


@functools.cache
def _load(directory: Path) -> dict[CityCode, City]:
    return load_cities(directory)


def _table(request: web.Request) -> dict[CityCode, City]:
    """The city table of this issuer's settings (``codes.cities_dir``), read once."""
    return _load(request.app[SETTINGS].codes.cities_path())


def _store(request: web.Request) -> RedisStore:
    store = request.app[STORE]
    if not isinstance(store, RedisStore):
        raise BadRequest("this store keeps no city leases")
    return store


def city_view(code: int, names: tuple[str, str], lease: Lease, log: list[Switch]) -> dict[str, Any]:
    """One city's entry of ``GET /v1/ops/cities``."""
    since = next((s.at for s in log if s.epoch == lease.epoch), None)
    return {
        "code": code,
        "name": names[0],
        "name_en": names[1],
        "writer": lease.owner.value if lease.owner else None,
        "epoch": lease.epoch,
        "since": since,
        "held_for": lease.held_for.value if lease.held_for else None,
        "switches": [
            {
                "at": s.at,
                "from": s.source.value if s.source else None,
                "to": s.to.value,
                "epoch": s.epoch,
                "why": s.why,
            }
            for s in log
        ],
    }


async def city_list(request: web.Request) -> web.Response:
    """Every city's write-lease holder, epoch and latest switches."""
    store = _store(request)
    cities = list(_table(request).values())
    states = await asyncio.gather(*(store.fence_state(c.code, SWITCHES_SHOWN) for c in cities))
    return web.json_response(
        {
            "cities": [
                city_view(c.code, (c.name, c.name_en), lease, log)
                for c, (lease, log) in zip(cities, states, strict=True)
            ]
        }
    )


async def city_handover(request: web.Request) -> web.Response:
    """Move the city's write lease to ``to`` and hold it there for ``hold_s``."""
    text = request.match_info["city"]
    codes = _table(request)
    if not text.isdigit() or len(text) != 6 or CityCode(int(text)) not in codes:
        raise BadRequest("the path does not name a city of the table")
    body = await read_object(request, HANDOVER_FIELDS)
    if body["to"] not in (Role.PRIMARY, Role.BACKUP):
        raise BadRequest("to: expected primary or backup")
    city = codes[CityCode(int(text))]
    store = _store(request)
    lease_ms = request.app[SETTINGS].fence.lease_ms
    to = Role(body["to"])
    await store.fence_handover(city.code, to, body["hold_s"] * 1000, lease_ms)
    # The holder hands the lease over at its next beat; answer once it has (or a dead holder's
    # lease has run out), or after two lease periods with the state as it is then.
    deadline = time.monotonic() + 2 * lease_ms / 1000
    while True:
        lease, log = await store.fence_state(city.code, SWITCHES_SHOWN)
        if not body["hold_s"] or lease.owner is to or time.monotonic() > deadline:
            break
        await asyncio.sleep(HANDOVER_POLL_S)
    return web.json_response(city_view(city.code, (city.name, city.name_en), lease, log))


CITY_OPS_ROUTES = [
    Route(
        "GET",
        "/v1/ops/cities",
        city_list,
        "city_list",
        scope="admin",
        summary="Per-city endpoints: who holds each city's write lease (ops)",
        description="For each city of the table: the endpoint (primary or backup, 接口备用环境) "
        "that accepts writes now, its fencing epoch, and the latest switches with their cause.",
        answers={"200": ("Every city", ref("CityList"))},
        problems=(503,),
    ),
    Route(
        "POST",
        "/v1/ops/cities/{city}/handover",
        city_handover,
        "city_handover",
        scope="admin",
        summary="Planned failover: move a city's writes to one endpoint and hold them",
        description="The endpoint holding the lease passes it on at its next beat (the answer "
        "waits for that, up to two lease periods); the other endpoint then refuses writes (503 "
        "NOT_WRITER) and reports not ready, so clients move. `hold_s: 0` lifts the hold; the "
        "lease then returns to the primary after its hand-back period.",
        parameters=(
            path_param("city", {"type": "string", "enum": [str(c) for c in sorted(CITIES)]}),
        ),
        body=object_body("HandoverRequest", HANDOVER_FIELDS),
        answers={"200": ("The city after the handover", ref("CityState"))},
        problems=(400, 413, 415, 503),
    ),
]
