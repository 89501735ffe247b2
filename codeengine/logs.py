"""Structured, scrubbed, rate-limited logs for the services and the supervisor.

Every line is one JSON object: ``time``, ``level``, ``service``, ``worker`` (the pid),
``logger``, ``message``, and where the line is about a request ``request_id`` (with
``trace_id`` and ``parent_id`` when the request came with a W3C ``traceparent``), ``client``,
``operation``, ``reason``, ``status`` and ``latency_ms`` (docs/operations.md lists them).

A line written while a request is being answered carries that request's id without the caller
passing it: :data:`REQUEST_CONTEXT` holds the request's fields (set by the service wrapper on
aiohttp, once per connection by the fast lane), and the handler stamps them on each record.

Nothing secret or personal may reach a line, whoever writes it. Three rules make sure:

* A library's line (aiohttp, asyncio, anything outside the project) keeps its message template
  only, never the values formatted into it, and quoted or bracketed text in that template
  (reprs of requests, callbacks, byte strings) is cut out: such text is where raw request
  bytes travel.
* An exception is written as its type and the frames it passed (file, line, function), never
  its message, which may quote what a client sent; only an ``OSError``'s (a refused
  connection, a missing file) is kept, as it says nothing about a request.
* Every message then goes through :func:`scrub`, which masks what looks like an API key,
  resident ID, USCC or code anyway, in case one of the project's own messages slips.

A flood of one line (a client sending malformed requests as fast as it can) is collapsed: the
first line of a kind in a window of ``repeat_window_s`` is written, the others are counted, and
one ``repeated`` line per window says how many there were (:class:`RepeatLimiter`).
"""

from __future__ import annotations

__all__ = [
    "REQUEST_CONTEXT",
    "REQUEST_FIELDS",
    "JSONFormatter",
    "LimitedHandler",
    "RepeatLimiter",
    "RequestFields",
    "scrub",
    "setup_logging",
    "stamp_request",
]

import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from codeengine.logfile import OwnerFileHandler
from codeengine.settings import LogSettings

PROJECT_LOGGERS = ("codeengine", "issuer", "verifier", "failover")
REQUEST_FIELDS = (
    "request_id",
    "trace_id",
    "parent_id",
    "client",
    "operation",
    "reason",
    "status",
    "latency_ms",
)
"""Fields a line about one request carries (``extra=`` of the logging call, or stamped from
:data:`REQUEST_CONTEXT`)."""
ID_FIELDS = frozenset({"request_id", "trace_id", "parent_id"})
"""Fields checked at the boundary (length and characters, codeengine.web.requestid): written
without the long-run mask of :func:`scrub`, which would mask every UUID a caller sends."""
MAX_FRAMES = 12
MAX_LIBRARY_MESSAGE_CHARS = 160

_MASKS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+\S+"), r"\1 [redacted]"),
    (
        re.compile(r"(?i)\b(authorization|api[-_]?key|password|secret)\b(\s*[:=]\s*)\S+"),
        r"\1\2[redacted]",
    ),
    # Resident IDs: 17 digits and a check character.
    (re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"), "[id]"),
    # Unified social credit codes (USCC): 18 characters of their alphabet, digits in 3-8.
    (
        re.compile(r"(?<![0-9A-Z])[0-9A-HJ-NP-RTUWXY]{2}\d{6}[0-9A-HJ-NP-RTUWXY]{10}(?![0-9A-Z])"),
        "[uscc]",
    ),
)
# Keys, tokens, codes, pseudonyms: long runs of base64url, base45 or hex.
_LONG_RUN = re.compile(r"[A-Za-z0-9_\-+/$%*.:]{32,}")
# In a library's template: quoted strings, byte strings and <reprs> (which may hold either).
_QUOTED = re.compile(r"""b?'[^']*'?|b?"[^"]*"?|<[^>]*>?""")


