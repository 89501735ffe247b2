"""Appeals (异议处置): a person contests a colour; ops uphold (with an override) or reject.

``POST /v1/appeals`` files one (scope ``appeal``: the app backend acting for the person),
``GET /v1/appeals/{appeal_id}`` shows it, ``POST /v1/appeals/{appeal_id}/decision`` decides it
(scope ``convert``: ops). An upheld appeal sets the colour the subject shows, with a reason,
until its expiry, whatever rules say meanwhile; it is audited in the subject's hash-chained
trail. A decision is final: deciding again the same way is a no-op, otherwise 409.
"""

from __future__ import annotations

__all__ = ["APPEAL_ROUTES"]

import re
import secrets
from typing import Any

from aiohttp import web

from codeengine.code.errors import BadRequest, InvalidIdentifier, UnknownSubject
from codeengine.code.model import Colour, SubjectId
from codeengine.code.pseudonym import subject_bytes
from codeengine.code.rules import MAX_DURATION_DAYS
from codeengine.code.status import MAX_REASON_CHARS
from codeengine.web.auth import CLIENT
from codeengine.web.body import Field, read_object
from codeengine.web.routes import Route, object_body, object_schema, path_param, ref
from codeengine.web.runtime import CLOCK, STORE
from issuer.schemas import APPEAL_ID, COLOUR, SUBJECT_ID

MAX_EVIDENCE_CHARS = 200
TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
"""Free text of an appeal: anything but control characters (the OpenAPI pattern)."""
_CONTROL = re.compile("[\\u0000-\\u001f\\u007f-\\u009f]")
_COLOURS = {colour.label: colour for colour in Colour}
_TEXT = {"pattern": TEXT_PATTERN}
FILE_FIELDS = {
    "subject": Field(str, max_length=16, min_length=16, schema=SUBJECT_ID),
    "reason": Field(str, max_length=MAX_REASON_CHARS, min_length=1, schema=_TEXT),
    "evidence": Field(
        str,
        max_length=MAX_EVIDENCE_CHARS,
        min_length=1,
        schema={
            **_TEXT,
            "description": "A reference to the evidence (a document id), never the document.",
        },
    ),
}
DECISION_FIELDS = {
    "decision": Field(str, max_length=8),
    "reason": Field(str, max_length=MAX_REASON_CHARS, min_length=1, schema=_TEXT),
    "colour": Field(
        str, required=False, max_length=8, schema={**COLOUR, "description": "The colour to show."}
    ),
    "duration_days": Field(
        int,
        required=False,
        minimum=1,
        maximum=MAX_DURATION_DAYS,
        schema={"description": "How long the override lasts."},
    ),
}


def _appeal_id(request: web.Request) -> str:
    text = request.match_info["appeal_id"]
    if len(text) != 24 or not all(c in "0123456789abcdef" for c in text):
        raise BadRequest("the path does not name an appeal id")
    return text


def _answer(appeal_id: str, fields: dict[str, str]) -> dict[str, object]:
    answer: dict[str, object] = {
        "appeal_id": appeal_id,
        "subject": fields["subject"],
        "state": fields.get("decision", "open"),
        "reason": fields["reason"],
        "evidence": fields["evidence"],
        "filed_at": int(fields["filed_at"]),
        "filed_by": fields["filed_by"],
    }
    if "decision" in fields:
        answer["decision"] = {
            "decision": fields["decision"],
            "reason": fields.get("decision_reason", ""),
            "decided_by": fields.get("decided_by", ""),
            "decided_at": int(fields.get("decided_at", 0)),
            "colour": fields.get("colour") or None,
            "until": int(fields["until"]) if fields.get("until") else None,
        }
    return answer


async def file_appeal(request: web.Request) -> web.Response:
    """File an appeal against a subject's colour."""
    body = await read_object(request, FILE_FIELDS)
    try:
        subject = SubjectId(body["subject"])
        subject_bytes(subject)
    except InvalidIdentifier:
        raise BadRequest("field 'subject' is not a subject pseudonym") from None
    store = request.app[STORE]
    if await store.get_subject(subject) is None:
        raise UnknownSubject("no such subject")
    for name in ("reason", "evidence"):
        if _CONTROL.search(body[name]):
            raise BadRequest(f"field {name!r} must not hold control characters")
    appeal_id = secrets.token_hex(12)
    fields = {
        "subject": subject,
        "reason": body["reason"],
        "evidence": body["evidence"],
        "filed_at": str(int(request.app[CLOCK]())),
        "filed_by": request[CLIENT].name,
    }
    await store.create_appeal(appeal_id, fields)
    return web.json_response(_answer(appeal_id, fields), status=201)


