"""Sealed subject writes: read, compute and seal in Python, then compare-and-set in Lua.

A subject's record and its audit entries are built here, sealed with the record MAC key and
MACed with the audit key (codeengine.code.seal, codeengine.code.chain); neither key ever
reaches Redis, not even as a script argument (MONITOR shows arguments). The ``PUT_RECORD``
script stores the given bytes only if the record is still exactly the one read; otherwise it
answers with the current record and the write is computed again, a bounded number of times.
Every read of a record checks its seal: a record that fails it is counted, logged once per
subject and process, and refused (RecordTampered), never repaired.
"""

from __future__ import annotations

__all__ = ["MAX_CAS_TRIES", "Plan", "SealedAdapter", "StoreKeys", "fence_record"]

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from codeengine.code.chain import append_entry
from codeengine.code.changes import PackedChange, change_of
from codeengine.code.errors import KeyringError, RecordTampered, StoreUnavailable
from codeengine.code.fencing import WriterToken
from codeengine.code.model import SubjectId
from codeengine.code.seal import MACKeyset, marker_context, open_sealed, record_context, seal
from codeengine.code.status import SubjectRecord
from codeengine.metrics import RECORDS_TAMPERED
from codeengine.store import keyspace
from codeengine.store.adapters._base import Adapter, StoreSettings
from codeengine.store.cluster import tag_slot
from codeengine.store.results import PutCode, did_write
from codeengine.store.scripts import PUT_RECORD

log = logging.getLogger("codeengine.store")

MAX_CAS_TRIES = 8
"""Reads and computes of one write before a subject that keeps changing is reported."""
MAX_LOGGED_SUBJECTS = 10_000
"""Tampered subjects remembered per process so that each is logged once (then counted only)."""


@dataclass(frozen=True, slots=True)
class StoreKeys:
    """The MAC keys a process holds: record keys (issuers and verifiers), audit keys (issuers)."""

    records: MACKeyset
    audit: MACKeyset | None = None

    def audit_or_raise(self) -> MACKeyset:
        """The audit keyset; KeyringError in a process that holds none (a verifier)."""
        if self.audit is None:
            raise KeyringError("no audit MAC keys loaded: only issuers and ops hold them")
        return self.audit


@dataclass(slots=True)
class Plan:
    """What one sealed write stores: the new record (its head is set here) and its entry."""

    record: SubjectRecord
    entry: dict[str, Any]
    marker: str = ""
    side: str = ""
    side_field: str = ""
    side_value: str = ""


def _always(reply: object) -> bool:
    return True


def fence_record(record: SubjectRecord, token: WriterToken) -> SubjectRecord | None:
    """The record with the writer's epoch noted, or None if a newer writer of its city wrote it.

    A record keeps the highest epoch of each city that wrote it; a lower one is refused, so a
    primary that lost its lease cannot overwrite what the backup wrote after it.
    """
    if not token.city:
        return record
    fences = dict(record.fences)
    if fences.get(token.city, -1) > token.epoch:
        return None
    fences[token.city] = token.epoch
    return record._replace(fences=tuple(sorted(fences.items())))


