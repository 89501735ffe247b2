"""The change log: one entry per audited write of a subject, for the records service.

A subject's audit stream (``ce:a:{subject}``) is the record of truth, but it is one stream per
subject, which no consumer group can follow. So every audited write (a colour change, an
imported risk record, an appeal decision, a rollback, a create, an alias bound or unbound) is
also sent, after it committed, to its city's change stream (``ce:chg:{city}``), which the
records service reads and inserts into the topic library beside the scans.

The entry is a contract with the records service: the stream field ``e`` holds a msgpack array
of exactly :data:`CHANGE_FIELDS`, in that order and of those types, and the service passes the
packed bytes, minus the one-byte fixarray header, to ClickHouse as ``FORMAT MsgPack``. Every
entry is therefore packed here and nowhere else.
"""

from __future__ import annotations

__all__ = [
    "CHANGE_FIELDS",
    "ENTRY_FIELD",
    "ChangeEntry",
    "PackedChange",
    "change_of",
    "colour_name",
]

from collections.abc import Mapping
from typing import Any, NamedTuple

import msgpack

from codeengine.code.errors import CodeEngineError
from codeengine.code.model import Colour

ENTRY_FIELD = "e"
"""The one stream field of an entry, as in the scan log."""

PackedChange = tuple[int, bytes]
"""A change entry as a writer holds it: its city, and the entry packed (``ChangeEntry.pack``)."""


class ChangeEntry(NamedTuple):
    """What one audited write did to one subject; no personal data (a pseudonym at most)."""

    at_ms: int
    """When the write was made (the audit entry's time, in milliseconds)."""
    city: int
    subject: str
    """The subject's pseudonym."""
    op: str
    """The audit entry's operation: ``create``, ``status``, ``risk``, ``appeal``,
    ``rollback``, ``alias_bind`` or ``alias_unbind``."""
    old_colour: str
    """``green``, ``yellow``, ``red`` (``grey`` where a record holds no colour the engine can
    vouch for), or ``""`` when the write had none before (a create)."""
    new_colour: str
    version: int
    """The subject's status version after the write."""
    actor: str
    """The API client's name, or the tool (``batch:<id>``, ``<user>:rollback:<id>``)."""
    reason: str
    """The reason the audit entry holds: a convert's reason text, a record type, an appeal's
    decision reason. Never an identifier of a person."""
    op_id: str
    """The write's operation id: a convert's ``op_id``, a batch id, an appeal id."""

    def pack(self) -> bytes:
        """The value of the entry's one stream field (``ENTRY_FIELD``): a 10-element array."""
        packed: bytes = _PACK(self)
        return packed

    def packed(self) -> PackedChange:
        """The entry as a writer holds it until it is written."""
        return self.city, _PACK(self)

    @classmethod
    def unpack(cls, packed: bytes) -> ChangeEntry:
        """An entry from its packed form; CodeEngineError if it is not one."""
        try:
            parts = msgpack.unpackb(packed)
        except (ValueError, msgpack.UnpackException) as exc:
            raise CodeEngineError("stored change log entry is corrupt") from exc
        if not isinstance(parts, list) or [type(p) for p in parts] != _PART_TYPES:
            raise CodeEngineError("stored change log entry is corrupt")
        return cls(*parts)


CHANGE_FIELDS = ChangeEntry._fields
"""The entry's fields, in the order they are packed: the columns of the topic library."""

_PART_TYPES = [int, int, str, str, str, str, int, str, str, str]
# One packer for every entry: msgpack.packb makes a new one per call.
_PACK = msgpack.Packer().pack


def colour_name(value: int | None) -> str:
    """A colour as the change log writes it: its lower-case name, or ``""`` for none."""
    return "" if value is None else Colour(value).label


def change_of(entry: Mapping[str, Any], subject: str, city: int) -> ChangeEntry:
    """The change entry of an audit entry (``codeengine.store.adapters``: ``op``, ``actor``,
    ``reason``, ``old``, ``new``, ``v``, ``at`` in seconds, ``op_id``) of a subject of
    ``city``."""
    return ChangeEntry(
        int(entry["at"]) * 1000,
        int(city),
        str(subject),
        str(entry["op"]),
        colour_name(entry.get("old")),
        colour_name(entry["new"]),
        int(entry["v"]),
        str(entry["actor"]),
        str(entry.get("reason", "")),
        str(entry.get("op_id", "")),
    )
