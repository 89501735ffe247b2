"""``codeengine records export``: data return to cities (数据回流), one city's day as files.

    codeengine records export --city 320500 --day 2026-12-05 [--format csv|parquet] [--out DIR]
                              [--url URL] [--key-file FILE]

Writes ``scans-CITY-DAY.EXT`` and ``changes-CITY-DAY.EXT`` (the China day, :mod:`codeengine.records
.export`), each with its ``.sha256``, and ``export-CITY-DAY.json`` (rows, bytes and SHA-256 of
each file), and prints that manifest on standard output; progress goes to standard error.

Where the rows come from: the embedded engine's folder can be opened by one process only, and
the records service holds it while it runs. So the command asks the records service
(``GET /v1/records/export``, with an admin key from ``--key-file`` or ``$CODEENGINE_API_KEY``;
recorded in the access table like every query) when it answers at ``--url`` (default: the
records port on this host), and opens the engine itself when it does not answer, or when
``records.server_url`` names a server (a server takes any number of clients). The rows of
each file are counted by reading the file back through the engine (an in-memory one when the
rows came over HTTP or from a server).

Exit codes: 0 written; 1 the export failed (the engine or the service refused or went away;
no file that looks whole is left); 2 a bad city, day, format or settings, or no key for the
running service.
"""

from __future__ import annotations

__all__ = ["ExportFailed", "add_records_commands", "engine_source", "export_from", "run_export"]

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from codeengine.code.errors import CodeEngineError
from codeengine.code.model import CITIES
from codeengine.ops.commands import config_path
from codeengine.records import export as ex
from codeengine.records.engine import EngineError, RecordsEngine, open_engine
from codeengine.settings import Settings, load_settings

KEY_ENV = "CODEENGINE_API_KEY"
PROBE_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 300.0
"""An embedded engine renders a whole file before its first byte: a large day takes a while."""
CHUNK_BYTES = 1 << 20

Rows = Callable[[str], Sequence[Sequence[Any]]]
"""Runs a query and answers its rows (the engine that reads a written file back)."""
Source = Callable[[str], Iterator[bytes]]
"""The bytes of one table's export (by table name)."""


class ExportFailed(CodeEngineError):
    """The engine or the records service did not deliver an export."""


