"""Card-code fusion (卡码融合) over HTTP: bind, list, unbind aliases; bulk files; licences.

An alias is a credential (social-security card, electronic SSC, medical voucher, transit code,
city code, electronic ID) that stands for a person's code at a scanner. The store keeps only its
keyed hash and a masked form; one alias belongs to at most one subject (a second bind answers
409 ``ALIAS_TAKEN``, naming nothing). Integrators hold scope ``fusion``.
"""

from __future__ import annotations

__all__ = ["ALIAS_ROUTES", "FUSION"]

import csv
from collections import Counter
from datetime import date

from aiohttp import web

from codeengine.code.errors import (
    AliasTaken,
    BadRequest,
    InvalidIdentifier,
    Reason,
    UnknownSubject,
)
from codeengine.code.fusion import Fusion, listed, mask
from codeengine.code.identifiers import parse_identifier
from codeengine.code.model import china_date
from codeengine.code.pseudonym import alias_hash, licence_hash, pseudonym
from codeengine.code.secret import Secret
from codeengine.store.port import AliasBinding, Store
from codeengine.web.auth import CLIENT
from codeengine.web.body import Field, read_lines, read_object
from codeengine.web.routes import Body, Route, object_body, path_param, ref
from codeengine.web.runtime import ALIAS_KEY, CLOCK, PEPPER, PROFILE, STORE
from issuer.schemas import ALIAS_ID, SUBJECT_PARAM
from issuer.subjects import subject_from_path

FUSION = web.AppKey("fusion", Fusion)
BIND_FIELDS = {
    # The alias types are the fusion file's, which the app loads: its factory makes AliasType.
    "type": Field(str, max_length=32, schema={"$ref": "#/components/schemas/AliasType"}),
    "value": Field(
        str,
        max_length=256,
        schema={"minLength": 1, "description": "The credential. Stored only as a keyed hash."},
    ),
}
LICENCE_FIELDS = {
    "type": Field(str, max_length=32, schema={"pattern": "^[a-z0-9_]{1,32}$"}),
    "number": Field(str, max_length=64, schema={"pattern": "^[A-Za-z0-9]{1,64}$"}),
}
BULK_COLUMNS = ("kind", "identifier", "alias_type", "value")
CHUNK = 500
MAX_ERRORS_SHOWN = 1000
_LICENCE_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _today(request: web.Request) -> date:
    return china_date(request.app[CLOCK]())


def _binding(request: web.Request, subject: str, alias_type: str, value: str) -> AliasBinding:
    fusion = request.app[FUSION]
    kind = fusion.aliases.get(alias_type)
    if kind is None:
        raise BadRequest(
            f"alias type must be one of {', '.join(sorted(fusion.aliases))}",
            reason=Reason.UNKNOWN_ALIAS_TYPE,
        )
    normalised = kind.normalise(value, _today(request))
    hashed = alias_hash(kind.name, normalised, request.app[ALIAS_KEY], request.app[PROFILE].mac)
    return AliasBinding(subject, hashed, f"{kind.name}:{mask(normalised)}")  # type: ignore[arg-type]


async def bind(request: web.Request) -> web.Response:
    """Bind one alias to the subject: 201 bound, 200 already this subject's, 409 another's."""
    subject = subject_from_path(request)
    body = await read_object(request, BIND_FIELDS)
    binding = _binding(request, subject, body["type"], body["value"])
    now = int(request.app[CLOCK]())
    (result,) = await request.app[STORE].bind_aliases([binding], request[CLIENT].name, now)
    if result == "taken":
        raise AliasTaken("this alias is bound to another subject")
    if result == "unknown_subject":
        raise UnknownSubject("no such subject")
    answer = _listed(binding.alias, binding.listed)
    return web.json_response(answer, status=201 if result == "bound" else 200)


def _listed(alias: str, entry: str) -> dict[str, str]:
    return {"id": alias, **listed(entry)}


async def list_aliases(request: web.Request) -> web.Response:
    """The subject's aliases, masked, with the ids that unbind them."""
    subject = subject_from_path(request)
    store = request.app[STORE]
    if await store.get_subject(subject) is None:
        raise UnknownSubject("no such subject")
    entries = await store.list_aliases(subject)
    return web.json_response(
        {"subject": subject, "aliases": [_listed(a, entry) for a, entry in entries]}
    )


