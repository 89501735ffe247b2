"""Generate (生码), display (亮码) and convert (赋码/转码) one subject over HTTP."""

from __future__ import annotations

__all__ = ["SUBJECT_ROUTES"]

import asyncio
import os
import secrets

from aiohttp import web

from codeengine.code.chain import check_chain
from codeengine.code.display import claims_for_at, is_current_at, refresh_at, successor_at
from codeengine.code.errors import BadRequest, InvalidIdentifier, Reason, UnknownSubject
from codeengine.code.identifiers import parse_identifier
from codeengine.code.model import CITIES, CityCode, CodeKind, Colour, SubjectId, china_date
from codeengine.code.pseudonym import check_subject_id, pseudonym
from codeengine.code.qr import ImageCache, QRFormat, render
from codeengine.code.status import MAX_OP_ID_CHARS, MAX_REASON_CHARS, StatusChange, SubjectRecord
from codeengine.code.token import CTI_BYTES, encode
from codeengine.store.audit import history_entries
from codeengine.web.answers import JsonAnswer, json_str
from codeengine.web.auth import CLIENT
from codeengine.web.body import Field, read_object
from codeengine.web.fastlane import HotRequest, hot
from codeengine.web.metrics import QR_RENDERS, SIGNATURES
from codeengine.web.routes import Route, object_body, ref
from codeengine.web.runtime import CLOCK, KEYS, MAC_KEYS, PEPPER, PROFILE, RULES, SETTINGS, STORE
from codeengine.web.service import via_service
from issuer.schemas import SUBJECT_PARAM

QR_CACHE = web.AppKey("qr_cache", ImageCache)
MAX_ID_CHARS = 64
_KINDS = {"person": CodeKind.HEALTH, "enterprise": CodeKind.ENTERPRISE_SERVICE}
_COLOURS = {colour.label: colour for colour in Colour}

_OP_ID_PATTERN = f"^[ -~]{{1,{MAX_OP_ID_CHARS}}}$"
GENERATE_FIELDS = {
    "kind": Field(str, max_length=16, schema={"enum": list(_KINDS)}),
    "id": Field(
        str,
        max_length=MAX_ID_CHARS,
        schema={
            "description": "18-character resident ID (GB 11643) or unified social credit code "
            "(GB 32100). Never stored, logged or echoed."
        },
    ),
    "city": Field(
        int,
        schema={
            "enum": sorted(CITIES),
            "description": "Six-digit code of one of the province's cities, e.g. 320100.",
        },
    ),
}
CONVERT_FIELDS = {
    "colour": Field(str, max_length=8, schema={"enum": list(_COLOURS)}),
    "reason": Field(str, max_length=MAX_REASON_CHARS),
    "if_version": Field(int, minimum=1, maximum=2**32 - 1),
    "op_id": Field(
        str,
        required=False,
        max_length=MAX_OP_ID_CHARS,
        min_length=1,
        schema={"pattern": _OP_ID_PATTERN},
    ),
}


def subject_from_path(request: HotRequest) -> SubjectId:
    try:
        return check_subject_id(request.match_info["subject"])
    except InvalidIdentifier:
        raise BadRequest("the path does not name a subject pseudonym") from None


async def generate(request: web.Request) -> web.Response:
    """生码: validate the identifier, derive the pseudonym, create the subject (idempotent)."""
    body = await read_object(request, GENERATE_FIELDS)
    kind = _KINDS.get(body["kind"])
    if kind is None:
        raise BadRequest("field 'kind' must be 'person' or 'enterprise'")
    if body["city"] not in CITIES:
        raise BadRequest("field 'city' is not a city of the province", reason=Reason.UNKNOWN_CITY)
    now = request.app[CLOCK]()
    # Birth dates are China dates: a child born today (UTC+8) must be accepted at 01:00.
    today = china_date(now)
    identifier = parse_identifier(body["kind"], body["id"], today)
    subject = pseudonym(identifier, request.app[PEPPER], request.app[PROFILE].mac)
    initial = request.app[RULES].no_data
    record = SubjectRecord(subject, kind, CityCode(body["city"]), initial, 1, int(now))
    stored, created = await request.app[STORE].create_subject(record, request[CLIENT].name)
    answer = {
        "subject": subject,
        "kind": stored.kind.label,
        "city": stored.city,
        "colour": stored.colour_at(int(now)).label,
        "version": stored.version,
        "created": created,
    }
    return web.json_response(answer, status=201 if created else 200)


