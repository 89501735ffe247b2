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

from aiohttp import web

from codeengine.code.errors import BadRequest, InvalidIdentifier, UnknownSubject
from codeengine.code.model import Colour, SubjectId
from codeengine.code.pseudonym import subject_bytes
from codeengine.code.rules import MAX_DURATION_DAYS
from codeengine.code.status import MAX_REASON_CHARS
from codeengine.web.auth import CLIENT
from codeengine.web.body import Field, read_object
from codeengine.web.runtime import CLOCK, STORE

MAX_EVIDENCE_CHARS = 200
TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
"""Free text of an appeal: anything but control characters (the OpenAPI pattern)."""
_CONTROL = re.compile("[\\u0000-\\u001f\\u007f-\\u009f]")
_COLOURS = {colour.label: colour for colour in Colour}
FILE_FIELDS = {
    "subject": Field(str, max_length=16, min_length=16),
    "reason": Field(str, max_length=MAX_REASON_CHARS, min_length=1),
    "evidence": Field(str, max_length=MAX_EVIDENCE_CHARS, min_length=1),
}
DECISION_FIELDS = {
    "decision": Field(str, max_length=8),
    "reason": Field(str, max_length=MAX_REASON_CHARS, min_length=1),
    "colour": Field(str, required=False, max_length=8),
    "duration_days": Field(int, required=False, minimum=1, maximum=MAX_DURATION_DAYS),
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


APPEAL_ROUTES = [
    web.post("/v1/appeals", file_appeal, name="appeal_file"),
    web.get("/v1/appeals/{appeal_id}", show_appeal, name="appeal_show"),
    web.post("/v1/appeals/{appeal_id}/decision", decide_appeal, name="appeal_decide"),
]
