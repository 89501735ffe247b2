"""``POST /v1/scans/offline``: the scans a terminal checked offline reach the scan log.

The terminal page (and any terminal on the offline SDK) queues each scan it answered alone;
when the verifier answers again it sends the queue here. Each scan is judged again at its own
time (codeengine.code.offlinescans), its id claimed in the store so that a second send logs
nothing, and logged with its own time, so the records service stores it as it stores every
other scan.
"""

from __future__ import annotations

__all__ = [
    "OFFLINE_ITEM_FIELDS",
    "OFFLINE_SCANS_ROUTE",
    "OFFLINE_SCAN_SCHEMAS",
    "offline_scans_schema",
]

import asyncio
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from codeengine.code.errors import BadRequest, Reason
from codeengine.code.model import CITIES
from codeengine.code.offlinescans import (
    SCAN_ID_PATTERN,
    OfflineScan,
    OfflineScanPolicy,
    judge_at,
    remember_for_s,
)
from codeengine.code.scans import MAX_ID_CHARS, ScanEntry
from codeengine.code.token import MAX_TOKEN_CHARS
from codeengine.code.verification import Verdict
from codeengine.metrics import OFFLINE_SCANS, VERIFICATIONS
from codeengine.web.auth import CLIENT, CREDENTIALS
from codeengine.web.body import Field, read_object, validate_object
from codeengine.web.routes import Route, closed_object, object_body, object_schema, ref
from codeengine.web.runtime import CLOCK, KEYS, SETTINGS, STORE
from verifier.verify import BATCH_ITEM_BYTES, SCAN_LOG

log = logging.getLogger("verifier.offlinescans")

OFFLINE_ITEM_FIELDS = {
    "id": Field(
        str,
        max_length=43,
        schema={
            "pattern": SCAN_ID_PATTERN,
            "description": "The scan's id, made by the terminal (12 to 32 random bytes, "
            "base64url): the same scan sent again is logged once.",
        },
    ),
    # Not bounded here: what was scanned is judged per scan (a text too long or not the
    # engine's answers MALFORMED for that scan alone), so one bad scan cannot refuse the batch.
    "code": Field(
        str,
        schema={
            "description": "The scanned text; one that is not the engine's code (`CE1:`, "
            f"at most {MAX_TOKEN_CHARS} characters) answers MALFORMED and is not logged."
        },
    ),
    "terminal": Field(str, max_length=MAX_ID_CHARS, printable=True),
    "venue": Field(str, required=False, max_length=MAX_ID_CHARS, printable=True),
    "city": Field(
        int,
        schema={"enum": sorted(CITIES), "description": "The terminal's six-digit city code."},
    ),
    "at_ms": Field(
        int,
        minimum=0,
        schema={"description": "When the terminal scanned it, in milliseconds since the epoch."},
    ),
}
OFFLINE_SCAN_SCHEMAS: dict[str, Any] = {
    "OfflineScan": object_schema(OFFLINE_ITEM_FIELDS),
    "OfflineScanResults": closed_object(
        {
            "results": {
                "type": "array",
                "items": closed_object(
                    {
                        "id": {"type": "string"},
                        "logged": {"type": "boolean"},
                        "reason": {
                            "type": "string",
                            "description": "The verifier's verdict at the scan's time "
                            "(VALID, EXPIRED, REVOKED, ...) when logged; MALFORMED, "
                            "DUPLICATE, SCAN_TOO_OLD or SCAN_IN_FUTURE when not.",
                        },
                    }
                ),
            }
        }
    ),
}
"""The components the route's body and answer name (``OfflineScans`` is the app's)."""
OFFLINE_FIELDS = {"scans": Field(list, schema={"$ref": "#/components/schemas/OfflineScans"})}
_TERMINATORS = "\r\n"
YIELD_EVERY = 16
"""Scans judged between yields to the event loop: 16 SM2 checks are about 11 ms, so a full
request never holds the worker's other requests for longer than that at a time."""


