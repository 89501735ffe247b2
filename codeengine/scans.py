"""The scan log: one entry per scan, no personal data (a pseudonym at most), counted by venue."""

from __future__ import annotations

__all__ = ["SCAN_FIELD_COUNT", "ScanCount", "ScanEntry", "count_scans"]

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_ID_CHARS = 64


SCAN_FIELD_COUNT = 14
"""Names and values of one scan log entry: the length of ``ScanEntry.to_fields()``."""


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

    def to_fields(self) -> list[str | int]:
        """Stream fields, flattened: short names, every value as text or integer."""
        return [
            "t", self.terminal, "v", self.venue, "c", self.city, "ts", self.at_ms,
            "s", self.subject, "r", self.reason, "col", self.colour,
        ]  # fmt: skip

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> ScanEntry:
        """An entry from a stream record's fields."""
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
