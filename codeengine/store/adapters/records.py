"""The records service's published status, read for the ops console.

Owns nothing it writes: ``keyspace.RECORDS_STATUS_KEY`` is written by the records service under
its own ACL user (:mod:`codeengine.records.status`); the services' user only reads it.
"""

from __future__ import annotations

__all__ = ["RecordsStatusAdapter"]

from codeengine.store import keyspace
from codeengine.store.adapters._base import Adapter, _text_fields


class RecordsStatusAdapter(Adapter):
    """The one read of the records service's status hash."""

    async def records_status(self) -> dict[str, str] | None:
        """The status hash's fields as text (``codeengine.code.recordstatus``), or None if the
        records service never published one."""
        fast = await self._hot()
        key = keyspace.RECORDS_STATUS_KEY

        async def work() -> list[bytes]:
            flat: list[bytes] = await fast.execute(
                key, "HGETALL", key, deadline_s=self._settings.read_deadline_ms / 1000
            )
            return flat

        flat = await self._bounded(work, self._settings.read_deadline_ms, "records_status")
        return _text_fields(flat) if flat else None
