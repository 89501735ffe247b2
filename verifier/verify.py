"""扫码/验码 over HTTP: one code, a batch, revocations, the scan log count."""

from __future__ import annotations

__all__ = [
    "BATCH_ITEM_BYTES",
    "BATCH_ITEM_FIELDS",
    "FOREIGN",
    "FUSION",
    "MAX_KEPT_ANSWERS",
    "SCAN_LOG",
    "VERIFY_ROUTES",
    "ScanItem",
    "batch_body_bytes",
    "full_answer",
    "shown_to",
    "verify_one",
]

import asyncio
import math
from typing import Annotated, Any

import msgpack
import msgspec
from aiohttp import web

from codeengine.code.credential import CredentialVerdict
from codeengine.code.errors import (
    BadRequest,
    InvalidIdentifier,
    Moved,
    Reason,
    RecordTampered,
    StoreUnavailable,
    VerificationError,
)
from codeengine.code.foreign import (
    MAX_SCAN_CHARS,
    ForeignTrust,
    credential_format,
    credential_verdict_at,
)
from codeengine.code.fusion import AliasType, Fusion, listed
from codeengine.code.model import CITIES, CodeKind, Colour, SubjectId, china_date
from codeengine.code.pseudonym import subject_bytes
from codeengine.code.scans import MAX_ID_CHARS, packed_scan
from codeengine.code.suites import b64url_decode, b64url_encode
from codeengine.code.token import MAX_TOKEN_CHARS, PREFIX, DecodedCode, decode
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import (
    Verdict,
    degraded_verdict_at,
    online_verdict_at,
    precheck_at,
)
from codeengine.metrics import VERIFICATIONS, HotCounter
from codeengine.settings import Settings
from codeengine.web.answers import JsonAnswer, json_str, json_text
from codeengine.web.auth import CLIENT
from codeengine.web.body import (
    Field,
    TypedBody,
    lane_typed,
    read_body,
    read_object,
    read_typed,
    validate_object,
)
from codeengine.web.fastlane import HotRequest, hot
from codeengine.web.routes import JSON, PUBLIC, Body, Route, object_body, object_schema, ref
from codeengine.web.runtime import ALIAS_KEY, CLOCK, KEYS, PROFILE, SETTINGS, STORE, KeyState
from codeengine.web.service import via_service
from codeengine.web.trust import (
    IF_NONE_MATCH,
    PUBLISHED,
    Published,
    conditional,
    signed_list_routes,
    trust_route,
)
from verifier.scanlog import ScanLogWriter

SCAN_LOG = web.AppKey("scan_log", ScanLogWriter)
FUSION = web.AppKey("fusion", Fusion)
FOREIGN = web.AppKey("foreign", ForeignTrust)
_ALWAYS = ("valid", "reason")
BATCH_ITEM_BYTES = 640
"""Body bytes allowed a code of a batch verify (a full item is about 600 bytes of JSON)."""
MSGPACK = "application/msgpack"
# A scanner's line terminator is not part of the code (docs/code-format.md §2).
_SCANNER_TERMINATORS = "\r\n"

# What the service accepts: one of the province's cities (others are 400 UNKNOWN_CITY).
_CITY = {"enum": sorted(CITIES)}
ITEM_FIELDS = {
    "code": Field(
        str,
        max_length=MAX_SCAN_CHARS + 2,
        schema={
            "description": "The scanned text: a code (`CE1:`), an alias credential, an EU DCC "
            "(`HC1:`) or a SMART Health Card (`shc:/`, its chunks one per line)."
        },
    ),
    "terminal": Field(str, max_length=MAX_ID_CHARS, printable=True),
    "venue": Field(str, required=False, max_length=MAX_ID_CHARS, printable=True),
    "city": Field(int, schema={**_CITY, "description": "The terminal's six-digit city code."}),
}


class ScanItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One scan: a verify body (``ITEM_FIELDS``, as msgspec sees them), or an item of a batch.

    A batch's items are built from what ``BATCH_ITEM_FIELDS`` took: their code is shorter.
    """

    code: Annotated[str, msgspec.Meta(max_length=MAX_SCAN_CHARS + 2)]
    terminal: Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)]
    city: int
    venue: Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] = ""


ITEM = TypedBody(ScanItem, ITEM_FIELDS)
BATCH_ITEM_FIELDS = {
    **ITEM_FIELDS,
    "code": Field(
        str,
        max_length=MAX_TOKEN_CHARS + 2,
        schema={
            "description": "The scanned text: a code (`CE1:`) or an alias credential. An EU DCC "
            "(`HC1:`) or a SMART Health Card (`shc:/`) is verified alone, at `POST /v1/verify`: "
            "a batch refuses it (400 `INVALID_FIELD`)."
        },
    ),
}
"""A batch item: the engine's own codes and alias credentials only. Other issuers' credentials
run to 16 KiB and cost a signature check apiece; a batch of them would outgrow the batch body
(``BATCH_ITEM_BYTES`` a code) and the batch's purpose, the gate's stream of the engine's codes."""
# The batch limit is the app's setting: its factory makes ScanItems.
BATCH_FIELDS = {"items": Field(list, schema={"$ref": "#/components/schemas/ScanItems"})}
REVOKE_FIELDS = {
    "code": Field(str, required=False, max_length=MAX_TOKEN_CHARS),
    "kid": Field(
        str,
        required=False,
        max_length=16,
        schema={
            "description": "An 8-byte key id in unpadded base64url, as the trust list has it.",
            "pattern": "^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$",
        },
    ),
}


_COUNTERS: dict[tuple[str, int, str], HotCounter] = {}


def _count(reason: str, city: int, mode: str) -> None:
    """Count a verdict; each labelled series is looked up once (codeengine.metrics.flush_hot)."""
    counter = _COUNTERS.get((reason, city, mode))
    if counter is None:
        series = VERIFICATIONS.labels(reason, str(city), mode)
        counter = _COUNTERS[(reason, city, mode)] = HotCounter(series)
    counter.count += 1


def _check_city(city: int) -> None:
    if city not in CITIES:
        raise BadRequest("field 'city' is not a city of the province", reason=Reason.UNKNOWN_CITY)


async def verify_one(
    app: web.Application, item: ScanItem, mode: str
) -> Verdict | CredentialVerdict:
    """Verify one scanned code and log the scan (without waiting for the log)."""
    now = int(app[CLOCK]())
    text = item.code.rstrip(_SCANNER_TERMINATORS)
    city = item.city
    if not text.startswith(PREFIX) and (
        credential := credential_verdict_at(text, app[FOREIGN], now)
    ):
        # Another issuer's credential: its own trust list and the venue's colour policy, no
        # store and not the engine's trust list; logged like any scan, with no subject.
        _log_scan(app, item, credential, "")
        _count(credential.reason, city, mode)
        return credential
    settings = app[SETTINGS]
    state = app[KEYS]
    trust = state.require_trust()
    if not text.startswith(PREFIX) and (alias := app[FUSION].resolve_prefix(text)) is not None:
        verdict = await _alias_verdict(app, alias[0], alias[1], now)
        _log_scan(app, item, verdict)
        _count(verdict.reason, city, "degraded" if verdict.degraded else mode)
        return verdict
    checked = _precheck(settings, state, text, trust, now, city)
    if (
        isinstance(checked, Verdict)
        and checked.reason == _UNKNOWN_KID
        and await state.reread_trust(app[STORE], settings)
    ):
        # A key that took effect at once, read now rather than at the next periodic read.
        trust = state.require_trust()
        checked = _precheck(settings, state, text, trust, now, city)
    if isinstance(checked, Verdict):
        verdict = checked
        subject = verdict.subject
    else:
        subject = checked.claims.subject_id
        try:
            kind = int(checked.claims.kind)
            colour, handed_out = await app[STORE].scan_state(subject, kind, text, now)
            verdict = online_verdict_at(checked, text, colour, handed_out, trust, now)
        except StoreUnavailable:
            grey = settings.verifier.degraded_colour == "grey"
            verdict = degraded_verdict_at(checked, trust, now, grey=grey)
        except RecordTampered:
            # Counted and logged by the store; its content cannot be vouched for: grey.
            verdict = Verdict(False, Reason.RECORD_TAMPERED.value, now, Colour.GREY)
    _log_scan(app, item, verdict, subject)
    _count(verdict.reason, city, "degraded" if verdict.degraded else mode)
    return verdict