async def unbind(request: web.Request) -> web.Response:
    """Unbind the alias with this id (from the list) from the subject."""
    subject = subject_from_path(request)
    alias = request.match_info["alias_id"]
    if len(alias) != 16 or not alias.replace("-", "A").replace("_", "A").isalnum():
        raise BadRequest("the path does not name an alias id")
    now = int(request.app[CLOCK]())
    if not await request.app[STORE].unbind_alias(subject, alias, request[CLIENT].name, now):
        raise web.HTTPNotFound(reason="no such alias on this subject")
    return web.json_response({"subject": subject, "id": alias, "unbound": True})


async def bulk(request: web.Request) -> web.Response:
    """An integrator's CSV of bindings (``kind,identifier,alias_type,value``), streamed.

    Each row is checked and bound; bad rows, aliases bound to someone else and unknown subjects
    are reported by line and reason (nothing of the row is echoed). Binding is idempotent, so
    running the same file again changes nothing (every row answers ``unchanged``).
    """
    if request.content_type != "text/csv":
        raise web.HTTPUnsupportedMediaType(reason="a bulk alias file is text/csv")
    store, pepper = request.app[STORE], request.app[PEPPER]
    today, now, actor = _today(request), int(request.app[CLOCK]()), request[CLIENT].name
    lines = read_lines(request)
    report = _BulkReport()
    line_no = 0
    async for raw in lines:
        line_no += 1
        try:
            found = _bulk_row(request, raw, line_no, today, pepper)
        except (InvalidIdentifier, BadRequest) as exc:
            if line_no == 1:
                raise
            report.refuse(line_no, exc.reason.value)
            continue
        if found is not None:
            report.pending.append((line_no, found))
        if len(report.pending) >= CHUNK:
            await report.flush(store, actor, now)
    if line_no == 0:
        raise BadRequest(f"a bulk alias file starts with {','.join(BULK_COLUMNS)}")
    await report.flush(store, actor, now)
    return web.json_response(report.answer())


class _BulkReport:
    """Counts and refused rows of a bulk file, and the bindings waiting to be sent."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: list[dict[str, object]] = []
        self.pending: list[tuple[int, AliasBinding]] = []

    def refuse(self, line: int, reason: str) -> None:
        self.counts["refused"] += 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append({"line": line, "reason": reason})

    async def flush(self, store: Store, actor: str, now: int) -> None:
        if not self.pending:
            return
        results = await store.bind_aliases([b for _, b in self.pending], actor, now)
        for (line, _), result in zip(self.pending, results, strict=True):
            if result in ("bound", "unchanged"):
                self.counts[result] += 1
            elif result == "taken":
                self.refuse(line, Reason.ALIAS_TAKEN.value)
            else:
                self.refuse(line, Reason.UNKNOWN_SUBJECT.value)
        self.pending.clear()

    def answer(self) -> dict[str, object]:
        counts = self.counts
        return {
            "rows": counts["bound"] + counts["unchanged"] + counts["refused"],
            "bound": counts["bound"],
            "unchanged": counts["unchanged"],
            "refused": counts["refused"],
            "errors": sorted(self.errors, key=lambda e: int(str(e["line"]))),
        }


def _bulk_row(
    request: web.Request, raw: bytes, line_no: int, today: date, pepper: Secret
) -> AliasBinding | None:
    """The binding of one line; None for a blank line or the header; BadRequest if bad."""
    try:
        text = raw.decode("utf-8").strip()
        values = next(csv.reader([text]), []) if text else []
    except (UnicodeDecodeError, csv.Error):
        raise BadRequest("not a CSV line", reason=Reason.BAD_ROW) from None
    if line_no == 1:
        # The header comes first, before any blank line: a file that does not start with it
        # is not this kind of file (a blank first line used to skip the check).
        if tuple(v.strip().lower() for v in values) != BULK_COLUMNS:
            raise BadRequest(f"a bulk alias file starts with {','.join(BULK_COLUMNS)}")
        return None
    if not text:
        return None
    if len(values) != len(BULK_COLUMNS) or values[0] not in ("person", "enterprise"):
        raise BadRequest("not a row of this file", reason=Reason.BAD_ROW)
    identifier = parse_identifier(values[0], values[1], today)  # type: ignore[arg-type]
    subject = pseudonym(identifier, pepper, request.app[PROFILE].mac)
    return _binding(request, subject, values[2], values[3])


async def link_licence(request: web.Request) -> web.Response:
    """Link an electronic licence (type and number, stored hashed and masked) to the subject."""
    subject = subject_from_path(request)
    body = await read_object(request, LICENCE_FIELDS)
    kind, number = body["type"], body["number"].strip()
    if not kind or not set(kind) <= _LICENCE_TYPE_CHARS:
        raise BadRequest("field 'type' is a lower-case name such as business_licence")
    if not number or not number.isascii() or not number.isalnum():
        raise BadRequest("field 'number' is letters and digits", reason=Reason.BAD_CHARACTERS)
    store = request.app[STORE]
    if await store.get_subject(subject) is None:
        raise UnknownSubject("no such subject")
    listed = f"{kind}:{mask(number)}"
    hashed = licence_hash(kind, number, request.app[ALIAS_KEY], request.app[PROFILE].mac)
    added = await store.link_licence(subject, hashed, listed)
    return web.json_response(
        {"subject": subject, "type": kind, "masked": mask(number)}, status=201 if added else 200
    )


async def list_licences(request: web.Request) -> web.Response:
    """The subject's linked licences, masked."""
    subject = subject_from_path(request)
    entries = await request.app[STORE].licences(subject)
    return web.json_response({"subject": subject, "licences": [listed(e) for e in entries]})


