"""The columnar store behind the topic library: ClickHouse, embedded or a server.

One client library (clickhouse-connect) talks to both: to the embedded engine (chDB, the
ClickHouse engine in this process, its data under ``records.path``) and to a server or cluster
(``records.server_url``). Both run the same statements (:mod:`codeengine.records.schema`,
:mod:`codeengine.records.queries`). Only one process may open an embedded data folder, read-only
included: the records service owns it, and serves the queries itself.

Calls block; the service runs them in threads. Inserts and queries use separate clients (each
has its own lock), so a long query never holds up an insert.
"""

from __future__ import annotations

__all__ = ["EngineError", "RecordsEngine", "open_engine", "scratch_rows"]

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from codeengine.code.errors import CodeEngineError
from codeengine.records.schema import Table, create_statements
from codeengine.settings import RecordsSettings


class EngineError(CodeEngineError):
    """The records engine refused or could not be reached (the message names no data)."""


class RecordsEngine:
    """The library's tables in one engine: insert packed rows, run queries, drop days."""

    def __init__(self, writer: Any, reader: Any, database: str, embedded: bool) -> None:
        self._writer = writer
        self._reader = reader
        self.database = database
        self.embedded = embedded
        self._lock = threading.Lock()
        """Held around the writer's calls: inserts come from one thread, day drops another."""

    def ensure_schema(self) -> None:
        """Create the database and the tables if they are not there (a start does this)."""
        for statement in create_statements(self.database):
            self.command(statement)

    def insert_packed(self, table: Table, body: bytes, token: str) -> None:
        """Insert rows packed as MsgPack values in ``table``'s column order, all at once.

        An insert with a ``token`` the engine has seen adds nothing: a batch inserted again
        after a crash between insert and acknowledge is not doubled.
        """
        try:
            with self._lock:
                self._writer.raw_insert(
                    f"{self.database}.{table.name}",
                    table.column_names,
                    insert_block=body,
                    fmt="MsgPack",
                    settings={"insert_deduplication_token": token},
                )
        except Exception as exc:
            raise EngineError(f"insert into {table.name} failed: {_brief(exc)}") from exc

    def rows(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Sequence[Any]]:
        """The rows a query answers (parameters bound server-side as ``{name:Type}``)."""
        try:
            return self._reader.query(sql, parameters=dict(parameters or {})).result_rows  # type: ignore[no-any-return]
        except Exception as exc:
            raise EngineError(f"query failed: {_brief(exc)}") from exc

    def stream(
        self, sql: str, parameters: Mapping[str, Any] | None = None, chunk_bytes: int = 1 << 20
    ) -> Iterator[bytes]:
        """The bytes a query answers in the format its statement names (``FORMAT Parquet``),
        chunk by chunk: an export is written as the engine renders it, never parsed here.

        A server streams it; the embedded engine renders the whole answer first.
        """
        try:
            source = self._reader.raw_stream(sql, parameters=dict(parameters or {}))
        except Exception as exc:
            raise EngineError(f"query failed: {_brief(exc)}") from exc
        try:
            read = getattr(source, "read", None)
            if read is None:
                yield from source
                return
            while chunk := read(chunk_bytes):
                yield bytes(chunk)
        except Exception as exc:
            raise EngineError(f"query failed while it answered: {_brief(exc)}") from exc
        finally:
            source.close()

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """A statement that answers no rows (DDL, a partition drop)."""
        try:
            with self._lock:
                self._writer.command(sql, parameters=dict(parameters or {}))
        except Exception as exc:
            raise EngineError(f"statement failed: {_brief(exc)}") from exc

    def count(self, table: Table) -> int:
        rows = self.rows(f"SELECT count() FROM {self.database}.{table.name}")
        return int(rows[0][0])

    def days(self, table: Table) -> list[tuple[str, int, int]]:
        """Each day partition of ``table`` kept now: (day ``YYYY-MM-DD``, rows, bytes on disk)."""
        rows = self.rows(
            "SELECT partition, sum(rows), sum(bytes_on_disk) FROM system.parts "
            "WHERE database = {db:String} AND table = {table:String} AND active "
            "GROUP BY partition ORDER BY partition",
            {"db": self.database, "table": table.name},
        )
        return [(str(day), int(n), int(size)) for day, n, size in rows]

    def drop_day(self, table: Table, day: str) -> None:
        """Drop one day partition of ``table`` (``YYYY-MM-DD``)."""
        self.command(
            f"ALTER TABLE {self.database}.{table.name} DROP PARTITION {{day:String}}",
            {"day": day},
        )

    def close(self) -> None:
        for client in (self._writer, self._reader):
            try:
                client.close()
            except Exception:  # closing is best effort; the process is going away
                pass


def _brief(exc: Exception) -> str:
    """The first line of an engine error, cut short: enough to name the problem, and no rows
    (an engine's message can quote the data it choked on)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def open_engine(settings: RecordsSettings, password: str = "") -> RecordsEngine:
    """The engine ``settings`` name, with its schema created: embedded at ``records.path``
    when ``records.server_url`` is empty, else the server."""
    import clickhouse_connect  # heavy: imported by the records service only

    def client() -> Any:
        if settings.server_url:
            return clickhouse_connect.get_client(
                dsn=settings.server_url,
                username=settings.username,
                password=password,
                autogenerate_session_id=False,
            )
        path = Path(settings.path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}")

    try:
        engine = RecordsEngine(client(), client(), settings.database, not settings.server_url)
    except Exception as exc:
        where = "records.server_url" if settings.server_url else "records.path"
        raise EngineError(f"{where}: cannot open the records engine: {_brief(exc)}") from exc
    engine.ensure_schema()
    return engine


def scratch_rows() -> Callable[[str], Sequence[Sequence[Any]]]:
    """Run statements on an in-memory engine of this process (no data folder): for reading a
    file the engine wrote, e.g. counting an export's rows."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn="chdb://")
    return lambda sql: client.query(sql).result_rows