class SealedAdapter(Adapter):
    """Record reads that check seals, and sealed compare-and-set writes."""

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._acknowledged(PUT_RECORD)
        self.keys: StoreKeys | None = None
        """Set by the process that owns the store (codeengine.web.runtime, the ops commands)."""
        self.service = "store"
        """The service label of the tampering counter."""
        self.changes: Callable[[PackedChange], None] | None = None
        """Where committed audited writes go for the change log (the issuer's and the ops
        commands' change-log writer, codeengine.store.streamlog); None keeps no change log."""
        self._logged: set[tuple[str, str]] = set()

    def note_change(self, record: SubjectRecord, entry: dict[str, Any]) -> None:
        """Hand an audited write that committed to the change log (if this process keeps one).

        Called as soon as the primary answers that it wrote, even if no replica confirms it
        in time: the audit entry is there, so the change is too.
        """
        if self.changes is not None:
            self.changes(change_of(entry, record.subject, record.city).packed())

    def _note_applied(self, record: SubjectRecord, entry: dict[str, Any], reply: Any) -> None:
        if int(reply[0]) == PutCode.APPLIED:
            self.note_change(record, entry)

    def _record_keys(self) -> MACKeyset:
        if self.keys is None:
            raise KeyringError("no record MAC keys loaded")
        return self.keys.records

    def _audit_keys(self) -> MACKeyset:
        if self.keys is None:
            raise KeyringError("no MAC keys loaded")
        return self.keys.audit_or_raise()

    def report_tampered(self, subject: SubjectId, what: str) -> None:
        """Count a stored value whose seal failed; log it once per subject and process."""
        RECORDS_TAMPERED.labels(self.service, what).inc()
        seen = (subject, what)
        if seen not in self._logged and len(self._logged) < MAX_LOGGED_SUBJECTS:
            self._logged.add(seen)
            log.error("subject %s: its stored %s fails its seal (RECORD_TAMPERED)", subject, what)

    def open_record(self, subject: SubjectId, raw: bytes) -> SubjectRecord:
        """A stored record whose seal holds; RecordTampered (counted, logged) otherwise."""
        return SubjectRecord.unpack(subject, self.open_record_body(subject, raw))

    def open_record_body(self, subject: SubjectId, raw: bytes) -> bytes:
        """A stored record's body (msgpack) if its seal holds; RecordTampered (counted,
        logged) otherwise."""
        try:
            return open_sealed(self._record_keys(), record_context(subject), raw)
        except RecordTampered:
            self.report_tampered(subject, "record")
            raise

    def seal_record(self, record: SubjectRecord) -> bytes:
        """The record as stored: its body and seal."""
        return seal(self._record_keys(), record_context(record.subject), record.pack())

    def _open_marker(self, subject: SubjectId, marker_key: str, raw: bytes) -> bytes:
        """What an applied operation's marker says it applied, if its seal holds."""
        try:
            return open_sealed(self._record_keys(), marker_context(marker_key), bytes(raw))
        except RecordTampered:
            self.report_tampered(subject, "marker")
            raise

    async def _sealed_write(
        self,
        subject: SubjectId,
        plan: Callable[[SubjectRecord | None], Plan | None],
        token: WriterToken,
        *,
        marker_key: str = "",
        side_key: str = "",
        acked: bool = True,
        create: bool = False,
    ) -> tuple[PutCode | None, bytes, SubjectRecord | None]:
        """Read, plan, seal and compare-and-set until the record read is the one replaced.

        ``plan`` sees the current record (None: no subject) and says what to write, None for
        nothing, or raises (unknown subject, stale version, fenced off). Returns the script's
        code (None when the plan wrote nothing), its value (a resend's marker, an existing
        record) and the record now stored as far as this write knows. A bulk caller passes
        ``acked=False`` and WAITs once for many writes itself. A ``create`` writes only where
        no record is: the script answers an existing one (rewritten unchanged, so that the
        WAIT covers a first send whose acknowledgement was lost).
        """
        fast = await self._hot()
        audit_keys = self._audit_keys()
        record_key = keyspace.subject_key(subject)
        keys = [record_key, marker_key or record_key, keyspace.audit_key(subject),
                side_key or record_key]  # fmt: skip
        raw: bytes | None = None
        done: bytes | None = None
        if not create:
            read = [record_key, marker_key or record_key]
            # The read is part of the write: it has the write's time (a bulk caller's, many
            # of whose writes are in flight at once), not a lone read's 250 ms.
            deadline_s = self._settings.write_deadline_ms / 1000 if acked else self._bulk_deadline_s
            raw, done = await fast.mget(read, deadline_s=deadline_s, slot=tag_slot(subject))
        wrote = _always if create else did_write
        if marker_key and done is not None:
            # A resend: the script answers from the marker (and rewrites it for WAIT).
            code, value = await self._write_then_wait(
                PUT_RECORD, keys, [raw or b"", b"", b"", b"", "resend", "", "", ""], did_write
            )
            if PutCode(int(code)) is PutCode.REPEAT:
                return PutCode.REPEAT, self._open_marker(subject, marker_key, value), None
            raw = bytes(value) or None
        for _ in range(MAX_CAS_TRIES):
            current = None if raw is None else self.open_record(subject, raw)
            step = plan(current)
            if step is None:
                return None, b"", current
            record, packed, digest = append_entry(audit_keys, step.record, step.entry, token)
            marker = b""
            if step.marker:
                body = step.marker.encode()
                marker = seal(self._record_keys(), marker_context(marker_key), body)
            args: list[str | bytes] = [raw or b"", self.seal_record(record), packed, digest,
                    marker, step.side, step.side_field, step.side_value]  # fmt: skip
            note = partial(self._note_applied, record, step.entry)
            if acked:
                code, value = await self._write_then_wait(PUT_RECORD, keys, args, wrote, note)
            else:
                reply = await self._acked[PUT_RECORD](keys, args, deadline_s=self._bulk_deadline_s)
                note(reply)
                code, value = reply
            put = PutCode(int(code))
            if put is PutCode.CONFLICT:
                raw = bytes(value) or None
                continue
            if put is PutCode.REPEAT:
                return put, self._open_marker(subject, marker_key, value), None
            return put, bytes(value), record if put is PutCode.APPLIED else None
        raise StoreUnavailable("the subject kept changing while this write was computed")
