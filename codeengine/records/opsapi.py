"""The records service's ops routes (scope ``admin``): its status, who asked what, and exports.

* ``GET /v1/records/status``: what waits in each stream, what the store keeps per table and
  day, the oldest day kept, retention, size on disk (:mod:`codeengine.records.status`).
* ``GET /v1/records/access``: the access table, by time, paginated like the queries: who asked
  the library what, and when. Reading it is itself recorded.
* ``GET /v1/records/export``: one city's China day of one table as a CSV or Parquet file
  (:mod:`codeengine.records.export`), streamed as the engine renders it; what ``codeengine
  records export`` asks while the records service holds the embedded engine. Recorded before
  the first byte leaves.
"""

from __future__ import annotations

__all__ = ["CONSUMER", "RECORDS_OPS_API"]

import asyncio
import os
from typing import Any

import msgpack
from aiohttp import web

from codeengine.code.errors import BadRequest, Reason, StoreUnavailable
from codeengine.code.model import CITIES
from codeengine.records import api, metrics
from codeengine.records import export as ex
from codeengine.records.consumer import RecordsConsumer
from codeengine.records.engine import EngineError, RecordsEngine
from codeengine.records.schema import ACCESS
from codeengine.records.status import status_at
from codeengine.web.auth import CLIENT
from codeengine.web.requestid import current_request_id
from codeengine.web.routes import JSON, Route, query_param
from codeengine.web.runtime import CLOCK, SETTINGS

CONSUMER = web.AppKey("records_consumer", RecordsConsumer)
"""The consumer, when the service runs one (the status then has its lag); re-exported by
:mod:`codeengine.records.service`."""


def _engine(request: web.Request) -> RecordsEngine:
    return request.app[api.ENGINE]


async def _record(
    request: web.Request, operation: str, target: str, window: tuple[int, int], rows: int
) -> None:
    """Record the call in the access table; unrecorded, it is not answered (503)."""
    at_ms = int(request.app[CLOCK]() * 1000)
    row = [at_ms, request[CLIENT].name, operation, target, window[0], window[1], rows,
           current_request_id() or ""]  # fmt: skip
    try:
        await asyncio.to_thread(
            _engine(request).insert_packed, ACCESS, msgpack.packb(row)[1:], os.urandom(12).hex()
        )
    except EngineError as exc:
        raise StoreUnavailable("the call could not be recorded; not answered") from exc
    metrics.ACCESS_RECORDED.labels(operation).inc()


