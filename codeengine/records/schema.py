"""The topic library's tables: one definition, rendered for the embedded engine and a cluster.

Each table is a list of columns and its ordering; :func:`create_statements` renders them as
``MergeTree`` tables (the embedded engine, or one server) and :func:`cluster_statements` as
``ReplicatedMergeTree`` tables under a ``Distributed`` table (a production cluster). Queries
(:mod:`codeengine.records.queries`) name the tables by these names only, so they run on both.

Why these orderings (docs/records.md has the measurements):

* ``scans`` is ordered by ``(venue, at)``: the questions epidemic response asks first are about
  places (who was at venue V between 14:00 and 16:00, and the contacts of a subject, which is
  that question once per venue the subject visited), so a venue's window is one contiguous
  range. A subject's trajectory is served by the ``by_subject`` projection, a copy of the rows
  ordered by ``(subject, at)``; per-minute counts of a city by the ``per_minute`` projection,
  an aggregate the engine keeps up to date at every insert.
* ``changes`` (colour changes and imports) is small beside the scans and asked about by subject.
* ``access`` is who asked the library what, and when: a trajectory is personal data.

Every table is partitioned by day, so retention drops whole days (``ALTER TABLE .. DROP
PARTITION``) and an export of one city's day reads one partition.

The insert column orders of ``scans`` and ``changes`` are those of the packed stream entries
(``codeengine.code.scans.ScanEntry`` and ``codeengine.code.changes.ChangeEntry``), so the
records service hands the packed bytes to the engine as they are (``FORMAT MsgPack``).
"""

from __future__ import annotations

__all__ = [
    "ACCESS",
    "CHANGES",
    "SCANS",
    "TABLES",
    "Column",
    "Table",
    "cluster_statements",
    "create_statements",
]

from dataclasses import dataclass

DEDUPLICATION_WINDOW = 10_000
"""Inserts whose deduplication token the engine remembers, per table: a batch inserted again
with its token (a redelivery after a crash between insert and acknowledge) adds nothing."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    codec: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    """A table of the library: its columns in insert order, ordering, and what it keeps beside."""

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    projections: tuple[tuple[str, str], ...] = ()
    """(name, SELECT ...) of each projection."""
    time_column: str = "at"
    """The column its day partitions are cut by."""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


_AT = Column("at", "DateTime64(3, 'UTC')", "CODEC(DoubleDelta, ZSTD(1))")
_CITY = Column("city", "UInt32")

SCANS = Table(
    "scans",
    (
        # The order of ScanEntry's fields: terminal, venue, city, at, subject, reason, colour.
        Column("terminal", "String", "CODEC(ZSTD(1))"),
        Column("venue", "String"),
        _CITY,
        _AT,
        Column("subject", "String", "CODEC(ZSTD(1))"),
        # MsgPack cannot fill an Enum8: the few values are dictionary-encoded instead.
        Column("reason", "LowCardinality(String)"),
        Column("colour", "LowCardinality(String)"),
    ),
    ("venue", "at"),
    (
        ("by_subject", "SELECT * ORDER BY subject, at"),
        (
            "per_minute",
            "SELECT city, toStartOfMinute(at) AS minute, reason, colour, count() "
            "GROUP BY city, minute, reason, colour",
        ),
    ),
)
"""Every scan a verifier answered: where, when, whom (a pseudonym), the result and colour."""

CHANGES = Table(
    "changes",
    (
        # The order of ChangeEntry's fields.
        _AT,
        _CITY,
        Column("subject", "String"),
        Column("op", "LowCardinality(String)"),
        Column("old_colour", "LowCardinality(String)"),
        Column("new_colour", "LowCardinality(String)"),
        Column("version", "UInt32"),
        Column("actor", "LowCardinality(String)"),
        Column("reason", "String"),
        Column("op_id", "String"),
    ),
    ("subject", "at"),
)
"""Every audited write of a subject: colour changes, imports, appeals, rollbacks."""

ACCESS = Table(
    "access",
    (
        _AT,
        Column("client", "LowCardinality(String)"),
        Column("operation", "LowCardinality(String)"),
        Column("target", "String"),
        Column("from_ms", "Int64"),
        Column("to_ms", "Int64"),
        Column("rows", "UInt32"),
        Column("request_id", "String"),
    ),
    ("at",),
)
"""Who asked the library what, and when (kept as long as the data it answered from)."""

TABLES = (SCANS, CHANGES, ACCESS)


def _body(table: Table) -> str:
    parts = [f"    {c.name} {c.type}{' ' + c.codec if c.codec else ''}" for c in table.columns]
    parts += [f"    PROJECTION {name} ({select})" for name, select in table.projections]
    return ",\n".join(parts)


def create_statements(database: str) -> list[str]:
    """The statements that create the library in one engine (idempotent)."""
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for table in TABLES:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (\n{_body(table)}\n)\n"
            "ENGINE = MergeTree\n"
            f"PARTITION BY toDate({table.time_column})\n"
            f"ORDER BY ({', '.join(table.order_by)})\n"
            f"SETTINGS non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
        )
    return statements


def cluster_statements(database: str, cluster: str = "codeengine") -> list[str]:
    """The same library on a ClickHouse cluster: a replicated table per shard (``<name>_local``)
    under a ``Distributed`` table of the plain name, which the queries use.

    Scans are sharded by venue, so a venue's window (and a contact search, venue by venue)
    is answered by one shard; a subject's trajectory asks every shard through its projection.
    Changes are sharded by subject.
    """
    statements = [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"]
    shard_keys = {"scans": "cityHash64(venue)", "changes": "cityHash64(subject)"}
    for table in TABLES:
        local = f"{database}.{table.name}_local"
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster} (\n{_body(table)}\n)\n"
            f"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/"
            f"{table.name}', '{{replica}}')\n"
            f"PARTITION BY toDate({table.time_column})\n"
            f"ORDER BY ({', '.join(table.order_by)})"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {database}.{table.name} ON CLUSTER {cluster} "
            f"AS {local}\n"
            f"ENGINE = Distributed({cluster}, {database}, {table.name}_local, "
            f"{shard_keys.get(table.name, 'rand()')})"
        )
    return statements
