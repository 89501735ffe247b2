"""The records API: the four questions, each behind a scope of its own, every call recorded.

A trajectory is personal data, so each query is recorded in the library's ``access`` table
(who asked, which operation, of what venue or subject, over which window, how many rows, the
request's id) before its answer leaves; a query that cannot be recorded is not answered
(503). Every input is checked here, at the boundary: times are milliseconds since the epoch,
``from < to`` and the window at most ``records.max_window_days``; pages are cut by an opaque
``cursor`` that the previous page answered as ``next``.
"""

from __future__ import annotations

__all__ = ["ENGINE", "RECORDS_API"]

import asyncio
import base64
import binascii
import os
from collections.abc import Sequence
from typing import Any

import msgpack
from aiohttp import web

from codeengine.code.errors import BadRequest, InvalidIdentifier, Reason, StoreUnavailable
from codeengine.code.model import CITIES
from codeengine.code.pseudonym import check_subject_id
from codeengine.code.scans import MAX_ID_CHARS
from codeengine.records import metrics
from codeengine.records import queries as q
from codeengine.records.engine import EngineError, RecordsEngine
from codeengine.records.schema import ACCESS
from codeengine.settings import RecordsSettings
from codeengine.web.auth import CLIENT
from codeengine.web.requestid import current_request_id
from codeengine.web.routes import JSON, Route, path_param, query_param
from codeengine.web.runtime import CLOCK, SETTINGS

ENGINE = web.AppKey("records_engine", RecordsEngine)
"""The engine the queries run on."""
DAY_MS = 86_400_000
MAX_MS = 10**15 - 1
DEFAULT_LIMIT = 1000
MAX_BUCKETS = 10_000
"""The most steps a counts query may ask for (a day by minute is 1,440)."""
MAX_CONTACT_WINDOW_S = 86_400


def _engine(request: web.Request) -> RecordsEngine:
    return request.app[ENGINE]


def _settings(request: web.Request) -> RecordsSettings:
    return request.app[SETTINGS].records


def _int(request: web.Request, name: str, default: int | None = None, *, low: int = 0,
         high: int = MAX_MS) -> int:  # fmt: skip
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise BadRequest(f"query {name!r} is required", reason=Reason.MISSING_FIELD)
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise BadRequest(
            f"query {name!r} must be a non-negative integer", reason=Reason.INVALID_FIELD
        )
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"query {name!r} must be {low} to {high}", reason=Reason.INVALID_FIELD)
    return value


def _window(request: web.Request) -> tuple[int, int]:
    """``from`` and ``to`` (both required): ``from < to``, at most the longest window apart."""
    from_ms, to_ms = _int(request, "from"), _int(request, "to")
    if from_ms >= to_ms:
        raise BadRequest("query 'from' must be before 'to'", reason=Reason.INVALID_FIELD)
    days = _settings(request).max_window_days
    if to_ms - from_ms > days * DAY_MS:
        raise BadRequest(f"the window is longer than {days} days", reason=Reason.INVALID_FIELD)
    return from_ms, to_ms


def _limit(request: web.Request) -> int:
    page_max = _settings(request).page_max
    return _int(request, "limit", min(DEFAULT_LIMIT, page_max), low=1, high=page_max)


def _venue(text: str) -> str:
    if not 1 <= len(text) <= MAX_ID_CHARS or not text.isprintable():
        raise BadRequest(
            f"a venue is 1 to {MAX_ID_CHARS} printable characters", reason=Reason.INVALID_FIELD
        )
    return text


def _subject(request: web.Request) -> str:
    try:
        subject: str = check_subject_id(request.match_info["subject"])
        return subject
    except InvalidIdentifier:
        raise BadRequest("the path does not name a subject pseudonym") from None


def _cursor(request: web.Request, types: Sequence[type]) -> tuple[Any, ...] | None:
    """The page cursor the previous page answered as ``next``, checked to be one: opaque to
    callers, it is the sort key of that page's last row."""
    text = request.query.get("cursor")
    if text is None:
        return None
    try:
        if len(text) > 400:
            raise ValueError
        items = msgpack.unpackb(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, msgpack.UnpackException):
        items = None
    if (
        not isinstance(items, list)
        or len(items) != len(types)
        or not all(type(i) is t for i, t in zip(items, types, strict=True))
    ):
        raise BadRequest("query 'cursor' is not one this service answered",
                         reason=Reason.INVALID_FIELD)  # fmt: skip
    return tuple(items)


def _next(rows: Sequence[Any], limit: int, key: Sequence[Any]) -> str | None:
    if len(rows) < limit:
        return None
    return base64.urlsafe_b64encode(msgpack.packb(list(key))).rstrip(b"=").decode()


