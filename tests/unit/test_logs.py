"""Log lines: JSON with the documented fields, nothing secret in them, floods collapsed, files
owner-only and rotated by size."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from codeengine.logfile import OwnerFileHandler
from codeengine.logs import REQUEST_CONTEXT, JSONFormatter, LimitedHandler, RepeatLimiter, scrub

API_KEY = "Zt3q9LxR2vWm8KpN4sYd6HbJ0cFgTa1E5uQiO7eXw_-"
RESIDENT_ID = "11010119900307425X"
USCC = "91320100MA1MXXXX3K"
DOCUMENTED = {"time", "level", "service", "worker", "logger", "message"}


def record(
    name: str = "codeengine.web",
    msg: str = "something %s",
    args: tuple[Any, ...] = ("happened",),
    level: int = logging.ERROR,
    exc: BaseException | None = None,
    created: float = 1_000_000.0,
    **extra: Any,
) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    made = logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)
    made.created = created
    made.__dict__.update(extra)
    return made


def line(made: logging.LogRecord) -> dict[str, Any]:
    formatted = JSONFormatter("verifier").format(made)
    assert "\n" not in formatted, "one line a record"
    document: dict[str, Any] = json.loads(formatted)
    return document


def test_a_line_is_json_with_the_documented_fields_and_request_fields() -> None:
    got = line(
        record(request_id="ab12", client="dev-verify", operation="verify", reason="INTERNAL")
    )
    assert DOCUMENTED <= got.keys()
    assert (got["service"], got["worker"], got["level"]) == ("verifier", os.getpid(), "error")
    assert got["time"] == "1970-01-12T13:46:40.000Z"
    assert got["message"] == "something happened"
    assert (got["request_id"], got["client"], got["operation"], got["reason"]) == (
        "ab12",
        "dev-verify",
        "verify",
        "INTERNAL",
    )


def test_an_exception_is_its_type_and_frames_never_its_text() -> None:
    got = line(record(exc=ValueError(f"bad body {RESIDENT_ID} from {API_KEY}")))
    assert got["exc_type"] == "builtins.ValueError"
    assert got["exc_frames"] and got["exc_frames"][-1].startswith("test_logs.py:")
    assert "exc_text" not in got
    assert RESIDENT_ID not in json.dumps(got) and API_KEY not in json.dumps(got)


def test_an_os_error_keeps_its_text() -> None:
    got = line(record(exc=ConnectionRefusedError(111, "Connection refused")))
    assert got["exc_text"] == "[Errno 111] Connection refused"


def test_a_library_line_keeps_its_template_without_values_or_quoted_text() -> None:
    raw = b"POST / HTTP/1.1\nAuthorization: Bearer " + API_KEY.encode()
    aiohttp_like = record("aiohttp.server", "Error handling request from %s", ("10.0.0.7",))
    assert line(aiohttp_like)["message"] == "Error handling request from %s"
    asyncio_like = record(
        "asyncio",
        f"Exception in callback <Handle data_received({raw!r})>\nhandle: <Handle ...>",
        (),
    )
    message = line(asyncio_like)["message"]
    assert message == "Exception in callback …"
    parser_like = record("aiohttp.web", f"Bad status line {raw!r}", ())
    assert API_KEY not in line(parser_like)["message"]


def test_a_warning_keeps_where_and_what_without_quoted_text() -> None:
    text = f"app.py:3: UserWarning: bad value '{API_KEY}'\n  warn(x)\n"
    assert (
        line(record("py.warnings", "%s", (text,)))["message"]
        == "app.py:3: UserWarning: bad value …"
    )


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"Authorization: Bearer {API_KEY}", API_KEY),
        (f"token={API_KEY}", API_KEY),
        (f"resident {RESIDENT_ID} refused", RESIDENT_ID),
        (f"resident {RESIDENT_ID.lower()}", RESIDENT_ID.lower()),
        (f"company {USCC}", USCC),
        (f"api_key: short-{API_KEY[:10]}", API_KEY[:10]),
    ],
    ids=["bearer", "long-token", "resident-id", "resident-id-lower", "uscc", "named-key"],
)
def test_scrub_masks_what_looks_secret_or_personal(text: str, hidden: str) -> None:
    assert hidden not in scrub(text)


def test_scrub_leaves_ordinary_text() -> None:
    text = "to 127.0.0.1:7000; will reconnect (city 320100, 3 waiting)"
    assert scrub(text) == text


def test_repeats_within_a_window_are_counted_then_summarised_once() -> None:
    limiter = RepeatLimiter(window_s=10)
    written = []
    for i in range(10_000):
        now = 1000.0 + i * 0.0005  # 10,000 in 5 s
        written += limiter.admit_at(record(reason="MALFORMED_REQUEST", created=now), now)
    assert len(written) == 1 and "repeated" not in written[0].__dict__
    # Another kind of line is not a repeat of the first.
    other = record(reason="BODY_TOO_LARGE", created=1006.0)
    assert limiter.admit_at(other, 1006.0) == [other]
    assert limiter.expired_at(1009.0) == []
    ended = limiter.expired_at(1010.0)
    assert [
        (s.__dict__["reason"], s.__dict__["repeated"], s.__dict__["window_s"]) for s in ended
    ] == [("MALFORMED_REQUEST", 9_999, 10.0)]
    # The window is over: the next one is written again, and starts a new window.
    again = record(reason="MALFORMED_REQUEST", created=1011.0)
    assert limiter.admit_at(again, 1011.0) == [again]
    assert limiter.drain(1012.0) == []


def test_values_formatted_into_a_message_do_not_make_it_another_kind() -> None:
    limiter = RepeatLimiter(window_s=10)
    first = record(msg="from %s", args=("10.0.0.1",))
    assert limiter.admit_at(first, 0.0) == [first]
    assert limiter.admit_at(record(msg="from %s", args=("10.0.0.2",)), 1.0) == []
    assert [s.__dict__["repeated"] for s in limiter.drain(2.0)] == [1]


def test_a_window_of_zero_writes_every_line() -> None:
    limiter = RepeatLimiter(window_s=0)
    assert all(len(limiter.admit_at(record(), float(i))) == 1 for i in range(5))


def test_the_handler_writes_the_summary_when_it_closes() -> None:
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(JSONFormatter("verifier"))
    handler = LimitedHandler(target, window_s=3600)
    for _ in range(100):
        handler.handle(record(reason="MALFORMED_REQUEST"))
    handler.close()
    lines = [json.loads(text) for text in out.getvalue().splitlines()]
    assert [got.get("repeated") for got in lines] == [None, 99]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_log_file_is_owner_only_even_if_it_existed_before(tmp_path: Path) -> None:
    path = tmp_path / "verifier-0.log"
    path.write_text("")
    path.chmod(0o644)
    handler = OwnerFileHandler(path, max_bytes=10_000, backups=2)
    handler.handle(record())
    handler.close()
    assert mode(path) == 0o600


def test_a_log_file_rotates_by_size_keeping_the_backups(tmp_path: Path) -> None:
    path = tmp_path / "verifier-0.log"
    handler = OwnerFileHandler(path, max_bytes=1000, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(100):
        handler.handle(record(msg=f"{i:03d}" + "x" * 96, args=()))  # 100 bytes a line
    handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["verifier-0.log", "verifier-0.log.1", "verifier-0.log.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 1000
        assert mode(tmp_path / name) == 0o600
    # The newest lines are in the file, the ones before in .1, then .2; older are gone.
    assert path.read_text().splitlines()[-1].startswith("099")
    assert (tmp_path / "verifier-0.log.1").read_text().splitlines()[-1].startswith("089")
    assert (tmp_path / "verifier-0.log.2").read_text().splitlines()[-1].startswith("079")


def test_no_backups_empties_the_file_instead(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.log"
    handler = OwnerFileHandler(path, max_bytes=1000, backups=0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for _ in range(25):
        handler.handle(record(msg="y" * 99, args=()))
    handler.close()
    assert [p.name for p in tmp_path.iterdir()] == ["supervisor.log"]
    assert path.stat().st_size == 500


class Fields:
    """A request's log fields, as the service wrapper or the fast lane give them."""

    def __init__(self, request_id: str, trace: tuple[str, str] | None = None) -> None:
        self.request_id = request_id
        self.trace_id: str | None = None if trace is None else trace[0]
        self.parent_id: str | None = None if trace is None else trace[1]


