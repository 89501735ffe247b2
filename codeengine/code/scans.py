"""The scan log: one entry per scan, no personal data (a pseudonym at most), counted by venue."""

from __future__ import annotations

__all__ = [
    "ENTRY_FIELD",
    "PackedScan",
    "ScanCount",
    "ScanEntry",
    "ScanWindow",
    "count_scans",
    "packed_scan",
]

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

from codeengine.code.errors import CodeEngineError

MAX_ID_CHARS = 64

ENTRY_FIELD = "e"
"""The one stream field of an entry: the entry packed as a msgpack array, in field order.

One field, not one per part: a flush of 250 scans was 3,500 arguments for hiredis to pack and
Redis to parse (about 1.1 µs a scan to pack alone, timeit), as packed arrays it is 250."""


PackedScan = tuple[int, bytes]
"""A scan log entry as the writer holds it: its city, and the entry packed (``ScanEntry.pack``)."""


class ScanEntry(NamedTuple):
    """Who scanned (terminal, venue), where (city), when (ms), whom (pseudonym), and the result.

    A tuple: every scan makes one, and a tuple is the cheapest immutable record.
    """

    terminal: str
    venue: str
    city: int
    at_ms: int
    subject: str
    reason: str
    colour: str

    def pack(self) -> bytes:
        """The value of the entry's one stream field (``ENTRY_FIELD``)."""
        packed: bytes = _PACK(self)
        return packed

    def packed(self) -> PackedScan:
        """The entry as the writer holds it until it is written (``packed_scan``)."""
        return packed_scan(*self)

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> ScanEntry:
        """An entry from a stream record's fields.

        Entries of the earlier layout, a field per part (``t``, ``v``, ``c``, ``ts``, ``s``,
        ``r``, ``col``), are read as well, until the stream's length limit trims them. A packed
        value that is not an entry raises CodeEngineError, as any stored value the engine did
        not write; an earlier-layout entry with a bad number raises ValueError.
        """
        packed = fields.get(ENTRY_FIELD.encode())
        if packed is not None:
            try:
                parts = msgpack.unpackb(packed)
            except (ValueError, msgpack.UnpackException) as exc:
                raise CodeEngineError("stored scan log entry is corrupt") from exc
            if not isinstance(parts, list) or [type(p) for p in parts] != _PART_TYPES:
                raise CodeEngineError("stored scan log entry is corrupt")
            return cls(*parts)
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            terminal=text.get("t", ""),
            venue=text.get("v", ""),
            city=int(text.get("c", "0")),
            at_ms=int(text.get("ts", "0")),
            subject=text.get("s", ""),
            reason=text.get("r", ""),
            colour=text.get("col", ""),
        )


_PART_TYPES = [str, str, int, int, str, str, str]
# One packer for every entry: msgpack.packb makes a new one per call (0.38 against 0.25 µs, timeit).
_PACK = msgpack.Packer().pack


def packed_scan(
    terminal: str, venue: str, city: int, at_ms: int, subject: str, reason: str, colour: str
) -> PackedScan:
    """An entry as the writer holds it until it is written: its city, and the entry packed
    (``ScanEntry.pack``). Made from the parts, so that a verify, which logs one per scan, makes
    no entry tuple only to pack it (0.36 against 0.54 µs with the queueing, timeit)."""
    return city, _PACK((terminal, venue, city, at_ms, subject, reason, colour))


@dataclass(frozen=True, slots=True)
class ScanWindow:
    """A city's scan log entries in a time window, as the store read them."""

    entries: list[ScanEntry]
    truncated: bool
    """More entries lay in the window than the limit let through."""
    unreadable: int = 0
    """Entries of the window that are not scan entries (corrupt, or not the engine's): skipped,
    so that one bad entry does not hide the window's count."""


@dataclass(frozen=True, slots=True)
class ScanCount:
    """Scans in a time window, in total and by result and colour."""

    total: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_colour: dict[str, int] = field(default_factory=dict)


def count_scans(entries: Iterable[ScanEntry], venue: str | None) -> ScanCount:
    """Count entries, of one venue or of all."""
    reasons: Counter[str] = Counter()
    colours: Counter[str] = Counter()
    total = 0
    for entry in entries:
        if venue is not None and entry.venue != venue:
            continue
        total += 1
        reasons[entry.reason] += 1
        if entry.colour:
            colours[entry.colour] += 1
    return ScanCount(total, dict(reasons), dict(colours))