_UNKNOWN_KID = Reason.UNKNOWN_KID.value


def _precheck(
    settings: Settings, state: KeyState, text: str, trust: TrustList, now: int, city: int
) -> DecodedCode | Verdict:
    return precheck_at(
        text,
        trust,
        state.revocations,
        now,
        settings.codes.clock_skew_s,
        terminal_city=city,
        cross_city=settings.verifier.cross_city,
    )


def _log_scan(
    app: web.Application,
    item: ScanItem,
    verdict: Verdict | CredentialVerdict,
    subject: str | None = None,
) -> None:
    """Queue the scan's log entry; ``subject`` is the verdict's pseudonym when already known."""
    colour = verdict.colour
    app[SCAN_LOG].add_packed(
        packed_scan(
            item.terminal,
            item.venue,
            item.city,
            int(app[CLOCK]() * 1000),
            (verdict.subject if subject is None else subject) or "",
            verdict.reason,
            colour.label if colour is not None else "",
        )
    )


async def _alias_verdict(app: web.Application, alias: AliasType, value: str, now: int) -> Verdict:
    """An alias credential (卡码融合) answers as its subject's own code: the live colour.

    There is no signature to fall back on, so with the store unreachable the answer is
    ``STORE_UNAVAILABLE``, marked degraded.
    """
    try:
        hashed = alias.hash(value, app[ALIAS_KEY], china_date(now), app[PROFILE].mac)
    except InvalidIdentifier:
        return Verdict(False, Reason.MALFORMED.value, now)
    store = app[STORE]
    try:
        subject = await store.subject_for_alias(hashed)
        if subject is None:
            return Verdict(False, Reason.UNKNOWN_ALIAS.value, now)
        record, _ = await store.display_state(subject)
    except StoreUnavailable:
        return Verdict(False, Reason.STORE_UNAVAILABLE.value, now, degraded=True)
    except RecordTampered:
        return Verdict(False, Reason.RECORD_TAMPERED.value, now, Colour.GREY)
    if record is None:
        return Verdict(False, Reason.UNKNOWN_SUBJECT.value, now)
    colour = record.colour_at(now)
    raw = subject_bytes(subject)
    return Verdict(True, Reason.VALID.value, now, colour, record.kind, record.city, now, False, raw)


async def shown_to(
    request: HotRequest, verdict: Verdict | CredentialVerdict, with_licences: bool = True
) -> dict[str, object]:
    """The answer as the calling terminal's profile allows: fields, and licences if any."""
    profile = request.app[FUSION].profile(request[CLIENT].terminal_type)
    full = verdict.to_json()
    answer = {k: v for k, v in full.items() if k in _ALWAYS or k in profile.fields}
    if isinstance(verdict, CredentialVerdict):
        return answer
    if with_licences and profile.licences and verdict.valid and verdict.subject_raw:
        subject = SubjectId(b64url_encode(verdict.subject_raw))
        entries = await request.app[STORE].licences(subject)
        answer["licences"] = [listed(e) for e in entries]
    return answer


