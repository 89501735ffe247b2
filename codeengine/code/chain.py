"""The keyed audit chain: each entry MACed by the writing service, bound to its subject and place.

An entry is a msgpack map: what changed (``op``, ``actor``, ``reason``, ``old``, ``new``, ``v``,
``at``, ``op_id``, and ``by``/``ep``, ``risk``, ``ends`` where they apply), its position ``n``
(0, 1, 2, ... in the subject's stream), ``prev`` (the MAC of the entry before it, hex; empty
for the first) and ``k``, the id of the audit key that MACed it. Its MAC is the first 16 bytes
of HMAC-SHA-256 (HMAC-SM3 in the national profile: the audit keyset's ``mac``) over the key
id, the subject and the packed entry, kept beside it as ``h`` (hex). The subject's record
keeps the head (``entries``, ``head``) under its own seal.

So without the audit key nobody can write an entry that checks; an entry copied from another
subject's chain does not check (the subject is in its MAC); a removed or moved entry breaks
the positions and the ``prev`` link after it; removing the latest entries leaves the record's
head beyond the stream. A holder of the audit key can still rewrite a whole chain consistently:
that is what signed checkpoints outside the store catch (codeengine.code.checkpoint).

Pure: keys and times are arguments.
"""

from __future__ import annotations

__all__ = [
    "ChainCheck",
    "append_entry",
    "audit_context",
    "chain_entry",
    "check_chain",
    "entry_mac",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from codeengine.code.fencing import WriterToken
from codeengine.code.macs import MACAlgorithm
from codeengine.code.seal import MACKeyset, keyed_mac, mac
from codeengine.code.status import SubjectRecord


def audit_context(subject: str) -> bytes:
    """What an entry's MAC binds besides the entry: the kind of value and the subject."""
    return b"ce/audit\x00" + subject.encode() + b"\x00"


def entry_mac(
    key: bytes,
    kid: bytes,
    subject: str,
    packed: bytes,
    algorithm: MACAlgorithm = MACAlgorithm.HMAC_SHA256,
) -> str:
    """An entry's MAC, hex (its ``h``), with the profile's ``algorithm``."""
    return mac(key, kid, audit_context(subject), packed, algorithm).hex()


def chain_entry(
    keys: MACKeyset,
    subject: str,
    position: int,
    prev: str,
    entry: dict[str, Any],
    token: WriterToken,
) -> tuple[bytes, str]:
    """The packed entry at ``position`` after the entry whose MAC is ``prev``, and its MAC.

    ``token`` names the writer in the entry (fenced deployments only).
    """
    if token.city:
        entry["by"] = token.writer
        entry["ep"] = token.epoch
    kid = keys.current
    entry["n"] = position
    entry["prev"] = prev
    entry["k"] = kid
    packed: bytes = msgpack.packb(entry)
    return packed, keyed_mac(keys, kid, audit_context(subject), packed).hex()


def append_entry(
    keys: MACKeyset, record: SubjectRecord, entry: dict[str, Any], token: WriterToken
) -> tuple[SubjectRecord, bytes, str]:
    """The record with its new head, the packed entry and its MAC, for the entry after its head.

    ``token`` names the writer in the entry (fenced deployments only).
    """
    packed, digest = chain_entry(keys, record.subject, record.entries, record.head, entry, token)
    return record._replace(head=digest, entries=record.entries + 1), packed, digest


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The verdict on one subject's audit chain."""

    subject: str
    entries: int
    ok: bool
    broken_at: int | None = None
    """Index (0 = oldest) of the first entry that does not fit; ``entries`` for the head."""
    problem: str = ""


def check_chain(
    keys: MACKeyset,
    subject: str,
    record: SubjectRecord | None,
    entries: Sequence[tuple[bytes, str]],
) -> ChainCheck:
    """Check a subject's entries (packed entry, MAC hex; oldest first) against its record.

    The record must be one whose seal was checked already (it is the chain's anchor).
    """
    count = len(entries)
    context = audit_context(subject)
    prev = ""
    for index, (packed, digest) in enumerate(entries):
        try:
            fields = msgpack.unpackb(packed)
            kid = bytes(fields["k"])
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            return ChainCheck(subject, count, False, index, "entry unreadable or unkeyed")
        if keys.key(kid) is None:
            return ChainCheck(subject, count, False, index, "entry MACed with an unknown key")
        if keyed_mac(keys, kid, context, packed).hex() != digest:
            return ChainCheck(subject, count, False, index, "entry altered or not this subject's")
        if fields.get("n") != index or fields.get("prev") != prev:
            return ChainCheck(subject, count, False, index, "entry before it removed or moved")
        prev = digest
    if record is None:
        if entries:
            return ChainCheck(subject, count, False, count, "record missing")
        return ChainCheck(subject, 0, True)
    if record.head != prev or record.entries != count:
        return ChainCheck(subject, count, False, count, "latest entries removed or head altered")
    return ChainCheck(subject, count, True)