def lines_through_the_handler(*records: logging.LogRecord) -> list[dict[str, Any]]:
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(JSONFormatter("issuer"))
    handler = LimitedHandler(target, window_s=0)
    for made in records:
        handler.handle(made)
    handler.close()
    return [json.loads(text) for text in out.getvalue().splitlines()]


def test_a_line_written_while_a_request_is_answered_carries_its_id_and_trace() -> None:
    trace = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    token = REQUEST_CONTEXT.set(Fields("5f1c2a9be0d4-1a", trace))
    try:
        inside = lines_through_the_handler(record(msg="store slow"))
    finally:
        REQUEST_CONTEXT.reset(token)
    outside = lines_through_the_handler(record(msg="store slow"))
    assert (inside[0]["request_id"], inside[0]["trace_id"], inside[0]["parent_id"]) == (
        "5f1c2a9be0d4-1a",
        *trace,
    )
    assert not {"request_id", "trace_id", "parent_id"} & outside[0].keys()


def test_an_explicit_request_id_wins_over_the_context_and_no_trace_is_made_up() -> None:
    token = REQUEST_CONTEXT.set(Fields("from-context"))
    try:
        got = lines_through_the_handler(record(request_id="explicit"), record())
    finally:
        REQUEST_CONTEXT.reset(token)
    assert [line.get("request_id") for line in got] == ["explicit", "from-context"]
    assert "trace_id" not in got[1] and "parent_id" not in got[1]


def test_ids_keep_their_long_runs_but_not_what_looks_personal() -> None:
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    got = line(record(request_id=uuid, trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))
    assert (got["request_id"], got["trace_id"]) == (uuid, "4bf92f3577b34da6a3ce929d0e0e4736")
    assert line(record(request_id=f"r-{RESIDENT_ID}"))["request_id"] == "r-[id]"
    # Other request fields keep the long-run mask.
    assert line(record(client=API_KEY))["client"] == "[redacted]"
