"""Import batches: risk rows applied in bulk, their progress, and their rollback.

Owns ``keyspace.batch_key``, ``batch_subjects_key``, ``batch_errors_key``,
``batch_snapshot_key`` and ``RECENT_BATCHES_KEY``; writes ``subject_key`` and ``audit_key``
through the import and restore scripts. The importer that drives it is
:mod:`codeengine.store.batches`.
"""

from __future__ import annotations

__all__ = ["BatchAdapter"]

import asyncio
import itertools
import time
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import msgpack

from codeengine.code.chain import chain_entry
from codeengine.code.errors import (
    BatchConflict,
    CodeEngineError,
    Reason,
    StoreUnavailable,
    UnknownBatch,
    WriteNotReplicated,
)
from codeengine.code.fencing import WriterToken
from codeengine.code.model import Colour, SubjectId
from codeengine.code.seal import open_sealed, seal
from codeengine.code.status import SubjectRecord
from codeengine.metrics import STORE_LATENCY
from codeengine.store import keyspace
from codeengine.store.adapters._base import (
    BULK_ACK_FACTOR,
    SCAN_COUNT,
    StoreSettings,
    _fenced_off,
    _text_fields,
)
from codeengine.store.adapters._sealed import (
    MAX_CAS_TRIES,
    Plan,
    SealedAdapter,
    fence_record,
)
from codeengine.store.cluster import Address, FastCluster
from codeengine.store.port import RiskWrite
from codeengine.store.results import PutCode
from codeengine.store.scripts import PUT_RECORDS, READ_RECORDS

BATCH_SNAPSHOT_TTL_S = 30 * 86400
"""How long a batch can be rolled back: its subjects' snapshots expire after this."""
MAX_BATCH_ERRORS = 100_000
MAX_RECENT_BATCHES = 100
"""How many batch ids the recent list keeps; older batches stay readable by id."""
SCRIPT_ROWS = 250
IMPORT_STATE_SUBJECTS = 300_000
"""Subjects whose latest state an import keeps (about 250 bytes each): a subject met again
within this many needs no read; one forgotten is read again (a conflict at worst)."""
"""Import rows per script call: each call holds its primary for about this many rows' work."""


class RiskCode(IntEnum):
    """What the import did with each row."""

    UNCHANGED = 0
    CHANGED = 1
    CREATED = 2  # changed, and the subject created for it
    LISTED = 3  # unchanged, but this batch changed the subject before (list it for a rollback)
    FENCED = -3


def snapshot_context(subject: SubjectId, batch_id: str) -> bytes:
    """What a batch snapshot's seal binds: it is restored into the record by a rollback."""
    return b"ce/snapshot\x00" + subject.encode() + b"\x00" + batch_id.encode() + b"\x00"


def _flat(risk: Sequence[tuple[Colour, int]]) -> list[int]:
    return [int(x) for period in risk for x in period]