async def show_appeal(request: web.Request) -> web.Response:
    """An appeal and its decision, if any."""
    appeal_id = _appeal_id(request)
    fields = await request.app[STORE].get_appeal(appeal_id)
    return web.json_response(_answer(appeal_id, fields))


async def decide_appeal(request: web.Request) -> web.Response:
    """Uphold (override the colour until an expiry) or reject an appeal; final."""
    appeal_id = _appeal_id(request)
    body = await read_object(request, DECISION_FIELDS)
    decision = body["decision"]
    if decision not in ("upheld", "rejected"):
        raise BadRequest("field 'decision' must be upheld or rejected")
    now = int(request.app[CLOCK]())
    override: tuple[Colour, int] | None = None
    if decision == "upheld":
        colour = _COLOURS.get(body.get("colour", ""))
        if colour is None or "duration_days" not in body:
            raise BadRequest("an upheld appeal needs 'colour' and 'duration_days'")
        override = (colour, now + body["duration_days"] * 86400)
    elif "colour" in body or "duration_days" in body:
        raise BadRequest("a rejected appeal takes no 'colour' or 'duration_days'")
    if _CONTROL.search(body["reason"]):
        raise BadRequest("field 'reason' must not hold control characters")
    store = request.app[STORE]
    fields = await store.get_appeal(appeal_id)
    record = {
        "decision": decision,
        "decision_reason": body["reason"],
        "decided_by": request[CLIENT].name,
        "decided_at": str(now),
        "colour": "" if override is None else override[0].label,
        "until": "" if override is None else str(override[1]),
    }
    version = await store.decide_appeal(
        appeal_id,
        SubjectId(fields["subject"]),
        record,
        override,
        f"{request[CLIENT].name}:appeal",
        now,
    )
    answer = _answer(appeal_id, await store.get_appeal(appeal_id))
    answer["version"] = version
    return web.json_response(answer)


def _decision_schema() -> dict[str, Any]:
    """An upheld decision carries the colour and duration of its override; a rejection not."""
    upheld = object_schema(DECISION_FIELDS, required=list(DECISION_FIELDS))
    rejected = object_schema({name: DECISION_FIELDS[name] for name in ("decision", "reason")})
    for shape, decision in ((upheld, "upheld"), (rejected, "rejected")):
        shape["properties"]["decision"] = {"const": decision}
    return {"oneOf": [upheld, rejected]}


_APPEAL = path_param("appeal_id", APPEAL_ID)
APPEAL_ROUTES = [
    Route(
        "POST",
        "/v1/appeals",
        file_appeal,
        "appeal_file",
        scope="appeal",
        summary="异议: file an appeal against a subject's colour",
        body=object_body("AppealRequest", FILE_FIELDS),
        answers={"201": ("Filed", ref("Appeal"))},
        problems=(400, 404, 413, 415, 503),
    ),
    Route(
        "GET",
        "/v1/appeals/{appeal_id}",
        show_appeal,
        "appeal_show",
        scope="appeal",
        summary="An appeal and its decision",
        parameters=(_APPEAL,),
        answers={"200": ("The appeal", ref("Appeal"))},
        problems=(400, 404, 503),
    ),
    Route(
        "POST",
        "/v1/appeals/{appeal_id}/decision",
        decide_appeal,
        "appeal_decide",
        scope="convert",
        summary="Decide an appeal: uphold (override the colour until an expiry) or reject",
        description="Final: the same decision again is a no-op, another answers 409.",
        parameters=(_APPEAL,),
        body=object_body("DecisionRequest", DECISION_FIELDS, schema=_decision_schema()),
        answers={"200": ("Decided", ref("Appeal"))},
        problems=(400, 404, 409, 413, 415, 503),
    ),
]
