"""Subjects: their records, status writes and audit trails.

Owns ``keyspace.subject_key``, ``audit_key`` and the operation markers of ``subject_keys``.
"""

from __future__ import annotations

__all__ = ["SubjectAdapter"]

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgpack

from codeengine.code.errors import UnknownSubject, VersionConflict
from codeengine.code.model import Colour, SubjectId
from codeengine.code.status import AuditEntry, StatusChange, SubjectRecord, WriteResult
from codeengine.store import keyspace
from codeengine.store.adapters._base import SCAN_COUNT, StoreSettings, _fenced_off, _fields
from codeengine.store.adapters._sealed import Plan, SealedAdapter, fence_record
from codeengine.store.results import PutCode


class SubjectAdapter(SealedAdapter):
    """Subject records, versioned status writes and audit reads."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)

    async def get_subject(self, subject: SubjectId) -> SubjectRecord | None:
        """The subject's record, or None; RecordTampered if its seal fails."""

        async def work() -> bytes | None:
            return await (await self._hot()).get(keyspace.subject_key(subject))

        raw = await self._bounded(work, self._settings.read_deadline_ms, "read")
        return None if raw is None else self.open_record(subject, raw)

    async def create_subject(self, record: SubjectRecord, actor: str) -> tuple[SubjectRecord, bool]:
        """Create the subject unless it exists (idempotent: a resend finds it created)."""
        subject = record.subject
        token = await self.fence.writer()

        def plan(current: SubjectRecord | None) -> Plan | None:
            first = fence_record(record._replace(head="", entries=0), token)
            assert first is not None  # a new record has no epoch to be fenced by
            entry = {"op": "create", "actor": actor, "reason": "", "new": int(record.colour),
                     "v": record.version, "at": record.updated_at, "op_id": ""}  # fmt: skip
            return Plan(first, entry)

        async def work() -> tuple[PutCode | None, bytes, SubjectRecord | None]:
            return await self._sealed_write(subject, plan, token, create=True)

        code, value, stored = await self._bounded(work, self._settings.write_deadline_ms, "create")
        if code is PutCode.EXISTS:
            return self.open_record(subject, value), False
        assert stored is not None
        return stored, code is PutCode.APPLIED

    async def set_status(self, change: StatusChange) -> WriteResult:
        """Versioned compare-and-set of the colour, idempotent by operation id."""
        token = await self.fence.writer()
        subject = change.subject

        def plan(current: SubjectRecord | None) -> Plan:
            if current is None:
                raise UnknownSubject("no such subject")
            if current.version != change.if_version:
                raise VersionConflict(current.version)
            fenced = fence_record(current, token)
            if fenced is None:
                raise _fenced_off(token)
            version = current.version + 1
            new = fenced._replace(colour=change.colour, version=version, last_batch="",
                                  updated_at=change.at)  # fmt: skip
            entry = {"op": "status", "actor": change.actor, "reason": change.reason,
                     "old": int(current.colour), "new": int(change.colour), "v": version,
                     "at": change.at, "op_id": change.op_id}  # fmt: skip
            return Plan(new, entry, marker=f"{version}:{int(change.colour)}")

        async def work() -> tuple[PutCode | None, bytes, SubjectRecord | None]:
            return await self._sealed_write(
                subject, plan, token, marker_key=keyspace.op_key(subject, change.op_id)
            )

        code, value, stored = await self._bounded(work, self._settings.write_deadline_ms, "write")
        if code is PutCode.REPEAT:
            version, _, colour = value.decode().partition(":")
            return WriteResult(version=int(version), applied=False, colour=Colour(int(colour)))
        assert stored is not None
        return WriteResult(version=stored.version, applied=True, colour=stored.colour)

    async def audit_trail(self, subject: SubjectId, limit: int = 100) -> list[AuditEntry]:
        """The subject's audit entries, oldest first."""
        return [entry for _ms, entry in await self.audit_trail_timed(subject, limit)]

    async def audit_trail_timed(
        self, subject: SubjectId, limit: int = 100
    ) -> list[tuple[int, AuditEntry]]:
        """The subject's audit entries with the store's time of each (ms, from its stream id)."""

        async def work() -> Any:
            key = keyspace.audit_key(subject)
            return await (await self._hot()).execute(key, "XRANGE", key, "-", "+", "COUNT", limit)

        rows = await self._bounded(work, self._settings.read_deadline_ms, "audit read")
        return [(int(i.split(b"-", 1)[0]), _parse_audit(_fields(flat)[b"e"])) for i, flat in rows]

    async def get_subjects(self, subjects: Sequence[SubjectId]) -> list[SubjectRecord | None]:
        """Several subjects' records (pipelined GETs, one per subject's slot)."""
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        raws = await asyncio.gather(
            *(fast.get(keyspace.subject_key(s), deadline_s=deadline_s) for s in subjects)
        )
        return [
            None if raw is None else self.open_record(s, raw)
            for s, raw in zip(subjects, raws, strict=True)
        ]

    async def audit_chain(
        self, subject: SubjectId
    ) -> tuple[SubjectRecord | None, list[tuple[bytes, str]]]:
        """The record and every audit entry (packed entry, hash), oldest first."""
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        audit = keyspace.audit_key(subject)
        record_raw, rows = await asyncio.gather(
            fast.get(keyspace.subject_key(subject), deadline_s=deadline_s),
            fast.execute(audit, "XRANGE", audit, "-", "+", deadline_s=deadline_s),
        )
        record = None if record_raw is None else self.open_record(subject, record_raw)
        entries = []
        for _id, flat in rows:
            fields = _fields(flat)
            entries.append((bytes(fields.get(b"e", b"")), bytes(fields.get(b"h", b"")).decode()))
        return record, entries

    async def audited_subjects(self) -> AsyncIterator[SubjectId]:
        """SCAN every primary for audit streams; each subject once per primary."""
        fast = await self._hot()
        pattern = keyspace.audit_key(SubjectId("*"))
        prefix, suffix = pattern.split("*")
        for slot in fast.primary_slots():
            cursor = "0"
            while True:
                cursor_raw, names = await fast.execute_at_slot(
                    slot,
                    "SCAN",
                    cursor,
                    "MATCH",
                    pattern,
                    "COUNT",
                    SCAN_COUNT,
                    "TYPE",
                    "stream",
                    deadline_s=self._bulk_deadline_s,
                )
                for name in names:
                    text = name.decode()
                    if text.startswith(prefix) and text.endswith(suffix):
                        yield SubjectId(text[len(prefix) : len(text) - len(suffix)])
                cursor = cursor_raw.decode()
                if cursor == "0":
                    break


def _parse_audit(raw: bytes) -> AuditEntry:
    fields: dict[str, Any] = msgpack.unpackb(raw)
    old = fields.get("old")
    return AuditEntry(
        op=str(fields["op"]),
        actor=str(fields["actor"]),
        reason=str(fields["reason"]),
        old_colour=None if old is None else Colour(old),
        new_colour=Colour(fields["new"]),
        version=int(fields["v"]),
        at=int(fields["at"]),
        op_id=str(fields.get("op_id", "")),
        writer=str(fields.get("by", "")),
        epoch=int(fields.get("ep", 0)),
    )