class _Progress:
    """Bytes written, on standard error: in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tty = sys.stderr.isatty()
        self._started = time.monotonic()
        self._last = 0.0

    def __call__(self, written: int) -> None:
        now = time.monotonic()
        if now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        self._write(written, now)

    def done(self, written: int, rows: int) -> None:
        self._write(written, time.monotonic(), rows)
        if self._tty:
            sys.stderr.write("\n")

    def _write(self, written: int, now: float, rows: int | None = None) -> None:
        rate = written / max(now - self._started, 1e-6) / 2**20
        text = f"{self._name}: {written / 2**20:,.1f} MiB, {rate:,.1f} MiB/s"
        if rows is not None:
            text += f", {rows:,} rows"
        sys.stderr.write(("\r" if self._tty else "") + text + ("" if self._tty else "\n"))
        sys.stderr.flush()


def export_from(
    source: Source, rows: Rows, city: int, day: date, fmt: ex.Format, out: Path, now_ms: int
) -> dict[str, Any]:
    """Write every table's file of ``city``'s ``day`` from ``source`` into ``out``, count each
    file's rows through ``rows``, write the manifest; the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for table in ex.EXPORT_TABLES:
        path = out / ex.file_name(table, city, day, fmt)
        progress = _Progress(path.name)
        written, digest = ex.write_export(source(table), path, progress)
        try:
            counted = ex.count_file_rows(rows, path, fmt)
        except Exception as exc:  # the engine's own error types, whichever engine counts
            # A body cut short (the service's engine failed after the headers) reads back
            # as no whole file: the export failed, and the file is not left looking whole.
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)
            raise ExportFailed(f"{path.name} does not read back: {type(exc).__name__}") from None
        progress.done(written, counted)
        files.append(ex.ExportFile(table, path.name, counted, written, digest))
    manifest = ex.manifest(city, day, fmt, files, now_ms)
    name = f"export-{city}-{day.isoformat()}.json"
    (out / name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _http_source(url: str, key: str, city: int, day: date, fmt: ex.Format) -> Source:
    def chunks(table: str) -> Iterator[bytes]:
        query = f"city={city}&day={day.isoformat()}&table={table}&format={fmt.name}"
        request = urllib.request.Request(
            f"{url}/v1/records/export?{query}", headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
                expected = response.headers.get("X-Records-Rows", "?")
                sys.stderr.write(f"{table}: {expected} rows at the start, from the service\n")
                while chunk := response.read(CHUNK_BYTES):
                    yield chunk
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("reason", "")
            except ValueError:
                reason = ""
            raise ExportFailed(f"the records service answered {exc.code} {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ExportFailed(f"the records service went away: {exc}") from None

    return chunks


def engine_source(engine: RecordsEngine, city: int, day: date, fmt: ex.Format) -> Source:
    """Each table's export as the engine renders it."""
    window = ex.day_window(day)
    parameters = {"city": city, "from_ms": window[0], "to_ms": window[1]}

    def chunks(table: str) -> Iterator[bytes]:
        return engine.stream(ex.export_statement(engine.database, table, fmt), parameters)

    return chunks


def _service_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=PROBE_TIMEOUT_S):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False


def _memory_rows() -> Rows:
    from codeengine.records.engine import scratch_rows  # heavy: only to count a file's rows

    rows: Rows = scratch_rows()
    return rows


def run_export(
    settings: Settings,
    city: int,
    day: date,
    fmt: ex.Format,
    out: Path,
    url: str | None,
    key: str,
) -> dict[str, Any]:
    """Export from the running records service at ``url`` (or the default records port), or
    from the engine itself when none answers there or the engine is a server."""
    now_ms = int(time.time() * 1000)
    service = url or f"http://127.0.0.1:{settings.records.port}"
    if not settings.records.server_url and (url is not None or _service_up(service)):
        if not key:
            raise ValueError(
                f"the records service answers at {service}: it holds the engine, so the export "
                f"asks it, with an admin key (--key-file or ${KEY_ENV})"
            )
        sys.stderr.write(f"asking the records service at {service}\n")
        return export_from(_http_source(service, key, city, day, fmt), _memory_rows(), city,
                           day, fmt, out, now_ms)  # fmt: skip
    password = ""
    if settings.records.password_file:
        password = Path(settings.records.password_file).read_text().strip()
    try:
        engine = open_engine(settings.records, password)
    except EngineError as exc:
        raise ExportFailed(str(exc)) from None
    try:
        source = engine_source(engine, city, day, fmt)
        rows: Rows = _memory_rows() if settings.records.server_url else engine.rows
        sys.stderr.write("reading the records engine itself\n")
        try:
            return export_from(source, rows, city, day, fmt, out, now_ms)
        except EngineError as exc:
            raise ExportFailed(str(exc)) from None
    finally:
        engine.close()


def _cmd_export(args: argparse.Namespace) -> int:
    def refuse(text: str) -> int:
        print(f"codeengine records export: {text}", file=sys.stderr)
        return 2

    if not (args.city.isdigit() and int(args.city) in CITIES):
        return refuse(f"--city: {args.city[:20]!r} is not a city code of the province")
    try:
        day = ex.parse_day(args.day)
    except ValueError as exc:
        return refuse(f"--day: {exc}")
    key = os.environ.get(KEY_ENV, "")
    if args.key_file:
        try:
            key = Path(args.key_file).read_text().strip()
        except OSError as exc:
            return refuse(f"--key-file: {exc.strerror}")
    settings = load_settings(config_path(args))
    try:
        manifest = run_export(settings, int(args.city), day, ex.FORMATS[args.format],
                              Path(args.out), args.url, key)  # fmt: skip
    except ValueError as exc:
        return refuse(str(exc))
    except ExportFailed as exc:
        print(f"codeengine records export: failed: {exc}", file=sys.stderr)
        return 1
    json.dump(manifest, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def add_records_commands(commands: Any) -> None:
    """``codeengine records export``."""
    records = commands.add_parser("records", help="the topic library: data return to cities")
    records_commands = records.add_subparsers(dest="records_command", required=True)
    export = records_commands.add_parser(
        "export",
        help="one city's China day of scans and colour changes as CSV or Parquet files, each "
        "with its row count and SHA-256",
    )
    export.add_argument("--city", required=True, help="the city code, e.g. 320500")
    export.add_argument("--day", required=True, help="the China day, YYYY-MM-DD")
    export.add_argument("--format", choices=tuple(ex.FORMATS), default="csv")
    export.add_argument("--out", default=".", metavar="DIR", help="where the files go")
    export.add_argument(
        "--url", help="the records service (default: the records port on this host, if it runs)"
    )
    export.add_argument(
        "--key-file", metavar="FILE", help=f"an admin API key (default: ${KEY_ENV})"
    )
    export.add_argument("--config", default=argparse.SUPPRESS, help="settings TOML")
    export.set_defaults(func=_cmd_export)