_BULK_HEADER = ",".join(BULK_COLUMNS)
ALIAS_ROUTES = [
    Route(
        "POST",
        "/v1/subjects/{subject}/aliases",
        bind,
        "alias_bind",
        scope="fusion",
        summary="卡码融合: bind a credential (card, voucher, transit code...) to the subject",
        description="Checked against the type's format; stored as a keyed hash and a masked "
        "form. 201 bound, 200 already this subject's, 409 `ALIAS_TAKEN` if another subject's "
        "(which one is never said). Audited.",
        parameters=(SUBJECT_PARAM,),
        body=object_body("AliasRequest", BIND_FIELDS),
        answers={"201": ("Bound", ref("Alias")), "200": ("Already bound", ref("Alias"))},
        problems=(400, 404, 409, 413, 415, 422, 503),
    ),
    Route(
        "GET",
        "/v1/subjects/{subject}/aliases",
        list_aliases,
        "alias_list",
        scope="fusion",
        summary="The subject's aliases, masked",
        description="Each with the id that unbinds it.",
        parameters=(SUBJECT_PARAM,),
        answers={"200": ("The aliases", ref("Aliases"))},
        problems=(400, 404, 503),
    ),
    Route(
        "DELETE",
        "/v1/subjects/{subject}/aliases/{alias_id}",
        unbind,
        "alias_unbind",
        scope="fusion",
        summary="Unbind an alias (by the id the list shows)",
        description="Audited.",
        parameters=(SUBJECT_PARAM, path_param("alias_id", ALIAS_ID)),
        answers={"200": ("Unbound", ref("Unbound"))},
        problems=(400, 404, 503),
    ),
    Route(
        "POST",
        "/v1/aliases/bulk",
        bulk,
        "alias_bulk",
        scope="fusion",
        summary="An integrator's file of bindings, streamed",
        description=f"CSV with the header `{_BULK_HEADER}` (kind person or enterprise; "
        "identifier a resident ID or credit code). Each row is reported by line and reason if "
        "refused (`BAD_ROW`, identifier reasons, `UNKNOWN_ALIAS_TYPE`, `ALIAS_TAKEN`, "
        "`UNKNOWN_SUBJECT`); running the same file again changes nothing.",
        body=Body(
            {"text/csv": {"schema": {"type": "string", "pattern": f"^{_BULK_HEADER}\\r?\\n"}}}
        ),
        answers={"200": ("The report", ref("BulkAliases"))},
        problems=(400, 415, 503),
    ),
    Route(
        "POST",
        "/v1/subjects/{subject}/licences",
        link_licence,
        "licence_link",
        scope="fusion",
        summary="Link an electronic licence (type and number) to the subject",
        description="Stored as a keyed hash and a masked number; shown on verify to terminals "
        "whose profile allows it.",
        parameters=(SUBJECT_PARAM,),
        body=object_body("LicenceRequest", LICENCE_FIELDS),
        answers={"201": ("Linked", ref("Licence")), "200": ("Already linked", ref("Licence"))},
        problems=(400, 404, 413, 415, 503),
    ),
    Route(
        "GET",
        "/v1/subjects/{subject}/licences",
        list_licences,
        "licence_list",
        scope="fusion",
        summary="The subject's linked licences, masked",
        parameters=(SUBJECT_PARAM,),
        answers={"200": ("The licences", ref("Licences"))},
        problems=(400, 503),
    ),
]