async def _answer(
    request: web.Request,
    operation: str,
    target: str,
    window: tuple[int, int],
    rows: int,
    body: dict[str, Any],
) -> web.Response:
    """Record the query in the access table, then answer ``body``; unrecorded, no answer."""
    engine = _engine(request)
    at_ms = int(request.app[CLOCK]() * 1000)
    row = [at_ms, request[CLIENT].name, operation, target, window[0], window[1], rows,
           current_request_id() or ""]  # fmt: skip
    try:
        await asyncio.to_thread(
            engine.insert_packed, ACCESS, msgpack.packb(row)[1:], os.urandom(12).hex()
        )
    except EngineError as exc:
        raise StoreUnavailable("the query could not be recorded; not answered") from exc
    metrics.ACCESS_RECORDED.labels(operation).inc()
    return web.json_response(body)


async def _rows(call: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(call, *args)
    except EngineError as exc:
        raise StoreUnavailable("the records engine did not answer") from exc


def _scan(row: q.VenueScan | q.SubjectScan, place: str) -> dict[str, object]:
    """One scan as a page shows it: ``place`` is the column the page is not of (a venue's
    page names the subject, a subject's the venue)."""
    return {
        "at": row.at_ms,
        place: row[1],
        "terminal": row.terminal,
        "city": row.city,
        "result": row.reason,
        "colour": row.colour or None,
    }


async def _scan_page(
    request: web.Request, operation: str, of: str, value: str, query: Any, place: str
) -> web.Response:
    """A page of the scans of one venue or one subject (``of``), recorded as ``operation``."""
    window = _window(request)
    limit = _limit(request)
    after = _cursor(request, (int, str, str))
    rows = await _rows(query, _engine(request), value, *window, limit, after)
    body = {
        of: value,
        "from": window[0],
        "to": window[1],
        "scans": [_scan(r, place) for r in rows],
        "next": _next(rows, limit, rows[-1][:3] if rows else ()),
    }
    return await _answer(request, operation, value, window, len(rows), body)


async def venue_scans(request: web.Request) -> web.Response:
    """The scans at a venue in a window, by time; paginated."""
    venue = _venue(request.match_info["venue"])
    return await _scan_page(request, "venue_scans", "venue", venue, q.venue_scans, "subject")


async def subject_scans(request: web.Request) -> web.Response:
    """A subject's scans (trajectory) in a window, by time; paginated."""
    subject = _subject(request)
    return await _scan_page(request, "subject_scans", "subject", subject, q.subject_scans, "venue")


async def subject_changes(request: web.Request) -> web.Response:
    """A subject's colour changes and other audited writes in a window, by time; paginated."""
    subject = _subject(request)
    window = _window(request)
    limit = _limit(request)
    after = _cursor(request, (int, int, str, str))
    rows: list[q.Change] = await _rows(q.changes, _engine(request), subject, *window, limit, after)
    body = {
        "subject": subject,
        "from": window[0],
        "to": window[1],
        "changes": [
            {"at": r.at_ms, "city": r.city, "op": r.op, "old_colour": r.old_colour or None,
             "new_colour": r.new_colour or None, "version": r.version, "actor": r.actor,
             "reason": r.reason, "op_id": r.op_id}
            for r in rows
        ],
        "next": _next(rows, limit, (rows[-1].at_ms, rows[-1].version, rows[-1].op,
                                    rows[-1].op_id) if rows else ()),
    }  # fmt: skip
    return await _answer(request, "subject_changes", subject, window, len(rows), body)


async def counts(request: web.Request) -> web.Response:
    """Scans by result and colour per step, of a city or one of its venues."""
    city = _int(request, "city", high=999_999)
    if city not in CITIES:
        raise BadRequest("query 'city' is not a city of the province", reason=Reason.UNKNOWN_CITY)
    venue_text = request.query.get("venue")
    venue = None if venue_text is None else _venue(venue_text)
    window = _window(request)
    step = _int(request, "step", 60, low=60, high=DAY_MS // 1000)
    if step % 60:
        raise BadRequest("query 'step' is in seconds, a multiple of 60",
                         reason=Reason.INVALID_FIELD)  # fmt: skip
    if (window[1] - window[0]) / (step * 1000) > MAX_BUCKETS:
        raise BadRequest(f"more than {MAX_BUCKETS} steps in the window: a longer step",
                         reason=Reason.INVALID_FIELD)  # fmt: skip
    rows: list[q.CountRow] = await _rows(q.counts, _engine(request), city, venue, *window, step)
    body = {
        "city": city,
        "venue": venue,
        "from": window[0],
        "to": window[1],
        "step": step,
        "counts": [
            {"start": r.start_ms, "result": r.reason, "colour": r.colour or None, "scans": r.scans}
            for r in rows
        ],
    }
    target = str(city) if venue is None else f"{city}:{venue}"
    return await _answer(request, "counts", target, window, len(rows), body)


async def contacts(request: web.Request) -> web.Response:
    """Everyone who scanned at a venue within ``window_s`` of the subject's scans there."""
    subject = _subject(request)
    window = _window(request)
    window_s = _int(request, "window_s", 1800, low=1, high=MAX_CONTACT_WINDOW_S)
    limit = _limit(request)
    after = _cursor(request, (str, str))
    rows: list[q.Contact] = await _rows(
        q.contacts, _engine(request), subject, *window, window_s, limit, after
    )
    body = {
        "subject": subject,
        "from": window[0],
        "to": window[1],
        "window_s": window_s,
        "contacts": [
            {
                "subject": r.subject,
                "venue": r.venue,
                "first": r.first_ms,
                "last": r.last_ms,
                "subject_first": r.subject_first_ms,
                "scans": r.scans,
            }
            for r in rows
        ],
        "next": _next(rows, limit, rows[-1][:2] if rows else ()),
    }
    return await _answer(request, "contacts", subject, window, len(rows), body)


_MS = {"type": "integer", "minimum": 0, "maximum": MAX_MS}
_WINDOW_PARAMS = (
    query_param("from", _MS, required=True, description="ms since the epoch, inclusive"),
    query_param("to", _MS, required=True,
                description="ms since the epoch, exclusive; at most records.max_window_days "
                "after `from`"),
)  # fmt: skip
_PAGE_PARAMS = (
    query_param("limit", {"type": "integer", "minimum": 1},
                description="rows per page (default 1000, at most records.page_max)"),
    query_param("cursor", {"type": "string", "maxLength": 400},
                description="the `next` of the page before"),
)  # fmt: skip
_VENUE = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}
_SUBJECT = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"}
_PAGE_ANSWER = {"type": "object"}
_RECORDED = (
    " Recorded in the access table (who, what, when) before it is answered; a query that "
    "cannot be recorded answers 503."
)

RECORDS_API = [
    Route(
        "GET",
        "/v1/records/venues/{venue}/scans",
        venue_scans,
        "records_venue_scans",
        scope="records:venue",
        summary="The scans at a venue in a window: time, pseudonym, result, colour, terminal",
        description="By time; a page holds `limit` rows and answers `next` while more may "
        "follow." + _RECORDED,
        parameters=(path_param("venue", _VENUE), *_WINDOW_PARAMS, *_PAGE_PARAMS),
        answers={"200": ("A page of the venue's scans", {JSON: _PAGE_ANSWER})},
        problems=(400, 503),
    ),
    Route(
        "GET",
        "/v1/records/subjects/{subject}/scans",
        subject_scans,
        "records_subject_scans",
        scope="records:subject",
        summary="A subject's scans in a window (trajectory): time, venue, result, colour",
        description="`subject` is the pseudonym. By time; paginated like the venue's scans."
        + _RECORDED,
        parameters=(path_param("subject", _SUBJECT), *_WINDOW_PARAMS, *_PAGE_PARAMS),
        answers={"200": ("A page of the subject's scans", {JSON: _PAGE_ANSWER})},
        problems=(400, 503),
    ),
    Route(
        "GET",
        "/v1/records/subjects/{subject}/changes",
        subject_changes,
        "records_subject_changes",
        scope="records:subject",
        summary="A subject's colour changes and other audited writes in a window",
        description="From the issuers' change log: each write's time, operation, colour before "
        "and after, version, the client or tool that made it, its reason and `op_id`. By "
        "time; paginated like the scans. The audit trail (`GET /v1/subjects/{subject}/history` "
        "on the issuer) stays the record of truth." + _RECORDED,
        parameters=(path_param("subject", _SUBJECT), *_WINDOW_PARAMS, *_PAGE_PARAMS),
        answers={"200": ("A page of the subject's changes", {JSON: _PAGE_ANSWER})},
        problems=(400, 503),
    ),
    Route(
        "GET",
        "/v1/records/counts",
        counts,
        "records_counts",
        scope="records:counts",
        summary="Scans by result and colour per step, of a city or one of its venues",
        description="`step` in seconds, a whole number of minutes (default 60); at most "
        f"{MAX_BUCKETS} steps in the window. Steps without scans are left out." + _RECORDED,
        parameters=(
            query_param("city", {"type": "integer"}, required=True),
            query_param("venue", _VENUE),
            *_WINDOW_PARAMS,
            query_param("step", {"type": "integer", "minimum": 60, "multipleOf": 60}),
        ),
        answers={"200": ("The counts, by step start", {JSON: {"type": "object"}})},
        problems=(400, 503),
    ),
    Route(
        "GET",
        "/v1/records/subjects/{subject}/contacts",
        contacts,
        "records_contacts",
        scope="records:contacts",
        summary="Everyone who scanned at a venue within window_s of the subject's scans there",
        description="The subject's scans in the window are found first; then, at each venue "
        "they were at, everyone else who scanned there within `window_s` seconds (default "
        "1800, at most 86400) of one of them, with their first and last such scan. By "
        "pseudonym, then venue; paginated." + _RECORDED,
        parameters=(
            path_param("subject", _SUBJECT),
            *_WINDOW_PARAMS,
            query_param(
                "window_s", {"type": "integer", "minimum": 1, "maximum": MAX_CONTACT_WINDOW_S}
            ),
            *_PAGE_PARAMS,
        ),
        answers={"200": ("A page of contacts", {JSON: {"type": "object"}})},
        problems=(400, 503),
    ),
]
"""The query routes, each with its own scope."""