@hot
async def display(request: HotRequest) -> web.StreamResponse | JsonAnswer:
    """亮码: the subject's current token, signing a new one only past half-life."""
    subject = subject_from_path(request)
    fmt: QRFormat | None = None
    asked = "own"
    if request.query_string:  # Most displays carry no query: parse none then.
        query = request.query
        fmt_text = query.get("format", "json")
        fmt = None if fmt_text == "json" else _image_format(fmt_text)
        asked = query.get("kind", "own")
        if asked not in _DISPLAY_KINDS:
            raise BadRequest("query 'kind' must be own, health, service or fused")
    app = request.app
    codes = app[SETTINGS].codes
    now = int(app[CLOCK]())
    store = app[STORE]
    wanted = _DISPLAY_KINDS[asked]
    record, shown = await store.display_state(subject, wanted)
    if record is None:
        raise UnknownSubject("no such subject")
    kind = _kind_for(record.kind, asked)
    if wanted is not None and int(kind) != wanted:
        # An enterprise's "service" code is its own code, stored under the plain key.
        wanted = None
        record, shown = await store.display_state(subject)
        if record is None:
            raise UnknownSubject("no such subject")
    key = app[KEYS].require_keyring().signing_key_at(now)
    # Two tries: a concurrent display that read an older status may have stored its token
    # first; a token of an older status version is never handed out in place of ours.
    for _ in range(2):
        if shown is not None and (
            shown.version > record.version
            or is_current_at(shown, record, now, codes.display_ttl_s, key.kid)
        ):
            # Current, or signed for a status newer than the one this request read.
            break
        cti = secrets.token_bytes(CTI_BYTES)
        claims = claims_for_at(record, now, codes.display_ttl_s, cti, kind)
        token = encode(claims, key)
        SIGNATURES.labels(key.private.suite.jose_alg).inc()
        ttl_ms = (codes.display_ttl_s + codes.clock_skew_s) * 1000
        shown = await store.replace_display(
            subject, shown, successor_at(shown, token, claims, now, key.kid), ttl_ms, wanted
        )
        if shown.version >= record.version:
            break
    assert shown is not None
    refresh = refresh_at(shown.iat, codes.display_ttl_s)
    max_age = max(0, refresh - now)
    if fmt is not None:
        image = await _image(app, shown.token, fmt)
        headers = {"Cache-Control": f"private, max-age={max_age}"}
        return web.Response(body=image, content_type=fmt.content_type, headers=headers)
    # What the display page shows beside the QR (kind, city): the engine's word, not the host's.
    body = (
        f'{{"token":{json_str(shown.token)},"colour":"{shown.colour.label}",'
        f'"version":{shown.version},"issued_at":{shown.iat},"expires_at":{shown.exp},'
        f'"refresh_at":{refresh},"kind":"{kind.label}","city":{record.city}}}'
    )
    return JsonAnswer(body, cache_control=f"private, max-age={max_age}")


_DISPLAY_KINDS: dict[str, int | None] = {
    "own": None,
    "health": int(CodeKind.HEALTH),
    "service": int(CodeKind.PERSON_SERVICE),
    "fused": int(CodeKind.FUSED),
}
"""``?kind=`` of display: the subject's own code, or a person's service or fused code."""


def _kind_for(own: CodeKind, asked: str) -> CodeKind:
    """The kind of code to sign: a person has health, service and fused codes; an enterprise
    only its service code."""
    if asked == "own":
        return own
    if own is CodeKind.ENTERPRISE_SERVICE:
        if asked != "service":
            raise BadRequest("an enterprise has a service code only")
        return own
    return CodeKind(_DISPLAY_KINDS[asked] or own)


def _image_format(text: str) -> QRFormat:
    try:
        return QRFormat(text)
    except ValueError:
        raise BadRequest("query 'format' must be json, png or svg") from None


async def _image(app: web.Application, token: str, fmt: QRFormat) -> bytes:
    """The QR image of a token, rendered once per token and format, off the event loop."""
    cache = app[QR_CACHE]
    image = cache.get(token, fmt)
    if image is None:
        image = await asyncio.get_running_loop().run_in_executor(None, render, token, fmt)
        QR_RENDERS.labels(fmt.value).inc()
        cache.put(token, fmt, image)
    return image


