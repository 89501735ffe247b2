"""What the records tests share: one embedded engine per test process, a database per test.

chDB hosts one engine per process and refuses a second data folder, so every test of a process
opens the same folder and isolates itself by database.
"""

from __future__ import annotations

__all__ = ["engine_for", "fresh_cities", "records_settings"]

import itertools
import os
import tempfile
from pathlib import Path

from codeengine.records.engine import RecordsEngine, open_engine
from codeengine.settings import RecordsSettings

_FOLDER = Path(tempfile.mkdtemp(prefix="records-", dir=os.environ.get("CE_TEST_CLUSTER_DIR")))
_NEXT_CITY = itertools.count(990_001 + 1000 * (os.getpid() % 7))


def records_settings(database: str, **changes: object) -> RecordsSettings:
    values: dict[str, object] = {"path": str(_FOLDER), "database": database, "batch_max": 1000}
    values.update(changes)
    return RecordsSettings(**values)  # type: ignore[arg-type]


def engine_for(database: str) -> RecordsEngine:
    """The process's engine, with a database of its own for one test."""
    return open_engine(records_settings(database))


def fresh_cities(count: int) -> list[int]:
    """City codes no other test writes streams of (outside the province's codes)."""
    return [next(_NEXT_CITY) for _ in range(count)]
