"""Request ids and W3C trace context: what ties a request's log lines to its answer.

Every request gets an id: the caller's ``X-Request-Id`` when it is sane (at most
``MAX_REQUEST_ID_CHARS`` of letters, digits and ``. _ : -``, and nothing that looks like a
resident ID or USCC), else one made here. The answer carries it back in ``X-Request-Id``, and
so does every log line about the request (codeengine.logs). A valid W3C ``traceparent`` adds
its trace id and parent id to those lines; an invalid one is ignored.

A made id is this worker's random prefix and a counter, ``5f1c2a9be0d4-1a2b``: unique across
workers and restarts without a random draw per request. The fast lane formats it straight into
the answer's bytes; the text form is made only when a log line asks for it.
"""

from __future__ import annotations

__all__ = [
    "MAX_REQUEST_ID_CHARS",
    "MAX_TRACEPARENT_CHARS",
    "REQUEST_IDS",
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "HeaderFields",
    "RequestIds",
    "current_request_id",
    "parse_traceparent",
    "sane_request_id",
]

import itertools
import os
import re
from collections.abc import Callable, Mapping

from codeengine.logs import REQUEST_CONTEXT

REQUEST_ID_HEADER = "X-Request-Id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID_CHARS = 64
"""A UUID is 36 characters; longer ids are replaced rather than cut (a cut id matches none of
the caller's own records)."""
MAX_TRACEPARENT_CHARS = 256
PREFIX_BYTES = 6

_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_CHARS}}}")
# What the log's masks would hide in an id of those characters (codeengine.logs.scrub): a
# resident ID or USCC, which is one whole run of letters and digits, 18 long; or a word such as
# "password" before a colon.
_LONG_RUN = re.compile(r"[0-9A-Za-z]{18}")
_PERSONAL = re.compile(
    r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"
    r"|(?<![0-9A-Z])[0-9A-HJ-NP-RTUWXY]{2}\d{6}[0-9A-HJ-NP-RTUWXY]{10}(?![0-9A-Z])"
)
_SECRET_WORD = re.compile(r"(?i)\b(authorization|api[-_]?key|password|secret)\b\s*:")
# version-traceid-parentid-flags, lower-case hex (W3C Trace Context, section 3.2).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16
_UNPARSED = ("", "")


def sane_request_id(value: str) -> str | None:
    """``value`` if it may serve as a request id as is, else None.

    Cheap for what callers send (under a microsecond for a UUID): the character check is one
    regular expression, and the search for personal data runs only where there is a run of
    letters and digits long enough to be some. An id that passes is one the log's masks leave
    unchanged, so the answer's header and the log lines show the same id.
    """
    if len(value) > MAX_REQUEST_ID_CHARS or _ID.fullmatch(value) is None:
        return None
    if _LONG_RUN.search(value) is not None and _PERSONAL.search(value) is not None:
        return None
    if ":" in value and _SECRET_WORD.search(value) is not None:
        return None
    return value


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """The trace id and parent id of a valid W3C ``traceparent``, else None.

    Version 00 is exactly four fields; a later version may add fields after them, which are
    not read. Version ff and all-zero ids are invalid.
    """
    if len(value) > MAX_TRACEPARENT_CHARS:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    end = match.end()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if end != len(value) and (version == "00" or value[end] != "-"):
        return None
    return trace_id, parent_id


class RequestIds:
    """This worker's made ids: a random prefix, then a counter (new prefix after a fork)."""

    __slots__ = ("next_seq", "prefix", "prefix_bytes")

    def __init__(self) -> None:
        self.prefix = ""
        self.prefix_bytes = b""
        self.next_seq: Callable[[], int] = itertools.count(1).__next__
        """The next request's number (C speed: ``itertools.count``)."""
        self.reseed()

    def reseed(self) -> None:
        """A new prefix and counter: at start-up, and in a forked child."""
        self.prefix = os.urandom(PREFIX_BYTES).hex() + "-"
        self.prefix_bytes = self.prefix.encode()
        self.next_seq = itertools.count(1).__next__

    def text(self, seq: int) -> str:
        """Request number ``seq``'s id."""
        return f"{self.prefix}{seq:x}"

    def new(self) -> str:
        """A new id."""
        return self.text(self.next_seq())


REQUEST_IDS = RequestIds()
os.register_at_fork(after_in_child=REQUEST_IDS.reseed)


class HeaderFields:
    """The log fields of a request with ``headers`` (aiohttp's path; the lane has its own).

    The id is fixed when the object is made; the trace is parsed when a line asks for it."""

    __slots__ = ("_headers", "_trace", "request_id")

    def __init__(self, headers: Mapping[str, str]) -> None:
        inbound = headers.get(REQUEST_ID_HEADER)
        sane = None if inbound is None else sane_request_id(inbound)
        self.request_id = REQUEST_IDS.new() if sane is None else sane
        self._headers = headers
        self._trace: tuple[str, str] | None = _UNPARSED

    def _parsed(self) -> tuple[str, str] | None:
        trace = self._trace
        if trace is _UNPARSED:
            raw = self._headers.get(TRACEPARENT_HEADER)
            trace = self._trace = None if raw is None else parse_traceparent(raw)
        return trace

    @property
    def trace_id(self) -> str | None:
        trace = self._parsed()
        return None if trace is None else trace[0]

    @property
    def parent_id(self) -> str | None:
        trace = self._parsed()
        return None if trace is None else trace[1]


def current_request_id() -> str | None:
    """The id of the request being answered in this context, if any."""
    fields = REQUEST_CONTEXT.get()
    return None if fields is None else fields.request_id
