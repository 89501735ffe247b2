"""What the records service reads: the streams that feed each table, and their entries.

A feed is one kind of stream per city (the verifiers' scan logs, the issuers' change logs) and
the table it fills. Each entry's one field ``e`` holds the row packed as a msgpack array in the
table's column order; the body of a ``FORMAT MsgPack`` insert is those arrays' items, one row
after another, so a well-formed entry is passed on as its bytes after the array header.

Pure: no I/O. The consumer (:mod:`codeengine.records.consumer`) does the reading.
"""

from __future__ import annotations

__all__ = ["CHANGE_FEED", "FEEDS", "SCAN_FEED", "Feed", "next_id", "pack_rows"]

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from codeengine.code.errors import CodeEngineError
from codeengine.code.scans import ENTRY_FIELD, ScanEntry
from codeengine.records.schema import CHANGES, SCANS, Table
from codeengine.store.keyspace import change_log_key, scan_log_key

_FIELD = ENTRY_FIELD.encode()


@dataclass(frozen=True, slots=True)
class Feed:
    """A kind of stream (one per city) and the table it fills."""

    name: str
    table: Table
    key: Callable[[int], str]
    types: tuple[type, ...]
    """The msgpack types of a row's items, in column order."""
    legacy: Callable[[dict[bytes, bytes]], bytes] | None = None
    """Packs an entry of an earlier layout (no ``e`` field) as a row, if the feed had one."""

    @property
    def header(self) -> bytes:
        """The first byte of a well-formed entry: a msgpack fixarray of the row's length."""
        return bytes([0x90 | len(self.types)])

    def is_row(self, packed: bytes) -> bool:
        """Whether ``packed`` is a row of this feed: the array, and each item of its type."""
        try:
            items = msgpack.unpackb(packed)
        except (ValueError, msgpack.UnpackException):
            return False
        return (
            isinstance(items, list)
            and len(items) == len(self.types)
            and all(type(item) is t for item, t in zip(items, self.types, strict=True))
        )


def _legacy_scan(fields: dict[bytes, bytes]) -> bytes:
    try:
        return ScanEntry.from_fields(fields).pack()
    except (CodeEngineError, ValueError, UnicodeDecodeError):
        return b""


SCAN_FEED = Feed("scans", SCANS, scan_log_key, (str, str, int, int, str, str, str), _legacy_scan)
CHANGE_FEED = Feed(
    "changes", CHANGES, change_log_key, (int, int, str, str, str, str, int, str, str, str)
)
FEEDS = (SCAN_FEED, CHANGE_FEED)


def _entry_value(fields: Any, feed: Feed) -> bytes:
    """The packed row of a stream entry's field list (``[b"e", value]``), or b"" if none."""
    if not fields:
        return b""  # an entry with no fields (XREADGROUP gives a trimmed pending one so)
    if len(fields) == 2 and fields[0] == _FIELD:
        value: bytes = fields[1]
        return value
    as_dict = dict(zip(fields[::2], fields[1::2], strict=False))
    if _FIELD in as_dict:
        packed: bytes = as_dict[_FIELD]
        return packed
    return feed.legacy(as_dict) if feed.legacy is not None else b""


def pack_rows(feed: Feed, entries: Sequence[Any], checked: bool) -> tuple[bytes, int]:
    """The insert body of stream ``entries`` (``[id, fields]`` as read), and how many were not
    rows of ``feed`` (left out).

    Unchecked, an entry is taken on its header byte alone: a full check of every entry cost
    more than the insert. A body the engine refuses is built again ``checked``: each entry
    unpacked and held to the feed's types, so one foreign entry cannot stop the feed.
    """
    header = feed.header
    parts = []
    bad = 0
    for _id, fields in entries:
        value = _entry_value(fields, feed)
        if value[:1] != header or (checked and not feed.is_row(value)):
            bad += 1
            continue
        parts.append(value[1:])
    return b"".join(parts), bad


def next_id(entry_id: bytes) -> bytes:
    """The smallest stream id after ``entry_id`` (``ms-seq``): XTRIM's MINID keeps it."""
    ms, _, seq = entry_id.partition(b"-")
    return b"%d-%d" % (int(ms), int(seq or b"0") + 1)
