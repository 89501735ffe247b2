"""Import batches: risk rows applied in bulk, their progress, and their rollback.

Owns ``keyspace.batch_key``, ``batch_subjects_key``, ``batch_errors_key``,
``batch_snapshot_key`` and ``RECENT_BATCHES_KEY``; writes ``subject_key`` and ``audit_key``
through the import and restore scripts. The importer that drives it is
:mod:`codeengine.store.batches`.
"""

from __future__ import annotations

__all__ = ["BatchAdapter"]

import asyncio
import functools
import time
from collections.abc import Sequence
from typing import Any

from codeengine.code.errors import BatchConflict, Reason, UnknownBatch, WriteNotReplicated
from codeengine.code.fencing import WriterToken
from codeengine.code.model import Colour, SubjectId
from codeengine.metrics import STORE_LATENCY
from codeengine.store import keyspace
from codeengine.store.adapters._base import (
    BULK_ACK_FACTOR,
    SCAN_COUNT,
    Adapter,
    StoreSettings,
    _fenced_off,
    _text_fields,
)
from codeengine.store.cluster import Address, FastCluster
from codeengine.store.port import RiskWrite
from codeengine.store.results import RiskCode, WriteCode
from codeengine.store.scripts import APPLY_RISK, RESTORE_RISK

BATCH_SNAPSHOT_TTL_S = 30 * 86400
"""How long a batch can be rolled back: its subjects' snapshots expire after this."""
MAX_BATCH_ERRORS = 100_000
MAX_RECENT_BATCHES = 100
"""How many batch ids the recent list keeps; older batches stay readable by id."""
SCRIPT_ROWS = 250
"""Import rows per script call: each call holds its primary for about this many rows' work."""

_MARK = SubjectId("\x00")

# A rollback's counter for each code of the restore script; any other counts as unchanged.
_ROLLBACK_COUNTS: dict[int, str] = {WriteCode.APPLIED: "restored", WriteCode.STALE: "changed_since"}


def _key_template(key: str) -> tuple[str, str]:
    """A subject key's text before and after the subject (the import script fills it in)."""
    before, _, after = key.partition(_MARK)
    return before, after


_RECORD_KEY = _key_template(keyspace.subject_key(_MARK))
_AUDIT_KEY = _key_template(keyspace.audit_key(_MARK))


@functools.lru_cache(maxsize=64)
def _colour_list(colours: tuple[Colour, ...]) -> str:
    """Colours as the import script reads them: "2,3"."""
    return ",".join(str(int(c)) for c in colours)