# The whole answer, for terminals whose profile shows every field and no licences (``default``
# among them): written with one format string, as json_text(verdict.to_json()) would write it
# (a property test holds them equal); 0.6 against 2.8 µs for the profile filter and the
# encoder (timeit).
_CHOSEN_FIELDS = frozenset(Verdict(False, "", 0).to_json()) - frozenset(_ALWAYS)
"""The fields a profile chooses from; ``_ALWAYS`` are shown to every terminal."""
_FULL_ANSWER = (
    '{"valid":%s,"reason":%s,"colour":%s,"kind":%s,"city":%s,'
    '"checked_at":%d,"as_of":%s,"degraded":%s}'
)
_JSON_BOOL = {False: "false", True: "true"}
_JSON_COLOUR: dict[Colour | None, str] = {None: "null", **{c: f'"{c.label}"' for c in Colour}}
_JSON_KIND: dict[CodeKind | None, str] = {None: "null", **{k: f'"{k.label}"' for k in CodeKind}}
_JSON_REASON = {r.value: json_str(r.value) for r in Reason}


_ANSWERS: dict[tuple[object, ...], str] = {}
MAX_KEPT_ANSWERS = 4096
"""Answers kept by ``full_answer``; emptied when full. A worker gives a few distinct answers a
second (by reason, colour, kind, city), each to thousands of scans."""


def full_answer(verdict: Verdict) -> str:
    """The answer with every field, as JSON text.

    Kept by everything it shows (every field but the subject): the same answer is written once
    and looked up after, 0.12 against 0.66 µs (timeit).
    """
    key = verdict[:8]
    text = _ANSWERS.get(key)
    if text is None:
        if len(_ANSWERS) >= MAX_KEPT_ANSWERS:
            _ANSWERS.clear()
        text = _ANSWERS[key] = _written_answer(verdict)
    return text


def _written_answer(verdict: Verdict) -> str:
    valid, reason, checked_at, colour, kind, city, as_of, degraded, _ = verdict
    return _FULL_ANSWER % (
        _JSON_BOOL[valid],
        _JSON_REASON.get(reason) or json_str(reason),
        _JSON_COLOUR[colour],
        _JSON_KIND[kind],
        "null" if city is None else str(city),
        checked_at,
        "null" if as_of is None else str(as_of),
        _JSON_BOOL[degraded],
    )


@hot
async def verify(request: HotRequest) -> JsonAnswer:
    """Verify one code: live colour online, the signature alone when the store is down."""
    item = lane_typed(request, ITEM)
    if item is None:
        item = await read_typed(request, ITEM)
    _check_city(item.city)
    verdict = await verify_one(request.app, item, "online")
    profile = request.app[FUSION].profile(request[CLIENT].terminal_type)
    if isinstance(verdict, CredentialVerdict):
        return JsonAnswer(json_text(await shown_to(request, verdict)))
    if profile.fields >= _CHOSEN_FIELDS and not profile.licences:
        return JsonAnswer(full_answer(verdict))
    return JsonAnswer(json_text(await shown_to(request, verdict)))


def batch_body_bytes(settings: Settings) -> int:
    """The largest batch body taken: ``batch_max`` codes of about 600 bytes of JSON each, or
    the service's limit for every other body if that is larger."""
    return max(
        settings.service.client_max_size_bytes, settings.verifier.batch_max * BATCH_ITEM_BYTES
    )


async def _batch_body(request: web.Request) -> dict[str, Any]:
    limit = batch_body_bytes(request.app[SETTINGS])
    if request.content_type == MSGPACK:
        raw = await read_body(request, limit)
        try:
            document = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException):
            raise BadRequest("the body is not valid msgpack", reason=Reason.BAD_JSON) from None
        return validate_object(document, BATCH_FIELDS)
    return await read_object(request, BATCH_FIELDS, limit)