async def convert(request: web.Request) -> web.Response:
    """赋码/转码: set one subject's colour if ``if_version`` is current; audited, idempotent."""
    subject = subject_from_path(request)
    body = await read_object(request, CONVERT_FIELDS)
    colour = _COLOURS.get(body["colour"])
    if colour is None:
        raise BadRequest("field 'colour' must be green, yellow, red or grey")
    op_id = body.get("op_id", request.headers.get("Idempotency-Key"))
    if op_id is None:
        # No operation id: this change is applied once, and a resend is a new change.
        op_id = os.urandom(12).hex()
    elif not 0 < len(op_id) <= MAX_OP_ID_CHARS or not op_id.isascii() or not op_id.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_OP_ID_CHARS} printable ASCII characters"
        )
    change = StatusChange(
        subject=subject,
        if_version=body["if_version"],
        colour=colour,
        op_id=op_id,
        actor=request[CLIENT].name,
        reason=body["reason"],
        at=int(request.app[CLOCK]()),
    )
    result = await request.app[STORE].set_status(change)
    # The colour the subject shows can differ from the one set: a rule period or an upheld
    # appeal may be running (see its history).
    record = await request.app[STORE].get_subject(subject)
    shows = result.colour if record is None else record.colour_at(change.at)
    answer = {
        "subject": subject,
        "colour": result.colour.label,
        "shows": shows.label,
        "version": result.version,
        "applied": result.applied,
        "op_id": op_id,
    }
    return web.json_response(answer)


async def history(request: web.Request) -> web.Response:
    """The subject's audit trail for ops, oldest first, with the verdict on its hash chain."""
    subject = subject_from_path(request)
    record, entries = await request.app[STORE].audit_chain(subject)
    if record is None and not entries:
        raise UnknownSubject("no such subject")
    check = check_chain(request.app[MAC_KEYS].require().audit_or_raise(), subject, record, entries)
    now = int(request.app[CLOCK]())
    answer = {
        "subject": subject,
        "colour": None if record is None else record.colour_at(now).label,
        "version": None if record is None else record.version,
        "chain": {"ok": check.ok, "entries": check.entries, "broken_at": check.broken_at,
                  "problem": check.problem or None},
        "entries": history_entries(entries),
    }  # fmt: skip
    return web.json_response(answer)


SUBJECT_ROUTES = [
    # Display first: the router tries the routes under /v1/subjects in this order.
    Route(
        "GET",
        "/v1/subjects/{subject}/code",
        via_service(display),
        "display",
        scope="display",
        summary="亮码: the subject's current code, or its QR image",
        description="Returns the same token until its half-life, then a newly signed one. "
        "`format=png` or `svg` returns the QR image of that token.",
        parameters=(
            SUBJECT_PARAM,
            {
                "name": "format",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["json", *(f.value for f in QRFormat)]},
            },
            {
                "name": "kind",
                "in": "query",
                "required": False,
                "description": "Which code: `own` (default: a person's health code, an "
                "enterprise's service code), or for a person `health`, `service` (person service "
                "code) or `fused` (health colour and service identity in one code, 卡码融合). "
                "An enterprise has `service` only (400 otherwise).",
                "schema": {"type": "string", "enum": list(_DISPLAY_KINDS)},
            },
        ),
        answers={
            "200": (
                "The current code",
                {
                    **ref("DisplayedCode"),
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/svg+xml": {"schema": {"type": "string"}},
                },
            )
        },
        problems=(400, 404, 503),
        lane=True,
    ),
    Route(
        "POST",
        "/v1/subjects",
        generate,
        "generate",
        scope="generate",
        summary="生码: generate a subject's code from a resident ID or credit code",
        description="Idempotent: the same identifier always gives the same subject.",
        body=object_body("GenerateRequest", GENERATE_FIELDS),
        answers={
            "201": ("Subject created", ref("Subject")),
            "200": ("Subject existed", ref("Subject")),
        },
        problems=(400, 413, 415, 422, 503),
    ),
    Route(
        "POST",
        "/v1/subjects/{subject}/status",
        convert,
        "convert",
        scope="convert",
        summary="赋码/转码: set the subject's colour if `if_version` is current",
        description="Audited (who, why, old, new, when). Resending the same `op_id` (or "
        "`Idempotency-Key` header) changes nothing. A stale `if_version` answers 409 with "
        "`current_version`.",
        parameters=(
            SUBJECT_PARAM,
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": _OP_ID_PATTERN},
            },
        ),
        body=object_body("ConvertRequest", CONVERT_FIELDS),
        answers={"200": ("Status set (or already set by this op_id)", ref("Converted"))},
        problems=(400, 404, 409, 413, 415, 503),
    ),
    Route(
        "GET",
        "/v1/subjects/{subject}/history",
        history,
        "history",
        scope="convert",
        summary="A subject's audit trail, with the verdict on its hash chain (ops)",
        description="Every status change: who or what (actor, rule, batch), old and new, when, "
        "why.",
        parameters=(SUBJECT_PARAM,),
        answers={"200": ("The audit trail", ref("History"))},
        problems=(400, 404, 503),
    ),
]