class BatchAdapter(Adapter):
    """Bulk risk imports and their rollback, in pipelined chunks acknowledged by WAIT."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._apply_risk = self._fast.script(APPLY_RISK)
        self._restore_risk = self._fast.script(RESTORE_RISK)

    async def begin_batch(
        self, batch_id: str, rules_version: int, now: int
    ) -> dict[str, str] | None:
        """Register the batch, or find it done (returned), rolled back (refused) or resumable."""
        await self.fence.writer()
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        # apply_risk sends its scripts by hash alone, without awaiting anything first, so
        # that chunks in flight together reach each primary in file order. A primary that lost
        # the script refuses them in that order on its one connection, and each chunk's bulk
        # call sends its own again (with their WAIT) as its refusal comes back: still in order.
        created = await fast.execute(
            key, "HSETNX", key, "state", "running", deadline_s=self._bulk_deadline_s
        )
        if int(created):
            fields: list[str | int] = [
                "rules_version",
                rules_version,
                "created_at",
                now,
                "updated_at",
                now,
            ]
            await fast.execute(key, "HSET", key, *fields, deadline_s=self._bulk_deadline_s)
            recent = keyspace.RECENT_BATCHES_KEY
            await fast.execute(
                recent, "ZADD", recent, now, batch_id, deadline_s=self._bulk_deadline_s
            )
            await fast.execute(
                recent,
                "ZREMRANGEBYRANK",
                recent,
                0,
                -MAX_RECENT_BATCHES - 1,
                deadline_s=self._bulk_deadline_s,
            )
            return None
        meta = await self._batch_meta(batch_id)
        if meta.get("state") == "rolled_back":
            raise BatchConflict(
                "this batch was rolled back: import it again under a new id",
                reason=Reason.BATCH_ROLLED_BACK,
            )
        if meta.get("state") == "done":
            return meta
        return None

    async def _batch_meta(self, batch_id: str) -> dict[str, str]:
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        flat = await fast.execute(key, "HGETALL", key, deadline_s=self._bulk_deadline_s)
        return _text_fields(flat)

    async def apply_risk(
        self, batch_id: str, writes: Sequence[RiskWrite], now: int, actor: str
    ) -> list[tuple[int, int]]:
        """Apply a chunk of risk records (a few script calls and a WAIT per primary)."""
        if not writes:
            return []
        fast = await self._hot()
        token = await self.fence.writer()
        started = time.perf_counter()
        outcome = "error"
        try:
            codes = await self._apply_risk_rows(fast, batch_id, writes, now, actor, token)
            # Code 3 too: a subject this batch changed in a run that stopped before listing it.
            listed = [
                w.subject
                for w, code in zip(writes, codes, strict=True)
                if code > RiskCode.UNCHANGED
            ]
            if listed:
                set_key = keyspace.batch_subjects_key(batch_id)
                await fast.execute(
                    set_key, "SADD", set_key, *listed, deadline_s=self._bulk_deadline_s
                )
            # Refused rows raise only now: the rows that did change are replicated and listed
            # for a rollback first, and the batch resumes at the endpoint that holds the lease.
            if RiskCode.FENCED in codes:
                raise _fenced_off(token)
            outcome = "ok"
        finally:
            STORE_LATENCY.labels("batch write", outcome).observe(time.perf_counter() - started)
        changed = (RiskCode.CHANGED, RiskCode.CREATED)
        return [(int(code in changed), int(code == RiskCode.CREATED)) for code in codes]

    async def _apply_risk_rows(
        self,
        fast: FastCluster,
        batch_id: str,
        writes: Sequence[RiskWrite],
        now: int,
        actor: str,
        token: WriterToken,
    ) -> list[int]:
        """The import script's code for each write, once a replica has what it changed.

        Rows are grouped by primary, in file order, a few hundred to a script call, and each
        primary's calls are followed by a WAIT in the same pipeline. WAIT counts the writes of
        its own connection, so it covers those calls and nothing sent after them: the next
        chunk's calls, already queued behind it, do not lengthen it.
        """
        by_primary: dict[Address | None, list[int]] = {}
        for index, write in enumerate(writes):
            primary = fast.primary_for(keyspace.subject_key(write.subject))
            by_primary.setdefault(primary, []).append(index)
        snapshot = _key_template(keyspace.batch_snapshot_key(_MARK, batch_id))
        head = (now, actor, batch_id, BATCH_SNAPSHOT_TTL_S, *token,
                *_RECORD_KEY, *snapshot, *_AUDIT_KEY)  # fmt: skip
        # A bulk chunk is thousands of writes: its replica gets longer to catch up than one.
        wait = ("WAIT", self._settings.replicas_to_ack,
                self._settings.replica_ack_timeout_ms * BULK_ACK_FACTOR)  # fmt: skip
        calls: list[list[int]] = []
        commands: list[tuple[str, tuple[Any, ...]]] = []
        for indices in by_primary.values():
            routing = keyspace.subject_key(writes[indices[0]].subject)
            for first in range(0, len(indices), SCRIPT_ROWS):
                part = indices[first : first + SCRIPT_ROWS]
                rows: list[Any] = []
                for index in part:
                    w = writes[index]
                    rows += (w.subject, int(w.colour), w.until, _colour_list(w.clears), w.reason,
                             int(w.kind), w.city, int(w.no_data))  # fmt: skip
                key = keyspace.subject_key(writes[part[0]].subject)
                calls.append(part)
                commands.append((key, ("EVALSHA", self._apply_risk.sha, 1, key, *head, *rows)))
            calls.append([])
            commands.append((routing, wait))
        replies = await fast.bulk(commands, deadline_s=self._bulk_deadline_s)
        codes = [0] * len(writes)
        wrote = False
        for part, reply in zip(calls, replies, strict=True):
            answer = fast.reply_or_raise(reply, "EVALSHA" if part else "WAIT")
            if part:
                for index, code in zip(part, answer, strict=True):
                    codes[index] = code
                wrote = wrote or RiskCode.CHANGED in answer or RiskCode.CREATED in answer
                continue
            # A primary's WAIT, after its calls: a refusal or a repeat needs no replica.
            if wrote and int(answer) < self._settings.replicas_to_ack:
                raise WriteNotReplicated("no replica confirmed the batch's writes in time")
            wrote = False
        return codes

    async def record_batch_progress(
        self, batch_id: str, counters: dict[str, int], errors: list[tuple[int, str]], now: int
    ) -> None:
        """Counters so far (any API caller sees the progress) and the refused rows."""
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        fields = [x for name, value in counters.items() for x in (name, value)]
        await fast.execute(
            key, "HSET", key, *fields, "updated_at", now, deadline_s=self._bulk_deadline_s
        )
        if errors:
            errors_key = keyspace.batch_errors_key(batch_id)
            rows = [f"{line}:{reason}" for line, reason in errors]
            await fast.execute(
                errors_key, "RPUSH", errors_key, *rows, deadline_s=self._bulk_deadline_s
            )
            await fast.execute(
                errors_key,
                "LTRIM",
                errors_key,
                0,
                MAX_BATCH_ERRORS - 1,
                deadline_s=self._bulk_deadline_s,
            )

    async def finish_batch(
        self, batch_id: str, state: str, counters: dict[str, int], now: int
    ) -> None:
        """The final state and counters."""
        await self.record_batch_progress(batch_id, counters, [], now)
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        await fast.execute(
            key, "HSET", key, "state", state, "finished_at", now, deadline_s=self._bulk_deadline_s
        )

    async def batch_info(
        self, batch_id: str, max_errors: int
    ) -> tuple[dict[str, str], list[tuple[int, str]]]:
        """State, counters and the first ``max_errors`` refused rows."""
        meta = await self._batch_meta(batch_id)
        if not meta:
            raise UnknownBatch("no batch with this id")
        fast = await self._hot()
        errors_key = keyspace.batch_errors_key(batch_id)
        raw = await fast.execute(
            errors_key, "LRANGE", errors_key, 0, max_errors - 1, deadline_s=self._bulk_deadline_s
        )
        errors = []
        for item in raw:
            line, _, reason = item.decode().partition(":")
            errors.append((int(line), reason))
        return meta, errors

    async def recent_batches(self, limit: int) -> list[tuple[str, dict[str, str]]]:
        """The newest ``limit`` batch ids and their metadata (one slot each, read together)."""
        fast = await self._hot()
        recent = keyspace.RECENT_BATCHES_KEY
        ids = await fast.execute(
            recent, "ZREVRANGE", recent, 0, limit - 1, deadline_s=self._bulk_deadline_s
        )
        names = [raw.decode() for raw in ids]
        metas = await asyncio.gather(*(self._batch_meta(name) for name in names))
        # A batch whose hash is gone (it never is today) is left out rather than shown empty.
        return [(name, meta) for name, meta in zip(names, metas, strict=True) if meta]

    async def rollback_batch(self, batch_id: str, now: int, actor: str) -> dict[str, int]:
        """Restore the batch's subjects in pipelined chunks, each acknowledged after WAIT."""
        meta = await self._batch_meta(batch_id)
        if not meta:
            raise UnknownBatch("no batch with this id")
        if meta.get("state") == "running":
            raise BatchConflict("the batch is being imported: wait until it is done")
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        set_key = keyspace.batch_subjects_key(batch_id)
        counts = {"restored": 0, "unchanged": 0, "changed_since": 0}
        cursor = "0"
        while True:
            cursor_raw, members = await fast.execute(
                set_key,
                "SSCAN",
                set_key,
                cursor,
                "COUNT",
                SCAN_COUNT,
                deadline_s=self._bulk_deadline_s,
            )
            subjects = [SubjectId(m.decode()) for m in members]
            # Asked again for every chunk: a rollback can outlast this endpoint's lease.
            token = await self.fence.writer()
            results = await asyncio.gather(
                *(
                    self._restore_risk(
                        [keyspace.subject_key(s), keyspace.batch_snapshot_key(s, batch_id),
                         keyspace.audit_key(s)],
                        [now, actor, batch_id, *token],
                        deadline_s=deadline_s,
                    )
                    for s in subjects
                )
            )  # fmt: skip
            restored = [
                s for s, r in zip(subjects, results, strict=True) if int(r[0]) == WriteCode.APPLIED
            ]
            if restored:
                await self._replicated(fast, [keyspace.subject_key(s) for s in restored], bulk=True)
            if any(int(r[0]) == WriteCode.FENCED for r in results):
                raise _fenced_off(token)
            for result in results:
                counts[_ROLLBACK_COUNTS.get(int(result[0]), "unchanged")] += 1
            cursor = cursor_raw.decode()
            if cursor == "0":
                break
        key = keyspace.batch_key(batch_id)
        fields = [x for name, value in counts.items() for x in (f"rollback_{name}", value)]
        await fast.execute(
            key,
            "HSET",
            key,
            "state",
            "rolled_back",
            "rolled_back_at",
            now,
            *fields,
            deadline_s=self._bulk_deadline_s,
        )
        return counts