class BatchAdapter(SealedAdapter):
    """Bulk risk imports and their rollback, in pipelined chunks acknowledged by WAIT."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._read_records = self._fast.script(READ_RECORDS)
        self._put_records = self._fast.script(PUT_RECORDS)
        # Chunks compute and send one at a time, so a subject's rows reach Redis in file order.
        self._import_turn = asyncio.Lock()
        self._import_known: tuple[str, dict[SubjectId, tuple[bytes, SubjectRecord]]] = ("", {})

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
        """Each row's code, once a replica has what the chunk changed.

        Per round: the records of the rows' subjects that this import has not seen yet are
        read with one script call per primary (a few hundred keys each); every row is
        computed and sealed here in file order, on the import's latest state of its subject
        (a subject's later rows build on its earlier ones, across chunks); the writes go out
        in one compare-and-set call per primary and a few hundred rows, each primary's calls
        followed by a WAIT in the same pipeline. Chunks compute and send one after another,
        so a subject's rows reach Redis in file order; their reads need no order, since the
        import's own writes are known without reading them back. A row whose record changed
        since (another writer) is read and computed again in the next round.
        """
        codes = [int(RiskCode.UNCHANGED)] * len(writes)
        known = self._import_state(batch_id)
        todo = list(range(len(writes)))
        for _ in range(MAX_CAS_TRIES):
            unknown = [s for s in dict.fromkeys(writes[i].subject for i in todo) if s not in known]
            raws = await self._read_rows(fast, unknown) if unknown else {}
            async with self._import_turn:
                rows, sent, later, changed = self._plan_rows(
                    batch_id, writes, todo, known, raws, codes, now, actor, token
                )
                replies = asyncio.ensure_future(self._put_rows(fast, rows, changed))
                # Let it send before the next chunk computes (the client queues at once).
                await asyncio.sleep(0)
            conflicted = [sent[i] for i in await replies]
            for index in conflicted:
                known.pop(writes[index].subject, None)
            todo = sorted({*conflicted, *later})
            if not todo:
                return codes
        raise StoreUnavailable("the batch's subjects kept changing while it was imported")

    def _import_state(self, batch_id: str) -> dict[SubjectId, tuple[bytes, SubjectRecord]]:
        """What the import knows of its subjects: the stored bytes and the record they hold,
        oldest first, at most ``IMPORT_STATE_SUBJECTS`` of them."""
        if self._import_known[0] != batch_id:
            self._import_known = (batch_id, {})
        known = self._import_known[1]
        if len(known) > IMPORT_STATE_SUBJECTS:
            for subject in list(itertools.islice(known, len(known) // 4)):
                del known[subject]
        return known

    async def _read_rows(
        self, fast: FastCluster, subjects: Sequence[SubjectId]
    ) -> dict[SubjectId, bytes | None]:
        """The current record of each subject (one read script call per primary and chunk)."""
        unique = list(dict.fromkeys(subjects))
        by_primary: dict[Address | None, list[str]] = {}
        for subject in unique:
            key = keyspace.subject_key(subject)
            by_primary.setdefault(fast.primary_for(key), []).append(key)
        commands: list[tuple[str, tuple[Any, ...]]] = []
        for keys in by_primary.values():
            for first in range(0, len(keys), SCRIPT_ROWS):
                part = keys[first : first + SCRIPT_ROWS]
                commands.append((part[0], ("EVALSHA", self._read_records.sha, 1, part[0], *part)))
        replies = await fast.bulk(commands, deadline_s=self._bulk_deadline_s)
        values: list[bytes | None] = []
        for reply in replies:
            values += [v if v else None for v in fast.reply_or_raise(reply, "EVALSHA")]
        keys_in_order = [k for keys in by_primary.values() for k in keys]
        by_key = dict(zip(keys_in_order, values, strict=True))
        return {s: by_key[keyspace.subject_key(s)] for s in unique}

    def _plan_rows(
        self,
        batch_id: str,
        writes: Sequence[RiskWrite],
        todo: Sequence[int],
        known: dict[SubjectId, tuple[bytes, SubjectRecord]],
        raws: dict[SubjectId, bytes | None],
        codes: list[int],
        now: int,
        actor: str,
        token: WriterToken,
    ) -> tuple[list[list[Any]], list[int], list[int], list[tuple[SubjectRecord, dict[str, Any]]]]:
        """Compute and seal the rows of ``todo`` in file order: the script rows, for each the
        index of its write, the rows left for the next round (a subject forgotten since its
        read was asked for), and each script row's new record and audit entry (for the
        change log)."""
        audit_keys = self._audit_keys()
        rows: list[list[Any]] = []
        changed: list[tuple[SubjectRecord, dict[str, Any]]] = []
        sent: list[int] = []
        later: list[int] = []
        deferred: set[SubjectId] = set()
        for index in todo:
            w = writes[index]
            subject = w.subject
            state = known.get(subject)
            if state is None:
                if subject in deferred or subject not in raws:
                    deferred.add(subject)
                    later.append(index)
                    continue
                raw = raws.pop(subject)
                record = None if raw is None else self.open_record(subject, raw)
                if raw is not None and record is not None:
                    known[subject] = (raw, record)
            else:
                raw, record = state
            created = record is None
            if record is None:
                record = SubjectRecord(subject, w.kind, w.city, w.no_data, 1, now)
            periods = {c: u for c, u in record.risk if u > now}
            before = tuple(sorted(periods.items()))
            for cleared in w.clears:
                periods.pop(cleared, None)
            if (
                w.colour is not Colour.GREEN
                and w.until > now
                and periods.get(w.colour, 0) < w.until
            ):
                periods[w.colour] = w.until
            after = tuple(sorted(periods.items()))
            # Nothing to change (a repeat, or a record that ends no running period): no write,
            # and a subject the topic library names without any risk is not created for it.
            if before == after:
                listed = not created and record.last_batch == batch_id
                codes[index] = RiskCode.LISTED if listed else RiskCode.UNCHANGED
                continue
            fenced = fence_record(record, token)
            if fenced is None:
                codes[index] = RiskCode.FENCED
                continue
            snapshot = b""
            if record.last_batch != batch_id:
                snapshot = seal(self._record_keys(), snapshot_context(subject, batch_id),
                                msgpack.packb(_flat(record.risk)))  # fmt: skip
            version = record.version if created else record.version + 1
            colour = int(fenced.colour)
            entry = {"op": "risk", "actor": actor, "reason": w.reason, "old": colour,
                     "new": colour, "v": version, "at": now, "op_id": batch_id,
                     "risk": _flat(after)}  # fmt: skip
            packed, digest = chain_entry(
                audit_keys, subject, fenced.entries, fenced.head, entry, token
            )
            # One construction, not two _replace calls: this runs once per imported row.
            new = SubjectRecord(
                subject, fenced.kind, fenced.city, fenced.colour, version, now, after,
                fenced.override, digest, fenced.entries + 1, fenced.fences, batch_id,
            )  # fmt: skip
            new_raw = self.seal_record(new)
            rows.append([keyspace.subject_key(subject), keyspace.audit_key(subject),
                         keyspace.batch_snapshot_key(subject, batch_id), raw or b"",
                         new_raw, packed, digest, snapshot])  # fmt: skip
            changed.append((new, entry))
            sent.append(index)
            codes[index] = RiskCode.CREATED if created else RiskCode.CHANGED
            known[subject] = (new_raw, new)
        return rows, sent, later, changed

    async def _put_rows(
        self,
        fast: FastCluster,
        rows: list[list[Any]],
        changed: list[tuple[SubjectRecord, dict[str, Any]]],
    ) -> list[int]:
        """Send the sealed rows, a WAIT after each primary's calls; the conflicted rows.

        Every row a primary wrote goes to the change log before any WAIT is looked at: what
        the primary has stays written even when its replica is late."""
        by_primary: dict[Address | None, list[int]] = {}
        for index, row in enumerate(rows):
            by_primary.setdefault(fast.primary_for(row[0]), []).append(index)
        # A bulk chunk is thousands of writes: its replica gets longer to catch up than one.
        wait = ("WAIT", self._settings.replicas_to_ack,
                self._settings.replica_ack_timeout_ms * BULK_ACK_FACTOR)  # fmt: skip
        calls: list[list[int]] = []
        commands: list[tuple[str, tuple[Any, ...]]] = []
        for indices in by_primary.values():
            for first in range(0, len(indices), SCRIPT_ROWS):
                part = indices[first : first + SCRIPT_ROWS]
                key = rows[part[0]][0]
                args = [x for i in part for x in rows[i]]
                calls.append(part)
                commands.append((key, ("EVALSHA", self._put_records.sha, 1, key,
                                       BATCH_SNAPSHOT_TTL_S, *args)))  # fmt: skip
            calls.append([])
            commands.append((rows[indices[0]][0], wait))
        if not commands:
            return []
        replies = await fast.bulk(commands, deadline_s=self._bulk_deadline_s)
        self._note_written(calls, replies, changed)
        conflicted: list[int] = []
        wrote = False
        for part, reply in zip(calls, replies, strict=True):
            answer = fast.reply_or_raise(reply, "EVALSHA" if part else "WAIT")
            if part:
                for index, code in zip(part, answer, strict=True):
                    if int(code) == PutCode.CONFLICT:
                        conflicted.append(index)
                    else:
                        wrote = True
                continue
            # A primary's WAIT, after its calls: a refusal needs no replica.
            if wrote and int(answer) < self._settings.replicas_to_ack:
                raise WriteNotReplicated("no replica confirmed the batch's writes in time")
            wrote = False
        return conflicted

    def _note_written(
        self,
        calls: list[list[int]],
        replies: list[Any],
        changed: list[tuple[SubjectRecord, dict[str, Any]]],
    ) -> None:
        """Hand every row a primary wrote to the change log (before any WAIT is looked at)."""
        if self.changes is None:
            return
        for part, reply in zip(calls, replies, strict=True):
            if part and isinstance(reply, list):
                for index, code in zip(part, reply, strict=True):
                    if int(code) != PutCode.CONFLICT:
                        self.note_change(*changed[index])

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

    async def _restore(
        self, subject: SubjectId, batch_id: str, now: int, actor: str, token: WriterToken
    ) -> str:
        """Restore one subject's risk periods from the batch's snapshot, unless something else
        wrote the subject after the batch did; which rollback counter it adds to."""
        fast = await self._hot()
        snapshot_key = keyspace.batch_snapshot_key(subject, batch_id)
        snap_raw = await fast.get(snapshot_key, deadline_s=self._bulk_deadline_s)
        if snap_raw is None:
            return "unchanged"
        try:
            body = open_sealed(self._record_keys(), snapshot_context(subject, batch_id), snap_raw)
        except CodeEngineError:
            self.report_tampered(subject, "snapshot")
            raise
        flat = msgpack.unpackb(body)
        original = tuple((Colour(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2))
        outcome = ["unchanged"]

        def plan(current: SubjectRecord | None) -> Plan | None:
            if current is None:
                return None
            if current.last_batch != batch_id:
                outcome[0] = "changed_since"
                return None
            fenced = fence_record(current, token)
            if fenced is None:
                raise _fenced_off(token)
            version = current.version + 1
            new = fenced._replace(version=version, risk=original, updated_at=now,
                                  last_batch="")  # fmt: skip
            entry = {"op": "rollback", "actor": actor, "reason": "batch rolled back",
                     "old": int(new.colour), "new": int(new.colour), "v": version, "at": now,
                     "op_id": batch_id, "risk": flat}  # fmt: skip
            outcome[0] = "restored"
            return Plan(new, entry, side="del")

        await self._sealed_write(subject, plan, token, side_key=snapshot_key, acked=False)
        return outcome[0]

    async def rollback_batch(self, batch_id: str, now: int, actor: str) -> dict[str, int]:
        """Restore the batch's subjects in pipelined chunks, each acknowledged after WAIT."""
        meta = await self._batch_meta(batch_id)
        if not meta:
            raise UnknownBatch("no batch with this id")
        if meta.get("state") == "running":
            raise BatchConflict("the batch is being imported: wait until it is done")
        fast = await self._hot()
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
                *(self._restore(s, batch_id, now, actor, token) for s in subjects)
            )
            restored = [s for s, r in zip(subjects, results, strict=True) if r == "restored"]
            if restored:
                await self._replicated(fast, [keyspace.subject_key(s) for s in restored], bulk=True)
            for result in results:
                counts[result] += 1
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
