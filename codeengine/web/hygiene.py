"""aiohttp's answer to bytes that are not HTTP: a JSON problem, and no request in the log.

aiohttp answers a request its parser refuses (bare-LF line endings, a bad method, a header
line too long) with ``text/plain`` holding the parser's message, which quotes the raw request,
and logs that message at ERROR with a traceback: a client's ``Authorization`` header and body
then sit in the log and come back to whoever sent them. It offers no setting for either.

:class:`QuietRequestHandler` answers those requests as the services answer every other
refusal, ``{"reason": "MALFORMED_REQUEST", "detail": ...}`` (413 ``BODY_TOO_LARGE``, 5xx
``INTERNAL``), and logs one fixed line without the message or the exception's text, which the
log's repeat limit then collapses under a flood (codeengine.logs). The answer and the line
share a new ``X-Request-Id``: a request that is not HTTP has no header to take one from. The
fast lane hands the requests it cannot parse to aiohttp, so both paths answer alike.

aiohttp has no hook for the protocol class its server makes: :func:`install` puts this one in
its place, for every server of the process; the worker calls it at start-up with the logs.
"""

from __future__ import annotations

__all__ = ["MALFORMED_DETAIL", "QuietRequestHandler", "install"]

import json
import logging
from typing import Any

from aiohttp import web, web_server
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from codeengine.code.errors import Reason
from codeengine.web.requestid import REQUEST_ID_HEADER, REQUEST_IDS

log = logging.getLogger("codeengine.http")

MALFORMED_DETAIL = "the request is not valid HTTP/1.1"


def _reason(status: int) -> Reason:
    if status == 413:
        return Reason.BODY_TOO_LARGE
    return Reason.INTERNAL if status >= 500 else Reason.MALFORMED_REQUEST


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection protocol, with its error answers and error logs made safe."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON problem for ``status``; ``message`` (which quotes the request) is dropped."""
        if request.writer.output_size > 0:
            # As aiohttp: an answer has begun, so the connection can only be dropped.
            raise ConnectionError("response already begun")
        reason = _reason(status)
        request_id = REQUEST_IDS.new()
        context = {"request_id": request_id, "reason": str(reason), "status": status}
        if status >= 500:
            # The exception's type and frames only (codeengine.logs); never its text.
            log.error("aiohttp could not answer a request", exc_info=exc, extra=context)
            detail = "internal error"
        else:
            log.info("malformed request refused", extra=context)
            detail = MALFORMED_DETAIL if status != 413 else "the request is too large"
        body = json.dumps({"reason": str(reason), "detail": detail}).encode()
        response = web.Response(status=status, body=body, content_type="application/json")
        response.headers[REQUEST_ID_HEADER] = request_id
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own failures: one fixed line (its messages may embed a repr)."""
        log.error("aiohttp failed serving a connection", exc_info=kw.get("exc_info", True))


def install() -> None:
    """Make every aiohttp server of this process use :class:`QuietRequestHandler`."""
    # web.Server makes its protocols from this module's name at each connection.
    setattr(web_server, "RequestHandler", QuietRequestHandler)  # noqa: B010