def offline_scans_schema(batch_max: int) -> dict[str, Any]:
    """The component ``OfflineScans``: as many scans as the app's ``offline_batch_max`` takes."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": batch_max,
        "items": {"$ref": "#/components/schemas/OfflineScan"},
    }


def _scans(body: dict[str, Any], limit: int) -> list[OfflineScan]:
    items = body["scans"]
    if not 0 < len(items) <= limit:
        raise BadRequest(f"field 'scans' must hold 1 to {limit} scans")
    scans = []
    for index, item in enumerate(items):
        try:
            fields = validate_object(item, OFFLINE_ITEM_FIELDS)
            if not OfflineScan.valid_id(fields["id"]):
                raise BadRequest("field 'id' is not a scan id")
            if fields["city"] not in CITIES:
                raise BadRequest(
                    "field 'city' is not a city of the province", reason=Reason.UNKNOWN_CITY
                )
        except BadRequest as exc:
            raise BadRequest(f"scans[{index}]: {exc.detail}", reason=exc.reason) from None
        scans.append(
            OfflineScan(
                fields["id"],
                fields["code"].rstrip(_TERMINATORS),
                fields["terminal"],
                fields["city"],
                fields["at_ms"],
                fields.get("venue", ""),
            )
        )
    return scans


def _outcomes(
    scans: list[OfflineScan], judged: list[Verdict | Reason], claimed: list[bool]
) -> tuple[list[dict[str, Any]], list[ScanEntry]]:
    """The answer for each scan and the entries to log, counted in the metrics; ``claimed``
    holds one flag for each scan judged a Verdict, in order."""
    claims = iter(claimed)
    results: list[dict[str, Any]] = []
    entries = []
    for scan, outcome in zip(scans, judged, strict=True):
        if isinstance(outcome, Reason):
            results.append({"id": scan.scan_id, "logged": False, "reason": outcome.value})
            OFFLINE_SCANS.labels(outcome.value).inc()
            continue
        if not next(claims):
            results.append({"id": scan.scan_id, "logged": False, "reason": "DUPLICATE"})
            OFFLINE_SCANS.labels("DUPLICATE").inc()
            continue
        entries.append(
            ScanEntry(
                scan.terminal,
                scan.venue,
                scan.city,
                scan.at_ms,
                outcome.subject or "",
                outcome.reason,
                outcome.colour.label if outcome.colour is not None else "",
            )
        )
        VERIFICATIONS.labels(outcome.reason, str(scan.city), "offline").inc()
        OFFLINE_SCANS.labels("logged").inc()
        results.append({"id": scan.scan_id, "logged": True, "reason": outcome.reason})
    return results, entries


async def offline_scans(request: web.Request) -> web.Response:
    """Judge and log scans a terminal checked offline; one result per scan, in order."""
    app = request.app
    settings = app[SETTINGS]
    limit = settings.verifier.offline_batch_max
    # A scan is a batch item with an id and a time: 100 bytes more than the batch verify's.
    max_bytes = max(settings.service.client_max_size_bytes, limit * (BATCH_ITEM_BYTES + 100))
    body = await read_object(request, OFFLINE_FIELDS, max_bytes)
    scans = _scans(body, limit)
    # Each scan costs what a verify does: the request took one token, the rest take the others,
    # so a batch is held to the client's rate as the same scans sent one by one would be.
    if len(scans) > 1:
        app[CREDENTIALS].admit_at(request[CLIENT], time.monotonic(), len(scans) - 1)
    now = int(app[CLOCK]())
    keys = app[KEYS]
    trust = keys.require_trust()
    policy = OfflineScanPolicy(
        settings.verifier.offline_scan_max_age_s,
        settings.verifier.offline_scan_future_s,
        settings.codes.clock_skew_s,
        settings.verifier.cross_city,
    )
    judged: list[Verdict | Reason] = []
    for index, scan in enumerate(scans):
        if index and index % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let the worker's other requests run between checks
        judged.append(judge_at(scan, trust, keys.revocations, now, policy))
    to_claim = [
        (scan.scan_id, remember_for_s(scan, now, policy))
        for scan, outcome in zip(scans, judged, strict=True)
        if isinstance(outcome, Verdict)
    ]
    # The claims carry this request's own token: if the request fails before its scans are
    # queued to the scan log, it gives back exactly its own claims, so the terminal's resend
    # logs them instead of hearing DUPLICATE for scans nobody logged.
    token = secrets.token_urlsafe(12)
    store = app[STORE]
    client = request[CLIENT].name
    # A store that cannot claim every id answers 503 (the claims it made given back by the
    # store itself first): the terminal keeps its queue and sends it again, nothing logged.
    claimed = await store.claim_offline_scans(client, to_claim, token) if to_claim else []
    try:
        results, entries = _outcomes(scans, judged, claimed)
    except BaseException:
        if to_claim:
            released = await store.release_offline_scans(client, [i for i, _ in to_claim], token)
            log.warning("offline scans: request failed, %d claims given back", released)
        raise
    # Queued only now, all at once, and queueing never fails: a scan is either logged and
    # claimed, or neither.
    scan_log = app[SCAN_LOG]
    for entry in entries:
        scan_log.add(entry)
    return web.json_response({"results": results})


OFFLINE_SCANS_ROUTE = Route(
    "POST",
    "/v1/scans/offline",
    offline_scans,
    "scans_offline",
    scope="verify",
    summary="Log scans a terminal checked offline, sent when its network returned",
    description="Each scan is verified again by this verifier at its own `at_ms` (with this "
    "verifier's trust and revocation lists) and logged with that time and this verdict. A "
    "scan older than `offline_scan_max_age_s` answers `SCAN_TOO_OLD`, one more than "
    "`offline_scan_future_s` ahead of this verifier's clock `SCAN_IN_FUTURE`, a text that is "
    "not the engine's code `MALFORMED`; none of these is logged, and each is answered for its "
    "scan alone (a 400 is for a body or a scan whose own fields are wrong, and names the scan "
    "as `scans[i]`). A scan whose `id` was logged before answers `DUPLICATE` and is not logged "
    "again, so a terminal may send its queue again whenever it did not see the answer. 503 logs "
    "nothing: send the same scans again later. Each scan takes one token of the client's rate, "
    "so a request of more scans than the client's bucket holds answers 429.",
    body=object_body("OfflineScanBatch", OFFLINE_FIELDS),
    answers={"200": ("One result per scan, in order", ref("OfflineScanResults"))},
    problems=(400, 413, 415, 503),
)
