"""Data return to cities (数据回流): one city's scans and colour changes of one day, as files.

A city's day is the China day, 00:00 to 24:00 at UTC+08:00 (what a city's own systems call
"2026-12-05"), selected by time window: the store's partitions are UTC days (``toDate(at)``), so a
China day spans the end of one partition and the start of the next, and the engine reads just
those two. The statement names the city in its WHERE, so no other city's row can be in a file.

The engine renders the files itself (``FORMAT CSVWithNames`` and ``FORMAT Parquet``): the rows
are never parsed on their way out. Beside each file go its SHA-256 (``sha256sum`` layout) and a
manifest with every file's rows, bytes and digest; the rows are counted by reading the written
file back through the engine, so the count is of the file, not of a second query.

The pure part (windows, statements, names) is here with the blocking writer
(:func:`write_export`); the records service streams the same bytes over HTTP
(``GET /v1/records/export``) and ``codeengine records export`` writes them
(:mod:`codeengine.ops.recordscli`).
"""

from __future__ import annotations

__all__ = [
    "CHINA",
    "EXPORT_TABLES",
    "FORMATS",
    "ExportFile",
    "Format",
    "count_file_rows",
    "day_window",
    "export_rows",
    "export_statement",
    "file_name",
    "manifest",
    "parse_day",
    "write_export",
]

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from codeengine.records.schema import CHANGES, SCANS

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time: a city's day. No daylight saving, so a fixed offset is exact."""


@dataclass(frozen=True, slots=True)
class Format:
    """An export format: the engine's name for it, the file's extension and media type."""

    name: str
    engine_format: str
    extension: str
    media_type: str


FORMATS = {
    "csv": Format("csv", "CSVWithNames", "csv", "text/csv; charset=utf-8"),
    "parquet": Format("parquet", "Parquet", "parquet", "application/vnd.apache.parquet"),
}

_AT = [
    "toUnixTimestamp64Milli(at) AS at_ms",
    "toTimeZone(at, 'Asia/Shanghai') AS at",
]
EXPORT_COLUMNS: Mapping[str, Sequence[str]] = {
    SCANS.name: [
        *_AT, "city", "venue", "terminal", "subject", "reason AS result", "colour",
    ],
    CHANGES.name: [
        *_AT, "city", "subject", "op", "old_colour", "new_colour", "version", "actor", "reason",
        "op_id",
    ],
}  # fmt: skip
"""What a city receives of each table, in file column order (the store's ``at`` as both
milliseconds since the epoch and China time)."""
_ORDER = {SCANS.name: "at, terminal, venue, subject", CHANGES.name: "at, subject, op_id"}
EXPORT_TABLES = tuple(EXPORT_COLUMNS)


def parse_day(text: str) -> date:
    """A day as ``YYYY-MM-DD``; ValueError for anything else."""
    if len(text) != 10 or not text.isascii():
        raise ValueError(f"{text[:20]!r} is not a day (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def day_window(day: date) -> tuple[int, int]:
    """The China day ``day`` as ``[from_ms, to_ms)``, milliseconds since the epoch."""
    start = datetime.combine(day, time(), CHINA)
    from_ms = int(start.astimezone(UTC).timestamp()) * 1000
    return from_ms, from_ms + 86_400_000


def export_statement(database: str, table: str, fmt: Format) -> str:
    """The statement that renders one city's day of ``table`` in ``fmt``; parameters ``city``,
    ``from_ms`` and ``to_ms``."""
    return (
        f"SELECT {', '.join(EXPORT_COLUMNS[table])} FROM {database}.{table} "
        "WHERE city = {city:UInt32} "
        "AND at >= fromUnixTimestamp64Milli({from_ms:Int64}) "
        "AND at < fromUnixTimestamp64Milli({to_ms:Int64}) "
        f"ORDER BY {_ORDER[table]} FORMAT {fmt.engine_format}"
    )


def export_rows(database: str, table: str) -> str:
    """How many rows :func:`export_statement` answers (the same WHERE)."""
    return (
        f"SELECT count() FROM {database}.{table} WHERE city = {{city:UInt32}} "
        "AND at >= fromUnixTimestamp64Milli({from_ms:Int64}) "
        "AND at < fromUnixTimestamp64Milli({to_ms:Int64})"
    )


def file_name(table: str, city: int, day: date, fmt: Format) -> str:
    """``scans-320500-2026-12-05.csv``."""
    return f"{table}-{city}-{day.isoformat()}.{fmt.extension}"


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A file written: its name (in the export folder), rows, bytes and SHA-256."""

    table: str
    file: str
    rows: int
    bytes: int
    sha256: str


def write_export(
    chunks: Iterable[bytes], path: Path, progress: Callable[[int], None] | None = None
) -> tuple[int, str]:
    """Write ``chunks`` to ``path`` (through a temporary file: a failed export leaves no file
    that looks whole) and ``path.sha256``; the bytes written and the hex digest."""
    digest = hashlib.sha256()
    written = 0
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    hexdigest = digest.hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{hexdigest}  {path.name}\n")
    return written, hexdigest


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def count_file_rows(rows: Callable[[str], Sequence[Sequence[Any]]], path: Path, fmt: Format) -> int:
    """The rows of a written file, read back by the engine (``rows`` runs a query): a file the
    engine cannot read again is not an export."""
    answer = rows(f"SELECT count() FROM file({_quoted(str(path.resolve()))}, {fmt.engine_format})")
    return int(answer[0][0])


def manifest(
    city: int, day: date, fmt: Format, files: Sequence[ExportFile], exported_at_ms: int
) -> dict[str, Any]:
    """The manifest written beside the files (``export-320500-2026-12-05.json``)."""
    from_ms, to_ms = day_window(day)
    return {
        "city": city,
        "day": day.isoformat(),
        "timezone": "+08:00",
        "from_ms": from_ms,
        "to_ms": to_ms,
        "format": fmt.name,
        "exported_at_ms": exported_at_ms,
        "files": [
            {"table": f.table, "file": f.file, "rows": f.rows, "bytes": f.bytes,
             "sha256": f.sha256}
            for f in files
        ],
    }  # fmt: skip