def _check_own_code(item: object) -> None:
    """Refuse another issuer's credential in a batch, before its length would (most are longer
    than a batch's code), with a detail that says where to send it."""
    code = item.get("code") if isinstance(item, dict) else None
    if isinstance(code, str) and credential_format(code) is not None:
        raise BadRequest(
            "field 'code' is an EU DCC or a SMART Health Card, which a batch does not take: "
            "verify it alone (POST /v1/verify)"
        )


def _batch_declared() -> Body:
    """The batch body as the route declares it, its items a component of their own
    (``BatchScan``, from ``BATCH_ITEM_FIELDS``) that the settings-made ``ScanItems`` refers to."""
    body = object_body("Batch", BATCH_FIELDS, media=_BATCH_MEDIA)
    items = object_schema(BATCH_ITEM_FIELDS)
    return Body(body.content, body.required, {**body.components, "BatchScan": items})


async def verify_batch(request: web.Request) -> web.Response:
    """Verify up to ``batch_max`` codes, answers in order; store reads pipelined per shard."""
    body = await _batch_body(request)
    items = body["items"]
    limit = request.app[SETTINGS].verifier.batch_max
    if not 0 < len(items) <= limit:
        raise BadRequest(f"field 'items' must hold 1 to {limit} codes")
    checked = []
    for index, item in enumerate(items):
        try:
            _check_own_code(item)
            valid = ScanItem(**validate_object(item, BATCH_ITEM_FIELDS))
            _check_city(valid.city)
        except BadRequest as exc:
            raise BadRequest(f"items[{index}]: {exc.detail}", reason=exc.reason) from None
        checked.append(valid)
    verdicts = await asyncio.gather(*(verify_one(request.app, i, "batch") for i in checked))
    results = [await shown_to(request, v, with_licences=False) for v in verdicts]
    if request.content_type == MSGPACK:
        return web.Response(body=msgpack.packb({"results": results}), content_type=MSGPACK)
    return web.json_response({"results": results})


async def revoke(request: web.Request) -> web.Response:
    """Revoke one code (given whole) or one key id; effective online within a second."""
    body = await read_object(request, REVOKE_FIELDS)
    if ("code" in body) == ("kid" in body):
        raise BadRequest("give exactly one of 'code' and 'kid'")
    now = int(request.app[CLOCK]())
    store = request.app[STORE]
    if "code" in body:
        try:
            claims = decode(body["code"].rstrip(_SCANNER_TERMINATORS)).claims
        except VerificationError as exc:
            raise BadRequest(f"field 'code' is not a code: {exc.reason}") from None
        # A code is accepted until exp plus the clock-skew allowance: so long it stays listed.
        until = claims.exp + request.app[SETTINGS].codes.clock_skew_s
        await store.revoke_code(claims.cti, until, now)
        answer = {"revoked": "code", "id": claims.cti.hex(), "until": until}
    else:
        try:
            kid = b64url_decode(body["kid"])
        except ValueError:
            raise BadRequest("field 'kid' is not a base64url key id") from None
        if len(kid) != 8:
            raise BadRequest("field 'kid' is not an 8-byte key id")
        await store.revoke_key(kid, now)
        answer = {"revoked": "key", "id": body["kid"], "until": None}
    refresh = request.app[SETTINGS].verifier.revocation_refresh_s
    return web.json_response({**answer, "effective_within_s": refresh})


async def revocations(request: web.Request) -> web.Response:
    """The revocation list terminals cache: revoked code ids (unexpired) and key ids, as this
    verifier enforces them; ``as_of`` is when it last read them from the store."""
    state = request.app[KEYS]
    state.require_trust()
    head, etag = request.app[PUBLISHED].revocations(state.revocations)
    max_age = math.ceil(request.app[SETTINGS].verifier.revocation_refresh_s)
    published = Published(head + b"%d}" % state.revocations_at, JSON, etag)
    return conditional(request, published, f"public, max-age={max_age}")