async def _blocking(call: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(call, *args)
    except EngineError as exc:
        raise StoreUnavailable("the records engine did not answer") from exc


async def records_status(request: web.Request) -> web.Response:
    """The service's lag, the store's days, sizes and rows, and its retention."""
    consumer = request.app.get(CONSUMER)
    retention = request.app[SETTINGS].records.retention_days
    status = await _blocking(status_at, _engine(request), consumer, retention,
                             request.app[CLOCK]())  # fmt: skip
    return web.json_response(status)


async def records_access(request: web.Request) -> web.Response:
    """The access table in a window, by time; paginated; this call recorded too."""
    window = api._window(request)
    limit = api._limit(request)
    after = api._cursor(request, (int, str, str))
    engine = _engine(request)
    parameters: dict[str, object] = {"from_ms": window[0], "to_ms": window[1]}
    cursor = ""
    if after is not None:
        cursor = ("AND (toUnixTimestamp64Milli(at), request_id, target) > "
                  "({c_at:Int64}, {c_id:String}, {c_target:String}) ")  # fmt: skip
        parameters |= {"c_at": after[0], "c_id": after[1], "c_target": after[2]}
    rows = await _blocking(
        engine.rows,
        "SELECT toUnixTimestamp64Milli(at), request_id, target, client, operation, from_ms, "
        f"to_ms, rows FROM {engine.database}.{ACCESS.name} "
        "WHERE at >= fromUnixTimestamp64Milli({from_ms:Int64}) "
        f"AND at < fromUnixTimestamp64Milli({{to_ms:Int64}}) {cursor}"
        f"ORDER BY toUnixTimestamp64Milli(at), request_id, target LIMIT {int(limit)}",
        parameters,
    )
    body = {
        "from": window[0],
        "to": window[1],
        "access": [
            {"at": int(r[0]), "client": r[3], "operation": r[4], "target": r[2],
             "from": int(r[5]), "to": int(r[6]), "rows": int(r[7]), "request_id": r[1]}
            for r in rows
        ],
        "next": api._next(rows, limit, [int(rows[-1][0]), rows[-1][1], rows[-1][2]] if rows
                          else ()),
    }  # fmt: skip
    await _record(request, "access", "*", window, len(rows))
    return web.json_response(body)


def _choice(request: web.Request, name: str, choices: tuple[str, ...], default: str | None) -> str:
    text = request.query.get(name, default)
    if text is None:
        raise BadRequest(f"query {name!r} is required", reason=Reason.MISSING_FIELD)
    if text not in choices:
        raise BadRequest(f"query {name!r} must be one of {', '.join(choices)}",
                         reason=Reason.INVALID_FIELD)  # fmt: skip
    return text


async def records_export(request: web.Request) -> web.StreamResponse:
    """One city's China day of one table, as the engine renders it in the format asked."""
    city = api._int(request, "city", high=999_999)
    if city not in CITIES:
        raise BadRequest("query 'city' is not a city of the province", reason=Reason.UNKNOWN_CITY)
    day_text = request.query.get("day")
    if day_text is None:
        raise BadRequest("query 'day' is required", reason=Reason.MISSING_FIELD)
    try:
        day = ex.parse_day(day_text)
    except ValueError:
        raise BadRequest("query 'day' is a day, YYYY-MM-DD", reason=Reason.INVALID_FIELD) from None
    table = _choice(request, "table", ex.EXPORT_TABLES, None)
    fmt = ex.FORMATS[_choice(request, "format", tuple(ex.FORMATS), "csv")]
    engine = _engine(request)
    window = ex.day_window(day)
    parameters = {"city": city, "from_ms": window[0], "to_ms": window[1]}
    counted = await _blocking(engine.rows, ex.export_rows(engine.database, table), parameters)
    rows = int(counted[0][0])
    await _record(request, "export", f"{city}:{table}", window, rows)
    chunks = engine.stream(ex.export_statement(engine.database, table, fmt), parameters)
    # The first chunk before the headers: an engine that refuses still answers a problem.
    first = await _blocking(next, chunks, b"")
    response = web.StreamResponse(
        headers={
            "Content-Type": fmt.media_type,
            "Content-Disposition": f'attachment; filename="{ex.file_name(table, city, day, fmt)}"',
            "X-Records-Rows": str(rows),
        }
    )
    await response.prepare(request)
    chunk = first
    while chunk:
        await response.write(chunk)
        try:
            chunk = await asyncio.to_thread(next, chunks, b"")
        except EngineError:
            # Headers are gone: end the body short; the caller's digest and row count will
            # not match, and the CLI says so.
            break
    await response.write_eof()
    return response


_MS = {"type": "integer", "minimum": 0, "maximum": api.MAX_MS}
_CITY = {"type": "integer", "enum": sorted(CITIES)}

RECORDS_OPS_API = [
    Route(
        "GET",
        "/v1/records/status",
        records_status,
        "records_status",
        scope="admin",
        summary="The records service for ops: stream lag, rows and bytes per table and day",
        description="`lag`: per stream (table and city), the entries not yet stored and the "
        "oldest one's age; `tables`: per table its rows, bytes on disk and day partitions; "
        "`oldest_day` kept, `retention_days`, `store_bytes` and `rows` in all. A compact copy "
        "is published to the ops console every 10 s.",
        answers={"200": ("The status", {JSON: {"type": "object"}})},
        problems=(503,),
    ),
    Route(
        "GET",
        "/v1/records/access",
        records_access,
        "records_access",
        scope="admin",
        summary="Who asked the library what, and when: the access table in a window",
        description="By time; paginated like the queries (`limit`, `cursor`, `next`). Each "
        "row: when, the client, the operation, its target (venue, subject, city), the window "
        "it asked about, the rows it was answered and the request id. This call is recorded "
        "too.",
        parameters=(
            query_param("from", _MS, required=True, description="ms since the epoch, inclusive"),
            query_param(
                "to",
                _MS,
                required=True,
                description="ms since the epoch, exclusive; at most "
                "records.max_window_days after `from`",
            ),
            query_param(
                "limit",
                {"type": "integer", "minimum": 1},
                description="rows per page (default 1000, at most records.page_max)",
            ),
            query_param(
                "cursor",
                {"type": "string", "maxLength": 400},
                description="the `next` of the page before",
            ),
        ),
        answers={"200": ("A page of the access table", {JSON: {"type": "object"}})},
        problems=(400, 503),
    ),
    Route(
        "GET",
        "/v1/records/export",
        records_export,
        "records_export",
        scope="admin",
        summary="Data return to cities (数据回流): one city's day of scans or changes as a file",
        description="The China day (00:00 to 24:00 at +08:00) of `city`, of `table` (`scans` "
        "or `changes`), as CSV with a header row or Parquet, rendered by the engine and "
        "streamed. `X-Records-Rows` is the count when the export began. Recorded in the "
        "access table before the first byte. `codeengine records export` calls this while the "
        "records service runs.",
        parameters=(
            query_param("city", _CITY, required=True),
            query_param(
                "day",
                {"type": "string", "format": "date"},
                required=True,
                description="YYYY-MM-DD, a China day",
            ),
            query_param("table", {"type": "string", "enum": list(ex.EXPORT_TABLES)}, required=True),
            query_param(
                "format",
                {"type": "string", "enum": list(ex.FORMATS)},
                description="csv (default) or parquet",
            ),
        ),
        answers={
            "200": (
                "The file",
                {
                    ex.FORMATS["csv"].media_type: {"schema": {"type": "string"}},
                    ex.FORMATS["parquet"].media_type: {
                        "schema": {"type": "string", "format": "binary"}
                    },
                },
            )
        },
        problems=(400, 503),
    ),
]
"""The ops routes, after the query routes in the service's list."""
