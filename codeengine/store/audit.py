"""The audit trail's hash chain: check it for one subject, or for every subject in the store.

Every status change is appended to the subject's audit stream by the store's scripts
(``lua/audit.lua``): each entry carries ``prev``, the hash of the entry before it, its own hash
``h`` is the SHA-1 of its packed bytes, and the subject's record keeps the hash of the latest
entry. So an entry that was altered no longer matches its hash; one removed or moved breaks the
``prev`` link of the next; removing the latest entries leaves the record's head pointing at an
entry that is gone. What the chain cannot show is a rewrite of every hash from the altered
entry to the head, record included: that takes write access to the store and knowledge of this
scheme, and it is what anchoring the heads outside the store would catch.
"""

from __future__ import annotations

__all__ = ["ChainCheck", "check_chain", "history_entries", "verify_store"]

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from codeengine.code.model import Colour, SubjectId
from codeengine.code.status import SubjectRecord
from codeengine.store.port import Store

_COLOURS = {int(c): c for c in Colour}


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The verdict on one subject's audit chain."""

    subject: SubjectId
    entries: int
    ok: bool
    broken_at: int | None = None
    """Index (0 = oldest) of the first entry that does not fit; ``entries`` for the head."""
    problem: str = ""


def check_chain(
    subject: SubjectId, record: SubjectRecord | None, entries: Sequence[tuple[bytes, str]]
) -> ChainCheck:
    """Check a subject's audit entries (packed entry, hash; oldest first) against its record."""
    prev = ""
    for index, (packed, digest) in enumerate(entries):
        if hashlib.sha1(packed, usedforsecurity=False).hexdigest() != digest:
            return ChainCheck(subject, len(entries), False, index, "entry altered")
        try:
            fields = msgpack.unpackb(packed)
        except (ValueError, msgpack.UnpackException):
            return ChainCheck(subject, len(entries), False, index, "entry unreadable")
        if not isinstance(fields, dict) or fields.get("prev") != prev:
            return ChainCheck(
                subject, len(entries), False, index, "entry before it removed or moved"
            )
        prev = digest
    if record is None:
        if entries:
            return ChainCheck(subject, len(entries), False, len(entries), "record missing")
        return ChainCheck(subject, 0, True)
    if record.head != prev:
        return ChainCheck(
            subject, len(entries), False, len(entries), "latest entries removed or head altered"
        )
    return ChainCheck(subject, len(entries), True)


def history_entries(entries: Sequence[tuple[bytes, str]]) -> list[dict[str, Any]]:
    """The audit entries as ops read them: what changed, who or what did it, when, why."""
    out = []
    for packed, digest in entries:
        fields = msgpack.unpackb(packed)
        risk = fields.get("risk") or []
        entry: dict[str, Any] = {
            "op": str(fields.get("op", "")),
            "actor": str(fields.get("actor", "")),
            "reason": str(fields.get("reason", "")),
            "old_colour": _label(fields.get("old")),
            "new_colour": _label(fields.get("new")),
            "version": int(fields.get("v", 0)),
            "at": int(fields.get("at", 0)),
            "op_id": str(fields.get("op_id", "")),
            "hash": digest,
        }
        if risk:
            entry["risk"] = [
                {"colour": _label(risk[i]), "until": int(risk[i + 1])}
                for i in range(0, len(risk), 2)
            ]
        if "ends" in fields:
            entry["until"] = int(fields["ends"])
        out.append(entry)
    return out


def _label(value: object) -> str | None:
    colour = _COLOURS.get(value) if isinstance(value, int) else None
    return None if colour is None else colour.label


async def verify_store(
    store: Store, progress: Callable[[int, int], None] | None = None
) -> tuple[int, list[ChainCheck]]:
    """Check every subject's chain; the number checked and the broken ones."""
    checked = 0
    broken: list[ChainCheck] = []
    async for subject in store.audited_subjects():
        record, entries = await store.audit_chain(subject)
        result = check_chain(subject, record, entries)
        checked += 1
        if not result.ok:
            broken.append(result)
        if progress is not None and checked % 1000 == 0:
            progress(checked, len(broken))
    return checked, broken
