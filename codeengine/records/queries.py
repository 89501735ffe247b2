"""The questions epidemic response asks of the library, as statements both engines run.

Each function takes checked arguments (the HTTP layer validates them at the boundary) and the
engine, and answers rows as plain tuples in a stated order. Times are milliseconds since the
epoch, windows are half-open (``from <= at < to``). Pages are cut by a *cursor*: the sort key
of the last row of the page before, so a page is one range read of the ordering, not an
OFFSET that reads and throws away everything before it.

Why these shapes (docs/records.md has the measurements):

* a venue's scans read one range of the table's own ordering ``(venue, at)``;
* a subject's scans read one range of the ``by_subject`` projection ``(subject, at)``, which
  the engine picks for a condition on ``subject``;
* a city's counts group whole minutes, so that they come from the ``per_minute`` aggregate
  projection instead of the scans (a step is a whole number of minutes); a venue's counts read
  the venue's range of the table;
* contacts find the subject's visits through the projection, then read each visited venue's
  range around those visits through the table's ordering: two range reads, no full scan.
"""

from __future__ import annotations

__all__ = [
    "Change",
    "Contact",
    "CountRow",
    "SubjectScan",
    "VenueScan",
    "changes",
    "contacts",
    "counts",
    "subject_scans",
    "venue_scans",
]

from collections.abc import Sequence
from typing import Any, NamedTuple

from codeengine.records.engine import RecordsEngine


class VenueScan(NamedTuple):
    at_ms: int
    subject: str
    terminal: str
    city: int
    reason: str
    colour: str


class SubjectScan(NamedTuple):
    at_ms: int
    venue: str
    terminal: str
    city: int
    reason: str
    colour: str


class CountRow(NamedTuple):
    start_ms: int
    reason: str
    colour: str
    scans: int


class Change(NamedTuple):
    """An audited write of a subject: its colour before and after, and who made it."""

    at_ms: int
    city: int
    op: str
    old_colour: str
    new_colour: str
    version: int
    actor: str
    reason: str
    op_id: str


class Contact(NamedTuple):
    """Someone who scanned at a venue the subject scanned at, within the window of it."""

    subject: str
    venue: str
    first_ms: int
    """Their first scan there within the window of one of the subject's."""
    last_ms: int
    subject_first_ms: int
    """The subject's first scan at the venue in the query's window."""
    scans: int
    """Their scans there within the window."""


_MS = "toUnixTimestamp64Milli(at)"
_WINDOW = (
    "at >= fromUnixTimestamp64Milli({from_ms:Int64}) "
    "AND at < fromUnixTimestamp64Milli({to_ms:Int64})"
)


Sort = tuple[tuple[str, str, str], ...]
"""A page's ordering: (column as sorted, as the cursor compares it, its ClickHouse type) each."""
_SCANS_BY_VENUE: Sort = (
    ("at", _MS, "Int64"), ("subject", "subject", "String"), ("terminal", "terminal", "String")
)  # fmt: skip
_SCANS_BY_SUBJECT: Sort = (
    ("at", _MS, "Int64"), ("venue", "venue", "String"), ("terminal", "terminal", "String")
)  # fmt: skip
_CHANGES_BY_SUBJECT: Sort = (
    ("at", _MS, "Int64"), ("version", "version", "UInt32"), ("op", "op", "String"),
    ("op_id", "op_id", "String"),
)  # fmt: skip


def _page(
    engine: RecordsEngine,
    select: str,
    table: str,
    key: str,
    value: str,
    window: tuple[int, int],
    sort: Sort,
    limit: int,
    after: tuple[object, ...] | None,
) -> Sequence[Sequence[Any]]:
    """The rows of ``table`` whose ``key`` column is ``value`` in the window, in ``sort``
    order, at most ``limit``, from after the cursor ``after`` (the last row's sort values):
    one range read of an ordering that starts with ``key``."""
    parameters: dict[str, object] = {"value": value, "from_ms": window[0], "to_ms": window[1]}
    cursor = ""
    if after is not None:
        names = [f"c{i}" for i in range(len(sort))]
        compared = ", ".join(expression for _, expression, _ in sort)
        bound = ", ".join(f"{{{n}:{t}}}" for n, (_, _, t) in zip(names, sort, strict=True))
        cursor = f" AND ({compared}) > ({bound})"
        parameters |= dict(zip(names, after, strict=True))
    order = ", ".join(column for column, _, _ in sort)
    return engine.rows(
        f"SELECT {select} FROM {engine.database}.{table} "
        f"WHERE {key} = {{value:String}} AND {_WINDOW}{cursor} ORDER BY {order} LIMIT {int(limit)}",
        parameters,
    )


def venue_scans(
    engine: RecordsEngine,
    venue: str,
    from_ms: int,
    to_ms: int,
    limit: int,
    after: tuple[int, str, str] | None = None,
) -> list[VenueScan]:
    """A venue's scans in the window, by time (then subject, terminal); at most ``limit``,
    from after the cursor ``after`` (the last row's ``(at_ms, subject, terminal)``)."""
    select = f"{_MS}, subject, terminal, city, reason, colour"
    window = (from_ms, to_ms)
    rows = _page(engine, select, "scans", "venue", venue, window, _SCANS_BY_VENUE, limit, after)
    return [VenueScan(*row) for row in rows]


