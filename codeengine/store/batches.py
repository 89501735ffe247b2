"""Bulk conversion (赋码/转码) from the epidemic-data topic library (涉疫数据专题库).

A batch is a CSV or NDJSON file of risk records, one per line: ``identifier`` (a resident ID),
``record_type`` (a type of ``configs/rules.toml``), ``event_time`` (ISO 8601 with an offset, or
Unix seconds), ``source`` and ``city``. CSV files start with that header.

* Rows are read and checked one at a time, so memory stays flat for any file size. A bad row
  is reported by line number and reason code (never its content: it holds an identifier) and
  does not stop the batch.
* Good rows are applied in chunks; the store acknowledges each chunk after a replica has it.
* The batch id makes the import idempotent: a batch imported to the end is not imported again,
  and a run that stopped half-way resumes (applying a record twice changes nothing).
* A batch can be inspected and rolled back (its subjects' risk periods are restored, unless
  something changed them since), and a dry run reports what the batch would change.
"""

from __future__ import annotations

__all__ = [
    "BATCH_ID_CHARS",
    "BadRow",
    "BatchReport",
    "Importer",
    "RiskRow",
    "RowParser",
    "check_batch_id",
]

import asyncio
import contextlib
import csv
import json
import operator
import time
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

from codeengine.code.errors import BadRequest, CodeEngineError, InvalidIdentifier, Reason
from codeengine.code.identifiers import parse_resident_id
from codeengine.code.macs import MACAlgorithm
from codeengine.code.model import CITIES, CodeKind, Colour, SubjectId, china_date
from codeengine.code.pseudonym import pseudonym
from codeengine.code.rules import RuleSet, effective_colour_at, merge_risk_at
from codeengine.code.secret import Secret
from codeengine.code.status import SubjectRecord
from codeengine.store.port import RiskWrite, Store

BATCH_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_BATCH_ID = 64
MAX_SOURCE = 64
MAX_LINE_BYTES = 4096
CHUNK_ROWS = 2000
CHUNKS_IN_FLIGHT = 3
YIELD_EVERY_LINES = 256
MAX_REPORTED_ERRORS = 100_000
FUTURE_SKEW_S = 300
COLUMNS = ("identifier", "record_type", "event_time", "source", "city")

Format = Literal["csv", "ndjson"]


def check_batch_id(batch_id: str) -> str:
    """The batch id, or BadRequest: 1-64 characters of letters, digits, '.', '_' and '-'."""
    if not 0 < len(batch_id) <= MAX_BATCH_ID or not set(batch_id) <= BATCH_ID_CHARS:
        raise BadRequest(f"a batch id is 1 to {MAX_BATCH_ID} letters, digits, '.', '_' or '-'")
    return batch_id


class RiskRow(NamedTuple):
    """One good row, as the store applies it."""

    line: int
    subject: SubjectId
    record_type: str
    event_at: int
    city: int


class BadRow(NamedTuple):
    """One refused row: where and why."""

    line: int
    reason: str


_in_column_order = operator.itemgetter(*COLUMNS)


