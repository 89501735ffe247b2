"""JSON answers of the hot paths, written without the generic encoder.

``web.json_response`` runs ``json.dumps`` over a dict and parses its own content type on every
call: about 30 µs of a display's 300 µs under load, where the framework floor's whole answer
costs 15. The hot answers (display, verify) have fixed shapes whose values are integers and
plain ASCII text (tokens are base45, labels are words), so display writes its answer with a
format string, and so does verify for the terminals that see every field. Answers of varying
shape (verify's for the other terminal profiles) go through :func:`json_text`: the C encoder
that ``json.dumps`` ends in, made once instead of per call. Both are handed back as a
:class:`JsonAnswer`, which the fast lane writes after a ready-made head.
"""

from __future__ import annotations

__all__ = ["JSON_CONTENT_TYPE", "JsonAnswer", "json_answer", "json_str", "json_text"]

import _json
import json
from typing import Any, final

from aiohttp import web
from multidict import CIMultiDict

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
"""What ``web.json_response`` sends, so a client cannot tell the two apart."""
_HEADERS: CIMultiDict[str] = CIMultiDict({"Content-Type": JSON_CONTENT_TYPE})


def json_str(text: str) -> str:
    """``text`` as a JSON string: quoted as is when it is printable ASCII without ``"`` or ``\\``
    (no escape needed), else by ``json.dumps``."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


def _unencodable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(document, separators=(",", ":")) without the per-call set-up. No cycle check: the
# answers are trees the handlers build.
_ENCODE = _json.make_encoder(
    None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def json_text(document: object) -> str:
    """``document`` as compact JSON text, as ``json.dumps(document, separators=(",", ":"))``."""
    return "".join(_ENCODE(document, 0))


def json_answer(body: str, *, status: int = 200, cache_control: str = "") -> web.Response:
    """A JSON answer whose ``body`` is already JSON text."""
    response = web.Response(body=body.encode(), status=status, headers=_HEADERS)
    if cache_control:
        response.headers["Cache-Control"] = cache_control
    return response


@final
class JsonAnswer:
    """A successful JSON answer of a hot route, not yet a response.

    The hot handlers (display, verify) return one. Served by aiohttp, the service wrapper turns
    it into the ``web.Response`` that :func:`json_answer` makes; on the fast lane it is written
    as is, after the very head that response would have (worked out once per status and
    Cache-Control). Making a ``web.Response`` and writing it out cost a verify answer 2.3 µs;
    a JsonAnswer costs 0.6 (timeit).
    """

    __slots__ = ("body", "cache_control", "status")

    def __init__(self, body: str, *, status: int = 200, cache_control: str = "") -> None:
        if not 200 <= status < 300 or status in (204, 205):
            raise ValueError(f"a JSON answer is a success with a body, not {status}")
        self.body = body
        self.status = status
        self.cache_control = cache_control

    def response(self) -> web.Response:
        """The answer as aiohttp sends it."""
        return json_answer(self.body, status=self.status, cache_control=self.cache_control)
