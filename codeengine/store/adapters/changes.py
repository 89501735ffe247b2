"""The change log: one stream per city of the audited writes of its subjects.

Owns ``keyspace.change_log_key`` and ``change_batch_key`` (a city's resend markers). The
entries are packed by codeengine.code.changes; the records service reads the streams.
"""

from __future__ import annotations

__all__ = ["ChangeAdapter"]

from codeengine.code.changes import ChangeEntry, PackedChange
from codeengine.code.errors import CodeEngineError
from codeengine.store import keyspace
from codeengine.store.adapters._base import Adapter, StoreSettings
from codeengine.store.adapters._logs import append_by_city
from codeengine.store.scripts import APPEND_LOG


class ChangeAdapter(Adapter):
    """Change log appends (pipelined, one script call per city and batch) and reads."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._append_log = self._fast.script(APPEND_LOG)

    async def append_changes(
        self, entries: list[PackedChange], max_age_ms: int, token: str
    ) -> list[PackedChange]:
        """Append every entry to its city's change stream, as ``append_scans`` does scans."""
        await self._hot()
        return await append_by_city(
            self._append_log,
            keyspace.change_log_key,
            keyspace.change_batch_key,
            entries,
            max_age_ms,
            token,
            self._settings.write_deadline_ms / 1000,
        )

    async def read_changes(
        self, city: int, from_ms: int, to_ms: int, limit: int
    ) -> list[ChangeEntry]:
        """A city's change entries written in ``[from_ms, to_ms]`` (the store's clock), at most
        ``limit``, oldest first (ops and tests; the records service reads the stream through
        its consumer group). CodeEngineError for an entry that is not a change entry."""
        fast = await self._hot()
        key = keyspace.change_log_key(city)
        # Not on a request's path: a window of many entries gets a bulk job's time.
        rows = await fast.execute(
            key, "XRANGE", key, from_ms, to_ms, "COUNT", limit, deadline_s=self._bulk_deadline_s
        )
        entries = []
        for _id, fields in rows:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            packed = values.get(b"e")
            if packed is None:
                raise CodeEngineError("stored change log entry is corrupt")
            entries.append(ChangeEntry.unpack(packed))
        return entries
