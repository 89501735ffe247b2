"""Bulk conversion over HTTP: import a batch from the topic library, inspect it, roll it back.

``POST /v1/batches?batch_id=ID[&dry_run=true]`` streams the body (``text/csv`` or
``application/x-ndjson``) through the same importer as ``codeengine convert import``: rows are
checked one at a time and applied in chunks, so any size is fine; the answer is the report.
While it runs, ``GET /v1/batches/{batch_id}`` shows the counts so far.
"""

from __future__ import annotations

__all__ = ["BATCH_ROUTES"]


from aiohttp import web

from codeengine.code.errors import BadRequest, Reason
from codeengine.store.batches import COLUMNS, BatchReport, Format, Importer, check_batch_id
from codeengine.web.auth import CLIENT
from codeengine.web.body import read_lines
from codeengine.web.routes import Body, Route, path_param, query_param, ref
from codeengine.web.runtime import CLOCK, PEPPER, PROFILE, RULES, STORE
from issuer.schemas import BATCH_ID

_FORMATS: dict[str, Format] = {
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
}
MAX_ERRORS_SHOWN = 1000
DEFAULT_LISTED = 20
MAX_LISTED = 100


def _batch_id(request: web.Request, source: str) -> str:
    text = request.match_info.get("batch_id") if source == "path" else request.query.get("batch_id")
    if text is None:
        raise BadRequest("query 'batch_id' is required", reason=Reason.MISSING_FIELD)
    return check_batch_id(text)


async def import_batch(request: web.Request) -> web.Response:
    """Import (or with ``dry_run=true``, preview) a batch of risk records."""
    fmt = _FORMATS.get(request.content_type)
    if fmt is None:
        raise web.HTTPUnsupportedMediaType(reason="a batch is text/csv or application/x-ndjson")
    batch_id = _batch_id(request, "query")
    dry_run = request.query.get("dry_run", "false")
    if dry_run not in ("true", "false"):
        raise BadRequest("query 'dry_run' must be true or false")
    app = request.app
    importer = Importer(
        app[STORE],
        app[RULES],
        app[PEPPER],
        mac=app[PROFILE].mac,
        batch_id=batch_id,
        actor=f"batch:{batch_id}",
        clock=app[CLOCK],
        dry_run=dry_run == "true",
    )
    lines = read_lines(request)
    report = await importer.run(lines, fmt)
    answer = report.to_json()
    answer["errors"] = answer["errors"][:MAX_ERRORS_SHOWN]
    answer["submitted_by"] = request[CLIENT].name
    return web.json_response(answer, status=200 if report.already_imported else 201)


async def show_batch(request: web.Request) -> web.Response:
    """A batch's state, counts (live while it imports) and first refused rows."""
    batch_id = _batch_id(request, "path")
    meta, errors = await request.app[STORE].batch_info(batch_id, MAX_ERRORS_SHOWN)
    answer = BatchReport.from_meta(batch_id, meta, errors).to_json()
    answer["updated_at"] = int(meta.get("updated_at", 0))
    if meta.get("state") == "rolled_back":
        answer["rollback"] = {
            name: int(meta.get(f"rollback_{name}", 0))
            for name in ("restored", "unchanged", "changed_since")
        }
    return web.json_response(answer)


async def list_batches(request: web.Request) -> web.Response:
    """The latest batches, newest first, with state and counts (the ops console's panel)."""
    text = request.query.get("limit", str(DEFAULT_LISTED))
    if (
        not (text.isascii() and text.isdigit() and len(text) <= 3)
        or not 1 <= int(text) <= MAX_LISTED
    ):
        raise BadRequest(f"query 'limit' must be an integer from 1 to {MAX_LISTED}")
    listed = await request.app[STORE].recent_batches(int(text))
    batches = []
    for batch_id, meta in listed:
        entry = BatchReport.from_meta(batch_id, meta).to_json(with_errors=False)
        del entry["already_imported"], entry["errors_by_reason"], entry["dry_run"]
        for name in ("created_at", "updated_at", "finished_at"):
            entry[name] = int(meta[name]) if name in meta else None
        batches.append(entry)
    return web.json_response({"batches": batches})


async def rollback_batch(request: web.Request) -> web.Response:
    """Restore what the batch changed, subject by subject, unless changed since."""
    batch_id = _batch_id(request, "path")
    now = int(request.app[CLOCK]())
    actor = f"{request[CLIENT].name}:rollback:{batch_id}"
    counts = await request.app[STORE].rollback_batch(batch_id, now, actor)
    return web.json_response({"batch_id": batch_id, "state": "rolled_back", **counts})


_BATCH = path_param("batch_id", BATCH_ID)
_CSV_HEADER = ",".join(COLUMNS)
BATCH_ROUTES = [
    Route(
        "POST",
        "/v1/batches",
        import_batch,
        "batch_import",
        scope="convert",
        summary="赋码/转码 in bulk: import a batch of risk records from the topic library",
        description=f"CSV (header `{_CSV_HEADER}`) or NDJSON (objects with those keys), "
        "streamed: any size. `event_time` is ISO 8601 with its offset, or Unix seconds. Bad rows "
        "are reported by line and reason and do not stop the batch. The same `batch_id` is never "
        "imported twice (200 with the stored report); a batch that stopped half-way resumes. "
        "`dry_run=true` reports what would change and writes nothing.",
        parameters=(
            query_param("batch_id", BATCH_ID, required=True),
            query_param("dry_run", {"enum": ["true", "false"]}),
        ),
        body=Body(
            {
                "text/csv": {"schema": {"type": "string", "pattern": f"^{_CSV_HEADER}\\r?\\n"}},
                "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
            }
        ),
        answers={
            "201": ("Imported (or dry run)", ref("BatchReport")),
            "200": ("Imported before: the stored report", ref("BatchReport")),
        },
        problems=(400, 409, 415, 503),
    ),
    Route(
        "GET",
        "/v1/batches",
        list_batches,
        "batch_list",
        scope="convert",
        summary="The latest bulk batches with their state and progress",
        description=f"Newest first, at most `limit` (1 to {MAX_LISTED}, default "
        f"{DEFAULT_LISTED}). Progress is the rows read so far; a running batch updates it after "
        "every chunk.",
        parameters=(
            query_param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LISTED}),
        ),
        answers={"200": ("The batches", ref("BatchList"))},
        problems=(400, 503),
    ),
    Route(
        "GET",
        "/v1/batches/{batch_id}",
        show_batch,
        "batch_show",
        scope="convert",
        summary="A batch's state and counts (live while it imports) and refused rows",
        parameters=(_BATCH,),
        answers={"200": ("The batch", ref("BatchReport"))},
        problems=(400, 404, 503),
    ),
    Route(
        "POST",
        "/v1/batches/{batch_id}/rollback",
        rollback_batch,
        "batch_rollback",
        scope="convert",
        summary="Roll a batch back: restore its subjects' risk periods",
        description="Each subject the batch changed gets back its risk periods from before the "
        "batch, unless something changed it since (counted, left alone). Audited. Possible for "
        "30 days.",
        parameters=(_BATCH,),
        answers={"200": ("Rolled back", ref("RolledBack"))},
        problems=(400, 404, 409, 503),
    ),
]