def _event_time(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("no event time")
    if value.isdigit():
        return int(value)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("an ISO 8601 event time needs its UTC offset")
    return int(parsed.timestamp())


class RowParser:
    """Turns the lines of a CSV or NDJSON file into RiskRows and BadRows, one at a time."""

    def __init__(
        self,
        fmt: Format,
        rules: RuleSet,
        pepper: Secret,
        now: int,
        today: date,
        mac: MACAlgorithm = MACAlgorithm.HMAC_SHA256,
    ):
        self.fmt = fmt
        self._rules = rules
        self._pepper = pepper
        self._mac = mac
        self._now = now
        self._today = today
        self._header_seen = fmt == "ndjson"

    def feed(self, line_no: int, raw: bytes) -> RiskRow | BadRow | None:
        """The row of one line; None for a blank line or the CSV header."""
        if len(raw) > MAX_LINE_BYTES:
            return BadRow(line_no, Reason.BAD_ROW.value)
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return BadRow(line_no, Reason.BAD_ROW.value)
        if not text:
            return None
        if not self._header_seen:
            self._header_seen = True
            try:
                first = next(csv.reader([text.lstrip("\ufeff")]), [])
            except csv.Error:
                first = []
            header = tuple(c.strip().lower() for c in first)
            if header != COLUMNS:
                raise BadRequest(f"a CSV batch starts with the header {','.join(COLUMNS)}")
            return None
        fields = self._fields(text)
        if fields is None:
            return BadRow(line_no, Reason.BAD_ROW.value)
        return self._row(line_no, fields)

    def _fields(self, text: str) -> Sequence[object] | None:
        """The five values of a line, in the order of COLUMNS; None if it has not five."""
        if self.fmt == "csv":
            if '"' in text or "\r" in text or "\n" in text:
                # Quoting, or a carriage return the csv module refuses: let it decide.
                try:
                    values = next(csv.reader([text]), [])
                except csv.Error:
                    return None
            else:
                # Without quotes or line breaks, csv.reader splits on commas and nothing else.
                values = text.split(",")
            return values if len(values) == len(COLUMNS) else None
        try:
            document = json.loads(text)
        except ValueError:
            return None
        if not isinstance(document, dict) or set(document) != set(COLUMNS):
            return None
        ordered: tuple[object, ...] = _in_column_order(document)
        return ordered

    def _row(self, line_no: int, fields: Sequence[object]) -> RiskRow | BadRow:
        identifier, record_type, event_time, source, city = fields
        if not isinstance(identifier, str):
            return BadRow(line_no, Reason.BAD_LENGTH.value)
        try:
            resident = parse_resident_id(identifier, self._today)
        except InvalidIdentifier as exc:
            return BadRow(line_no, exc.reason.value)
        if (
            not isinstance(record_type, str)
            or (rule := self._rules.rule(record_type.strip())) is None
        ):
            return BadRow(line_no, Reason.UNKNOWN_RECORD_TYPE.value)
        try:
            event_at = _event_time(event_time)
        except (ValueError, OverflowError):
            return BadRow(line_no, Reason.BAD_EVENT_TIME.value)
        if not 0 < event_at <= self._now + FUTURE_SKEW_S:
            return BadRow(line_no, Reason.BAD_EVENT_TIME.value)
        if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE:
            return BadRow(line_no, Reason.BAD_SOURCE.value)
        try:
            city_code = int(city) if isinstance(city, str | int) else -1
        except ValueError:
            city_code = -1
        if city_code not in CITIES or isinstance(city, bool):
            return BadRow(line_no, Reason.UNKNOWN_CITY.value)
        subject = pseudonym(resident, self._pepper, self._mac)
        return RiskRow(line_no, subject, rule.record_type, event_at, city_code)


@dataclass
class BatchReport:
    """What an import did (or, in a dry run, would do)."""

    batch_id: str
    rules_version: int
    dry_run: bool = False
    state: str = "running"
    rows: int = 0
    bad: int = 0
    applied: int = 0
    """Good rows that changed a subject."""
    unchanged: int = 0
    """Good rows that changed nothing (repeats, periods already over)."""
    created: int = 0
    """Subjects the batch created (named by the topic library before they generated a code)."""
    errors: list[BadRow] = field(default_factory=list)
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    colour_changes: Counter[str] = field(default_factory=Counter)
    """Dry run: how many subjects would show another colour now, as 'green->red'."""
    already_imported: bool = False

    @classmethod
    def from_meta(
        cls, batch_id: str, meta: dict[str, str], errors: Sequence[tuple[int, str]] = ()
    ) -> BatchReport:
        """The report of a batch as the store holds it (state and counters)."""
        report = cls(batch_id, int(meta.get("rules_version", 0)), state=meta.get("state", ""))
        for name in ("rows", "bad", "applied", "unchanged", "created"):
            setattr(report, name, int(meta.get(name, 0)))
        report.errors = [BadRow(line, reason) for line, reason in errors]
        return report

    def to_json(self, with_errors: bool = True) -> dict[str, Any]:
        """The API and CLI form of the report."""
        answer: dict[str, Any] = {
            "batch_id": self.batch_id,
            "state": self.state,
            "dry_run": self.dry_run,
            "rules_version": self.rules_version,
            "rows": self.rows,
            "bad": self.bad,
            "applied": self.applied,
            "unchanged": self.unchanged,
            "created": self.created,
            "errors_by_reason": dict(self.errors_by_reason),
            "already_imported": self.already_imported,
        }
        if self.dry_run:
            answer["colour_changes"] = dict(self.colour_changes)
        if with_errors:
            answer["errors"] = [{"line": e.line, "reason": e.reason} for e in self.errors]
        return answer


Progress = Callable[[BatchReport, int], None]
"""Called after every chunk with the report so far and the bytes read."""


class Importer:
    """Imports one batch into a store (or reports what it would change: ``dry_run``)."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        pepper: Secret,
        *,
        mac: MACAlgorithm = MACAlgorithm.HMAC_SHA256,
        batch_id: str,
        actor: str,
        clock: Callable[[], float] = time.time,
        dry_run: bool = False,
        progress: Progress | None = None,
        chunk_rows: int = CHUNK_ROWS,
        chunks_in_flight: int = CHUNKS_IN_FLIGHT,
    ) -> None:
        self._store = store
        self._rules = rules
        self._pepper = pepper
        self._mac = mac
        self._batch_id = check_batch_id(batch_id)
        self._actor = actor
        self._clock = clock
        self._dry_run = dry_run
        self._progress = progress
        self._chunk_rows = chunk_rows
        self._chunks_in_flight = max(1, chunks_in_flight)
        # What each record type does, worked out once rather than per row.
        self._effects = {
            name: (rule.colour, rule.duration_s, tuple(sorted(rule.clears)))
            for name, rule in rules.rules.items()
        }
        self._in_flight: deque[tuple[asyncio.Future[list[tuple[int, int]]], list[BadRow], int]]
        self._in_flight = deque()
        self._recording: deque[asyncio.Future[None]] = deque()

    async def run(self, lines: AsyncIterable[bytes] | Iterable[bytes], fmt: Format) -> BatchReport:
        """Read every line, apply the good rows, return the report."""
        now = int(self._clock())
        report = BatchReport(self._batch_id, self._rules.version, dry_run=self._dry_run)
        parser = RowParser(fmt, self._rules, self._pepper, now, china_date(now), self._mac)
        source = _aiter(lines)
        # A CSV's header is checked before anything else, even for a batch imported already:
        # a file that is not a batch is refused (400), never answered as a repeat.
        head = await _through_header(parser, source) if fmt == "csv" else []
        if not self._dry_run:
            previous = await self._store.begin_batch(self._batch_id, self._rules.version, now)
            if previous is not None:
                done = BatchReport.from_meta(self._batch_id, previous)
                done.already_imported = True
                return done
        try:
            await self._import(_chain(head, source), parser, report, now, len(head))
        except BaseException:
            for task, _, _ in self._in_flight:
                task.cancel()
            self._in_flight.clear()
            for write in self._recording:
                write.cancel()
            self._recording.clear()
            if not self._dry_run:
                # The batch says it stopped; running it again resumes (rows are idempotent).
                report.state = "failed"
                with contextlib.suppress(CodeEngineError):
                    await self._store.finish_batch(self._batch_id, "failed", _counters(report), now)
            raise
        report.state = "dry-run" if self._dry_run else "done"
        if not self._dry_run:
            await self._store.finish_batch(self._batch_id, "done", _counters(report), now)
        return report

    async def _import(
        self,
        lines: AsyncIterator[bytes],
        parser: RowParser,
        report: BatchReport,
        now: int,
        header_lines: int,
    ) -> None:
        chunk: list[RiskRow] = []
        bad: list[BadRow] = []
        read = 0
        line_no = 0
        async for raw in lines:
            line_no += 1
            read += len(raw)
            if not line_no % YIELD_EVERY_LINES:
                # A file's lines come without a pause: without one here the chunk tasks
                # would send nothing and read no reply until the reading had to wait.
                await asyncio.sleep(0)
            if line_no <= header_lines:
                continue  # the header (and blank lines before it), checked already
            row = parser.feed(line_no, raw)
            if row is None:
                continue
            report.rows += 1
            if isinstance(row, BadRow):
                report.bad += 1
                report.errors_by_reason[row.reason] += 1
                if len(report.errors) < MAX_REPORTED_ERRORS:
                    report.errors.append(row)
                    bad.append(row)
                continue
            chunk.append(row)
            if len(chunk) >= self._chunk_rows:
                await self._flush(chunk, bad, report, now, read)
                chunk, bad = [], []
        await self._flush(chunk, bad, report, now, read)
        while self._in_flight:
            await self._settle(report, now)
        await self._recorded()

    async def _flush(
        self, chunk: list[RiskRow], bad: list[BadRow], report: BatchReport, now: int, read: int
    ) -> None:
        """Send one chunk; while chunks are in flight the next is read (a few out at most)."""
        if self._dry_run:
            await self._preview(chunk, report, now)
            if self._progress is not None:
                self._progress(report, read)
            return
        if chunk or bad:
            writes = [self._write(row) for row in chunk]
            # Created now, so it sends before any later chunk: a subject's rows stay in order.
            task = asyncio.ensure_future(
                self._store.apply_risk(self._batch_id, writes, now, self._actor)
            )
            self._in_flight.append((task, bad, read))
        while len(self._in_flight) >= self._chunks_in_flight:
            await self._settle(report, now)

    async def _settle(self, report: BatchReport, now: int) -> None:
        task, bad, read = self._in_flight.popleft()
        for changed, created in await task:
            report.applied += changed
            report.unchanged += 1 - changed
            report.created += created
        self._record(_counters(report), [(b.line, b.reason) for b in bad], now)
        if len(self._recording) > self._chunks_in_flight:
            await self._recording.popleft()
        if self._progress is not None:
            self._progress(report, read)

    def _record(self, counters: dict[str, int], errors: list[tuple[int, str]], now: int) -> None:
        """Write the counters and refused rows so far, without waiting for it.

        These writes queue behind the chunks in flight on the batch's primary: awaited here,
        they held the reading up for most of a chunk's time. Each waits for the one before,
        so they land in order, and a failed one fails the import at the next chunk.
        """
        while self._recording and self._recording[0].done():
            self._recording.popleft().result()
        previous = self._recording[-1] if self._recording else None
        write = self._record_after(previous, counters, errors, now)
        self._recording.append(asyncio.ensure_future(write))

    async def _record_after(
        self,
        previous: asyncio.Future[None] | None,
        counters: dict[str, int],
        errors: list[tuple[int, str]],
        now: int,
    ) -> None:
        if previous is not None:
            await previous
        await self._store.record_batch_progress(self._batch_id, counters, errors, now)

    async def _recorded(self) -> None:
        """Wait for every progress write that is out."""
        while self._recording:
            await self._recording.popleft()

    def _write(self, row: RiskRow) -> RiskWrite:
        colour, duration_s, clears = self._effects[row.record_type]
        return RiskWrite(
            row.subject,
            colour,
            row.event_at + duration_s,
            clears,
            row.record_type,
            CodeKind.HEALTH,
            row.city,
            self._rules.no_data,
        )

    async def _preview(self, chunk: list[RiskRow], report: BatchReport, now: int) -> None:
        """Dry run: what the chunk would do to each subject, from the current records."""
        subjects = list(dict.fromkeys(row.subject for row in chunk))
        records = dict(zip(subjects, await self._store.get_subjects(subjects), strict=True))
        risk = {s: (r.risk if r else ()) for s, r in records.items()}
        before = {s: _colour(records[s], self._rules.no_data, now) for s in subjects}
        for row in chunk:
            rule = self._rules.rules[row.record_type]
            merged = merge_risk_at(risk[row.subject], rule, row.event_at, now)
            changed = merged != tuple((c, u) for c, u in risk[row.subject] if u > now)
            report.applied += changed
            report.unchanged += not changed
            report.created += changed and records[row.subject] is None
            risk[row.subject] = merged
            if changed and records[row.subject] is None:
                records[row.subject] = SubjectRecord(
                    row.subject, CodeKind.HEALTH, row.city, self._rules.no_data, 1, now
                )
        for subject in subjects:
            record = records[subject]
            if record is None:
                continue
            after = effective_colour_at(record.colour, risk[subject], record.override, now)
            if after != before[subject]:
                report.colour_changes[f"{before[subject].label}->{after.label}"] += 1


def _colour(record: SubjectRecord | None, no_data: Colour, now: int) -> Colour:
    return no_data if record is None else record.colour_at(now)


def _counters(report: BatchReport) -> dict[str, int]:
    return {
        "rows": report.rows,
        "bad": report.bad,
        "applied": report.applied,
        "unchanged": report.unchanged,
        "created": report.created,
    }


async def _through_header(parser: RowParser, source: AsyncIterator[bytes]) -> list[bytes]:
    """Read up to the first non-blank line and check it as the CSV header; the lines read."""
    head: list[bytes] = []
    async for raw in source:
        head.append(raw)
        if raw.strip():
            # None for the header; BadRequest (or a BadRow, for bytes that are no text) else.
            if parser.feed(len(head), raw) is not None:
                break
            return head
    raise BadRequest(f"a CSV batch starts with the header {','.join(COLUMNS)}")


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for raw in head:
        yield raw
    async for raw in rest:
        yield raw


async def _aiter(lines: AsyncIterable[bytes] | Iterable[bytes]) -> Any:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line