async def scans(request: web.Request) -> web.Response:
    """Moved: the records service stores the scan streams and trims them behind, so a count
    here would see only what waits; ``GET /v1/records/counts`` there counts everything kept."""
    raise Moved(
        "scan counts moved to the records service: GET /v1/records/counts", to=SCANS_MOVED_TO
    )


SCANS_MOVED_TO = "GET /v1/records/counts"


_BATCH_MEDIA = (JSON, MSGPACK)
VERIFY_ROUTES = [
    Route(
        "POST",
        "/v1/verify",
        via_service(verify),
        "verify",
        scope="verify",
        summary="扫码/验码: verify one scanned code or alias credential",
        description="Checks the code and answers the subject's live colour. The `code` may also "
        "be an alias credential as a reader types it (`SSC:...` for a social-security card and "
        "the other prefixes of `configs/fusion.toml`): it answers as the subject's own code. "
        "Every scan is logged without personal data. With the store unreachable the answer "
        "rests on the signature and says `degraded: true`. An invalid code is still a 200 "
        "answer with `valid: false` and its reason.",
        body=object_body("Scan", ITEM_FIELDS),
        answers={"200": ("The verdict", ref("Verdict"))},
        problems=(400, 413, 415, 503),
        lane=True,
    ),
    Route(
        "POST",
        "/v1/verify/batch",
        verify_batch,
        "verify_batch",
        scope="verify",
        summary="Verify a batch of codes (up to the service's limit); answers in order",
        description="JSON or msgpack (`Content-Type: application/msgpack`, answered in "
        "msgpack). Store reads are pipelined: one round trip per shard. A batch takes the "
        "engine's codes and alias credentials; an EU DCC or a SMART Health Card is verified "
        "alone, at `POST /v1/verify`.",
        body=_batch_declared(),
        answers={
            "200": (
                "The verdicts, in order",
                {kind: ref("BatchResults")[JSON] for kind in _BATCH_MEDIA},
            )
        },
        problems=(400, 413, 415, 503),
    ),
    Route(
        "POST",
        "/v1/revocations",
        revoke,
        "revoke",
        scope="admin",
        summary="Revoke a code or a key (admin); effective online within a second",
        body=object_body(
            "RevokeRequest",
            REVOKE_FIELDS,
            minProperties=1,
            maxProperties=1,
            description="Exactly one of `code` (the whole code text) and `kid`.",
        ),
        answers={"200": ("Revoked", ref("Revoked"))},
        problems=(400, 413, 415, 503),
    ),
    Route(
        "GET",
        "/v1/revocations",
        revocations,
        "revocations",
        scope=PUBLIC,
        summary="The revocation list terminals cache (public)",
        description="What this verifier enforces, read from the store every "
        "`revocation_refresh_s`; `as_of` is when. Answers a weak `ETag` (of the lists, not "
        "`as_of`); `If-None-Match` with it answers `304`. Terminals configured with the "
        "trust anchor fetch `/v1/revocations/signed` instead.",
        parameters=(IF_NONE_MATCH,),
        answers={
            "200": ("The list", ref("RevocationList")),
            "304": ("The caller's copy (its ETag) is current", {}),
        },
        problems=(503,),
    ),
    Route(
        "GET",
        "/v1/scans",
        scans,
        "scans",
        scope="admin",
        summary="Moved to the records service: GET /v1/records/counts (410 MOVED)",
        description="The records service stores every city's scan stream and trims the stream "
        "behind what it stored, so a count here would count only the scans still waiting. "
        "Ask the records service's `GET /v1/records/counts` (scope `records:counts`). "
        "Answers 410 `MOVED` with `moved_to`, whatever the query (the old `city`, `venue`, "
        "`from` and `to` are no longer read).",
        answers={"410": ("Moved (MOVED): `moved_to` names the operation to ask", ref("Problem"))},
        deprecated=True,
    ),
    trust_route("The trust list this verifier uses (public), for offline terminals"),
    *signed_list_routes(),
]
