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
from codeengine.store.batches import BatchReport, Format, Importer, check_batch_id
from codeengine.web.auth import CLIENT
from codeengine.web.body import read_lines
from codeengine.web.runtime import CLOCK, PEPPER, RULES, STORE

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


BATCH_ROUTES = [
    web.post("/v1/batches", import_batch, name="batch_import"),
    web.get("/v1/batches", list_batches, name="batch_list"),
    web.get("/v1/batches/{batch_id}", show_batch, name="batch_show"),
    web.post("/v1/batches/{batch_id}/rollback", rollback_batch, name="batch_rollback"),
]
