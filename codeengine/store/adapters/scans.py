"""The scan log: one stream per city of the scans the verifiers saw.

Owns ``keyspace.scan_log_key`` and ``scan_batch_key`` (a city's resend markers).
"""

from __future__ import annotations

__all__ = ["ScanAdapter"]

import asyncio
import logging
from collections.abc import Sequence

from codeengine.code.errors import CodeEngineError, StoreUnavailable
from codeengine.code.scans import PackedScan, ScanEntry, ScanWindow
from codeengine.metrics import SCANS_UNREADABLE
from codeengine.store import keyspace
from codeengine.store.adapters._base import Adapter, StoreSettings
from codeengine.store.adapters._logs import append_by_city
from codeengine.store.results import ReleaseCode
from codeengine.store.scripts import APPEND_LOG, OFFLINE_SCAN_RELEASE

log = logging.getLogger("codeengine.store.port")


class ScanAdapter(Adapter):
    """Scan log appends (pipelined, one script call per city) and time-window reads."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._append_log = self._fast.script(APPEND_LOG)
        self._release_scan = self._fast.script(OFFLINE_SCAN_RELEASE)

    async def append_scans(
        self, entries: list[PackedScan], max_age_ms: int, token: str
    ) -> list[PackedScan]:
        """Append every entry to its city's stream: one script call per city, pipelined.

        Returns the entries of the cities whose call failed; the others are written once.
        A city's script skips a batch whose ``token`` it has written already (a resend).
        Entries older than ``max_age_ms`` are trimmed as the batch is added.
        """
        await self._hot()
        return await append_by_city(
            self._append_log,
            keyspace.scan_log_key,
            keyspace.scan_batch_key,
            entries,
            max_age_ms,
            token,
            self._settings.write_deadline_ms / 1000,
        )

    async def claim_offline_scans(
        self, client: str, claims: Sequence[tuple[str, int]], token: str
    ) -> list[bool]:
        """For each ``(scan id, seconds to remember it)``, whether this call is the first to
        claim it (SET NX EX with the request's ``token``, one per id, pipelined): a terminal
        sends an offline scan again when it did not see the answer, and only the first is
        logged.

        When any claim fails (a shard down) every claim already made is given back before
        StoreUnavailable is raised, so that the terminal's resend finds none of them held.
        """

        async def work() -> list[bool]:
            fast = await self._hot()
            deadline_s = self._settings.write_deadline_ms / 1000
            # Every call is let finish (each within the deadline) before any is judged: a
            # claim that lands after its release was sent would hold the id for days.
            replies = await asyncio.gather(
                *(
                    fast.execute(
                        key := keyspace.offline_scan_key(client, scan_id), "SET", key, token,
                        "NX", "EX", max(1, ttl_s), deadline_s=deadline_s,
                    )
                    for scan_id, ttl_s in claims
                ),
                return_exceptions=True,
            )  # fmt: skip
            failed = next((r for r in replies if isinstance(r, BaseException)), None)
            if isinstance(failed, CodeEngineError):
                raise failed
            if failed is not None:
                raise StoreUnavailable(f"claim failed: {type(failed).__name__}") from failed
            return [reply is not None for reply in replies]

        try:
            return await self._bounded(
                work, self._settings.write_deadline_ms, "claim_offline_scans"
            )
        except BaseException:
            # Every id, whatever its shard answered: the compare in the script frees only this
            # request's claims, and a claim whose answer was lost may still have been made.
            await self.release_offline_scans(client, [scan_id for scan_id, _ in claims], token)
            raise

    async def release_offline_scans(self, client: str, scan_ids: Sequence[str], token: str) -> int:
        """Give back the claims on ``scan_ids`` that ``token`` made (compare and delete, one
        script call per id); how many were given back. Best effort: a shard that fails keeps
        its claims (logged as a count) until they expire."""
        try:
            await self._hot()
        except CodeEngineError:
            log.warning("offline scan claims: %d not given back (store unreachable)", len(scan_ids))
            return 0
        deadline_s = self._settings.write_deadline_ms / 1000
        replies = await asyncio.gather(
            *(
                self._release_scan(
                    [keyspace.offline_scan_key(client, scan_id)], [token], deadline_s=deadline_s
                )
                for scan_id in scan_ids
            ),
            return_exceptions=True,
        )
        failed = sum(isinstance(reply, BaseException) for reply in replies)
        if failed:
            # Only how many: the ids are the terminal's, and each is logged by no one here.
            log.warning("offline scan claims: %d of %d not given back", failed, len(replies))
        return sum(
            not isinstance(reply, BaseException) and int(reply[0]) == ReleaseCode.RELEASED
            for reply in replies
        )

    async def read_scans(self, city: int, from_ms: int, to_ms: int, limit: int) -> ScanWindow:
        """Stream ids are millisecond times, so a time window is an XRANGE."""
        fast = await self._hot()
        key = keyspace.scan_log_key(city)
        rows = await fast.execute(
            key, "XRANGE", key, from_ms, to_ms, "COUNT", limit + 1,
            deadline_s=self._settings.write_deadline_ms / 1000,
        )  # fmt: skip
        entries = []
        unreadable = 0
        for _id, fields in rows[:limit]:
            try:
                entries.append(
                    ScanEntry.from_fields(dict(zip(fields[::2], fields[1::2], strict=True)))
                )
            except (CodeEngineError, ValueError):
                unreadable += 1
        if unreadable:
            # Only how many and where: an entry that is not the engine's may hold anything.
            log.warning(
                "scan log of city %d: %d unreadable entries skipped in %d..%d",
                city, unreadable, from_ms, to_ms,
            )  # fmt: skip
            SCANS_UNREADABLE.inc(unreadable)
        return ScanWindow(entries, len(rows) > limit, unreadable)
