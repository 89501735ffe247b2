"""Every failure becomes a JSON problem body with a stable ``reason``.

Handlers raise; they never build error responses: the service middleware calls
``problem_for``. A body looks like
``{"reason": "VERSION_CONFLICT", "detail": "current version is 3", ...extra}``. An unexpected
exception answers 500 INTERNAL without details: the log has its type and frames under the
request's id (``X-Request-Id``, codeengine.web.requestid), which the answer's body carries too
as ``request_id``, so a client's report finds the line. A client that
went away mid-body gets 499 ``CLIENT_CLOSED`` (which nobody reads, but the metrics count under
that reason, not as an error of the server).
"""

from __future__ import annotations

__all__ = ["CLIENT_CLOSED_STATUS", "REASON", "problem", "problem_for", "status_for"]

import logging
from typing import Any

from aiohttp import web

from codeengine.code.errors import (
    AccessDenied,
    AliasTaken,
    AppealDecided,
    BadRequest,
    BatchConflict,
    ClientClosed,
    CodeEngineError,
    InvalidIdentifier,
    KeyringError,
    Moved,
    NotAuthenticated,
    NotWriter,
    RateLimited,
    Reason,
    RecordTampered,
    RotationPending,
    StoreUnavailable,
    UnknownAppeal,
    UnknownBatch,
    UnknownSubject,
    VerificationError,
    VersionConflict,
)
from codeengine.web.requestid import REQUEST_IDS, current_request_id

log = logging.getLogger("codeengine.web")

STORE_RETRY_AFTER_S = 1
CLIENT_CLOSED_STATUS = 499
"""As nginx logs a request whose client closed the connection first."""
REASON = web.ResponseKey("reason", str)
"""The reason code of a problem response, for the metrics middleware."""

_STATUS: tuple[tuple[type[CodeEngineError], int], ...] = (
    (ClientClosed, CLIENT_CLOSED_STATUS),
    (BadRequest, 400),
    (InvalidIdentifier, 422),
    (VerificationError, 422),
    (NotAuthenticated, 401),
    (AccessDenied, 403),
    (UnknownSubject, 404),
    (UnknownBatch, 404),
    (UnknownAppeal, 404),
    (BatchConflict, 409),
    (AppealDecided, 409),
    (AliasTaken, 409),
    (VersionConflict, 409),
    (RecordTampered, 409),
    (RotationPending, 409),
    (Moved, 410),
    (RateLimited, 429),
    (StoreUnavailable, 503),
    (KeyringError, 503),
)

_HTTP_REASONS = {
    400: Reason.BAD_JSON,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    413: Reason.BODY_TOO_LARGE,
    415: Reason.UNSUPPORTED_MEDIA_TYPE,
}


def status_for(exc: CodeEngineError) -> int:
    """The HTTP status an engine error maps to."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(
    status: int,
    reason: Reason | str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """A JSON problem response."""
    body = {"reason": str(reason), "detail": detail, **extra}
    response = web.json_response(body, status=status, headers=headers)
    response[REASON] = str(reason)
    return response


def _from_engine_error(exc: CodeEngineError) -> web.Response:
    status = status_for(exc)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, NotWriter):
        # Not a fault of the store: the other endpoint of the city takes the write now.
        headers["Retry-After"] = "0"
        if exc.writer:
            extra["writer"] = exc.writer
    elif isinstance(exc, StoreUnavailable | KeyringError):
        headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
    elif isinstance(exc, Moved):
        extra["moved_to"] = exc.to
    elif isinstance(exc, VersionConflict):
        extra["current_version"] = exc.current_version
    elif isinstance(exc, RecordTampered):
        # The stored status cannot be vouched for: what a screen shows for it is grey.
        extra["colour"] = "grey"
    elif isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return problem(status, exc.reason, exc.detail, headers or None, **extra)


def problem_for(
    exc: Exception,
    operation: str,
    method: str = "",
    client: str | None = None,
    latency_s: float | None = None,
) -> web.Response:
    """The problem response for any exception a handler raised (aiohttp's redirects re-raise);
    ``method``, ``operation``, ``client`` and ``latency_s`` describe the request in the log line
    of an unexpected one."""
    if isinstance(exc, CodeEngineError):
        return _from_engine_error(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        reason = _HTTP_REASONS.get(exc.status, Reason.INTERNAL if exc.status >= 500 else exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        return problem(exc.status, reason, exc.reason, headers or None)
    # Outside a request (a caller of its own) the line and the body still share an id.
    request_id = current_request_id() or REQUEST_IDS.new()
    context = {
        "request_id": request_id,
        "client": client,
        "operation": operation,
        "reason": str(Reason.INTERNAL),
        "status": 500,
        "latency_ms": None if latency_s is None else round(latency_s * 1000, 3),
    }
    log.error("unhandled error in %s %s", method, operation, exc_info=exc, extra=context)
    return problem(500, Reason.INTERNAL, "internal error", request_id=request_id)