def subject_scans(
    engine: RecordsEngine,
    subject: str,
    from_ms: int,
    to_ms: int,
    limit: int,
    after: tuple[int, str, str] | None = None,
) -> list[SubjectScan]:
    """A subject's scans (its trajectory) in the window, by time (then venue, terminal); at
    most ``limit``, from after the cursor (the last row's ``(at_ms, venue, terminal)``)."""
    select = f"{_MS}, venue, terminal, city, reason, colour"
    window = (from_ms, to_ms)
    rows = _page(
        engine, select, "scans", "subject", subject, window, _SCANS_BY_SUBJECT, limit, after
    )
    return [SubjectScan(*row) for row in rows]


def counts(
    engine: RecordsEngine,
    city: int,
    venue: str | None,
    from_ms: int,
    to_ms: int,
    step_s: int,
) -> list[CountRow]:
    """Scans by result and colour per step in the window (a city's, or one venue's of it), by
    step start. ``step_s`` is a whole number of minutes, so a city's counts come from the
    per-minute projection."""
    if step_s % 60:
        raise ValueError("step_s must be a whole number of minutes")
    where = f"city = {{city:UInt32}} AND {_WINDOW}"
    parameters: dict[str, object] = {"city": city, "from_ms": from_ms, "to_ms": to_ms}
    if venue is not None:
        where += " AND venue = {venue:String}"
        parameters["venue"] = venue
    rows = engine.rows(
        "SELECT toUnixTimestamp(toStartOfInterval(toStartOfMinute(at), "
        f"INTERVAL {int(step_s)} SECOND)) * 1000 AS start, reason, colour, count() "
        f"FROM {engine.database}.scans WHERE {where} "
        "GROUP BY start, reason, colour ORDER BY start, reason, colour",
        parameters,
    )
    return [CountRow(int(start), reason, colour, int(n)) for start, reason, colour, n in rows]


def contacts(
    engine: RecordsEngine,
    subject: str,
    from_ms: int,
    to_ms: int,
    window_s: int,
    limit: int,
    after: tuple[str, str] | None = None,
) -> list[Contact]:
    """Everyone who scanned at a venue within ``window_s`` of one of the subject's scans there
    (the subject's scans in the query's window; a scan of no subject, a code that did not
    parse, is nobody's), by subject then venue; at most ``limit``, from
    after the cursor (the last row's ``(subject, venue)``)."""
    window_ms = int(window_s) * 1000
    cursor = ""
    parameters: dict[str, object] = {
        "subject": subject,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "window_ms": window_ms,
    }
    if after is not None:
        cursor = "HAVING (s.subject, s.venue) > ({c_subject:String}, {c_venue:String}) "
        parameters |= {"c_subject": after[0], "c_venue": after[1]}
    db = engine.database
    rows = engine.rows(
        f"WITH visits AS (SELECT venue, at FROM {db}.scans "
        f"WHERE subject = {{subject:String}} AND {_WINDOW}) "
        "SELECT s.subject, s.venue, toUnixTimestamp64Milli(min(s.at)), "
        "toUnixTimestamp64Milli(max(s.at)), toUnixTimestamp64Milli(min(v.at)), "
        "uniqExact(s.at, s.terminal) "
        f"FROM {db}.scans AS s INNER JOIN visits AS v ON s.venue = v.venue "
        "WHERE s.venue IN (SELECT venue FROM visits) "
        "AND s.at >= fromUnixTimestamp64Milli({from_ms:Int64} - {window_ms:Int64}) "
        "AND s.at < fromUnixTimestamp64Milli({to_ms:Int64} + {window_ms:Int64}) "
        "AND s.subject != {subject:String} AND s.subject != '' "
        "AND abs(toUnixTimestamp64Milli(s.at) - toUnixTimestamp64Milli(v.at)) <= {window_ms:Int64} "
        f"GROUP BY s.subject, s.venue {cursor}"
        f"ORDER BY s.subject, s.venue LIMIT {int(limit)}",
        parameters,
    )
    return [Contact(str(a), str(b), int(c), int(d), int(e), int(f)) for a, b, c, d, e, f in rows]


def changes(
    engine: RecordsEngine,
    subject: str,
    from_ms: int,
    to_ms: int,
    limit: int,
    after: tuple[int, int, str, str] | None = None,
) -> list[Change]:
    """A subject's audited writes in the window, by time (then version, op, op_id); at most
    ``limit``, from after the cursor (the last row's ``(at_ms, version, op, op_id)``). The
    table is ordered by ``(subject, at)``: one range read."""
    select = f"{_MS}, city, op, old_colour, new_colour, version, actor, reason, op_id"
    window = (from_ms, to_ms)
    rows = _page(
        engine, select, "changes", "subject", subject, window, _CHANGES_BY_SUBJECT, limit, after
    )
    return [Change(*row) for row in rows]