def scrub(text: str, *, long_runs: bool = True) -> str:
    """``text`` with anything that looks secret or personal masked; ``long_runs`` False keeps
    long runs of letters and digits (identifiers checked at the boundary) and masks the rest."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    if long_runs:
        text = _LONG_RUN.sub("[redacted]", text)
    return text


class RequestFields(Protocol):
    """What a log line learns of the request being answered."""

    @property
    def request_id(self) -> str: ...

    @property
    def trace_id(self) -> str | None: ...

    @property
    def parent_id(self) -> str | None: ...


REQUEST_CONTEXT: ContextVar[RequestFields | None] = ContextVar("codeengine_request", default=None)
"""The request being answered in this context, if any (see the module's docstring)."""


def stamp_request(record: logging.LogRecord) -> None:
    """Give ``record`` the id and trace of the request being answered, unless it has an id of
    its own (``extra=``) or no request is being answered."""
    if "request_id" in record.__dict__:
        return
    fields = REQUEST_CONTEXT.get()
    if fields is None:
        return
    record.request_id = fields.request_id
    trace_id = fields.trace_id
    if trace_id is not None:
        record.trace_id = trace_id
        record.parent_id = fields.parent_id


def _is_project(name: str) -> bool:
    return name.split(".", 1)[0] in PROJECT_LOGGERS


def _message(record: logging.LogRecord) -> str:
    if _is_project(record.name):
        try:
            return record.getMessage()
        except (TypeError, ValueError):
            return str(record.msg)
    if record.name == "py.warnings":
        # A warning's whole text is its one argument ("%s"): the first line names where and
        # what, and the quoted text in it is cut out below as in any library line.
        template = record.getMessage()
    else:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    first = template.strip().split("\n", 1)[0]
    return _QUOTED.sub("…", first)[:MAX_LIBRARY_MESSAGE_CHARS]


def _exception(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None],
) -> dict[str, object]:
    kind, value, tb = exc_info
    fields: dict[str, object] = {"exc_type": f"{kind.__module__}.{kind.__qualname__}"}
    if isinstance(value, OSError):
        fields["exc_text"] = str(value)
    frames = traceback.extract_tb(tb)[-MAX_FRAMES:]
    fields["exc_frames"] = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames]
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object a line, by the rules of this module."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.worker = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "worker": self.worker,
            "logger": record.name,
            "message": scrub(_message(record)),
        }
        for name in (*REQUEST_FIELDS, "repeated", "window_s"):
            value = record.__dict__.get(name)
            if value is None:
                continue
            if isinstance(value, str):
                value = scrub(value, long_runs=name not in ID_FIELDS)
            line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line.update(_exception(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


@dataclass(slots=True)
class _Window:
    started: float
    first: logging.LogRecord
    suppressed: int = 0


class RepeatLimiter:
    """Which lines to write when the same one comes again and again.

    A line's kind is its logger, level, message template and request fields (reason,
    operation): the values formatted into a message do not make it another kind, so a
    thousand clients sending garbage are one kind. Times are passed in (a record's own time).
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._windows: dict[tuple[object, ...], _Window] = {}

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple[object, ...]:
        """What makes two records the same line."""
        extra = tuple(record.__dict__.get(name) for name in ("reason", "operation", "status"))
        return (record.name, record.levelno, str(record.msg), *extra)

    def admit_at(self, record: logging.LogRecord, now: float) -> list[logging.LogRecord]:
        """The records to write now for ``record``: the summaries of windows that have ended,
        then ``record`` itself unless it repeats one seen within the window."""
        out = self.expired_at(now)
        if self.window_s <= 0:
            return [*out, record]
        key = self.kind(record)
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(now, record)
            out.append(record)
        else:
            window.suppressed += 1
        return out

    def expired_at(self, now: float) -> list[logging.LogRecord]:
        """Summaries of the windows that ended by ``now`` (those windows are forgotten)."""
        ended = [k for k, w in self._windows.items() if now - w.started >= self.window_s]
        return [s for s in (self._summary(self._windows.pop(k), now) for k in ended) if s]

    def drain(self, now: float) -> list[logging.LogRecord]:
        """Summaries of every window, ended or not (at shutdown)."""
        windows, self._windows = self._windows, {}
        return [s for s in (self._summary(w, now) for w in windows.values()) if s]

    def _summary(self, window: _Window, now: float) -> logging.LogRecord | None:
        if not window.suppressed:
            return None
        summary = logging.makeLogRecord(dict(window.first.__dict__))
        summary.exc_info = summary.exc_text = None
        summary.created = now
        summary.repeated = window.suppressed
        summary.window_s = round(max(now - window.started, 0.0), 1)
        return summary


class LimitedHandler(logging.Handler):
    """Passes records to ``target`` through a :class:`RepeatLimiter`.

    A window's summary is written when a later record comes, or by a timer thread at most a
    window after the window ended, or when logging shuts down.
    """

    def __init__(self, target: logging.Handler, window_s: float) -> None:
        super().__init__()
        self.target = target
        self.limiter = RepeatLimiter(window_s)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if window_s > 0:
            self._timer = threading.Thread(
                target=self._tick, name="log-repeats", daemon=True, args=(window_s,)
            )
            self._timer.start()

    def emit(self, record: logging.LogRecord) -> None:
        # Here, in the context of the logging call: the timer thread's summaries have none.
        stamp_request(record)
        for admitted in self.limiter.admit_at(record, record.created):
            self.target.handle(admitted)

    def flush_repeats(self, now: float) -> None:
        """Write the summaries of the windows that have ended."""
        with self.lock:  # type: ignore[union-attr]
            for summary in self.limiter.expired_at(now):
                self.target.handle(summary)

    def _tick(self, window_s: float) -> None:
        while not self._stop.wait(window_s):
            self.flush_repeats(time.time())

    def close(self) -> None:
        self._stop.set()
        with self.lock:  # type: ignore[union-attr]
            for summary in self.limiter.drain(time.time()):
                self.target.handle(summary)
        self.target.close()
        super().close()


def setup_logging(
    service: str,
    settings: LogSettings,
    path: Path | None = None,
    *,
    capture_stdio: bool = False,
) -> LimitedHandler:
    """Send every logger of this process, libraries' included, through one JSON handler.

    ``path`` None: standard error. Otherwise the process's own file, owner-only and rotated
    (:class:`~codeengine.logfile.OwnerFileHandler`); ``capture_stdio`` makes it standard output
    and error as well.
    """
    target: logging.Handler
    if path is None:
        target = logging.StreamHandler(sys.stderr)
    else:
        target = OwnerFileHandler(
            path,
            max_bytes=settings.max_bytes,
            backups=settings.backups,
            capture_stdio=capture_stdio,
        )
    target.setFormatter(JSONFormatter(service))
    handler = LimitedHandler(target, settings.repeat_window_s)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    # Warnings become log lines too, rather than text on standard error.
    logging.captureWarnings(True)
    return handler
