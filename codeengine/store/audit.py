"""The keyed audit chain: check it for one subject or for every subject in the store.

Every audited write appends an entry MACed by the issuer with the audit key
(codeengine.code.chain): each entry binds its subject, its position and the MAC of the entry
before it, and the subject's sealed record keeps the head (position and MAC). So an entry
altered, removed, moved or copied from another subject breaks the chain, and so does a record
edited by anyone without the record key. A holder of both keys could still rewrite a whole
chain consistently: a checkpoint (``codeengine audit checkpoint``) anchors every head outside
the store, signed with a key services do not hold, and ``verify`` with it checks that every
anchored head is still at its position.
"""

from __future__ import annotations

__all__ = [
    "Anchor",
    "ChainCheck",
    "check_anchored",
    "check_chain",
    "check_subject",
    "history_entries",
    "verify_store",
]

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from codeengine.code.chain import ChainCheck, check_chain
from codeengine.code.errors import RecordTampered
from codeengine.code.model import Colour, SubjectId
from codeengine.code.seal import MACKeyset
from codeengine.code.status import SubjectRecord
from codeengine.store.port import Store

_COLOURS = {int(c): c for c in Colour}

Anchor = tuple[int, str]
"""A checkpoint's anchor of one subject: how many entries its chain had, and the head's MAC."""


def check_anchored(
    keys: MACKeyset,
    subject: str,
    record: SubjectRecord | None,
    entries: Sequence[tuple[bytes, str]],
    anchor: Anchor | None = None,
) -> ChainCheck:
    """:func:`check_chain`, and the anchored head still at its position, if there is one."""
    result = check_chain(keys, subject, record, entries)
    if not result.ok or anchor is None:
        return result
    count, head = anchor
    if count == 0:
        return result
    if len(entries) < count or entries[count - 1][1] != head:
        return ChainCheck(subject, len(entries), False, count - 1, "differs from the checkpoint")
    return result


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
            "position": int(fields.get("n", -1)),
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
    store: Store,
    keys: MACKeyset,
    progress: Callable[[int, int], None] | None = None,
    anchors: Mapping[str, Anchor] | None = None,
) -> tuple[int, list[ChainCheck]]:
    """Check every subject's chain (and its anchor); the number checked and the broken ones.

    A subject anchored in the checkpoint whose chain is gone altogether is broken too.
    """
    checked = 0
    broken: list[ChainCheck] = []
    seen: set[str] = set()
    async for subject in store.audited_subjects():
        if subject in seen:
            continue
        seen.add(subject)
        result = await check_subject(store, keys, subject, anchors)
        checked += 1
        if not result.ok:
            broken.append(result)
        if progress is not None and checked % 1000 == 0:
            progress(checked, len(broken))
    for gone in sorted(set(anchors or ()) - seen):
        checked += 1
        broken.append(ChainCheck(gone, 0, False, 0, "anchored in the checkpoint, now gone"))
    return checked, broken


async def check_subject(
    store: Store, keys: MACKeyset, subject: str, anchors: Mapping[str, Anchor] | None = None
) -> ChainCheck:
    """One subject's verdict; a record whose seal fails is a broken chain (its anchor)."""
    try:
        record, entries = await store.audit_chain(SubjectId(subject))
    except RecordTampered:
        return ChainCheck(subject, 0, False, None, "record seal fails (RECORD_TAMPERED)")
    return check_anchored(keys, subject, record, entries, (anchors or {}).get(subject))
