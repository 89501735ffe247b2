"""The status model: a subject's record and the changes made to it. Pure values, no I/O."""

from __future__ import annotations

__all__ = ["AuditEntry", "StatusChange", "SubjectRecord", "WriteResult", "colour_in_record_at"]

from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from codeengine.code.errors import CodeEngineError
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.rules import Risk, effective_colour_at

_new_tuple = tuple.__new__
# Enum lookups by value, without the cost of calling the Enum on the read hot paths.
_KINDS = {int(kind): kind for kind in CodeKind}
_COLOURS = {int(colour): colour for colour in Colour}

MAX_REASON_CHARS = 200
MAX_ACTOR_CHARS = 64
MAX_OP_ID_CHARS = 64


class SubjectRecord(NamedTuple):
    """What the store holds about one subject: no identifier, no name, only the pseudonym.

    A tuple: the display and verify hot paths read one per request (0.3 µs against 2.6 µs for
    a frozen dataclass here).
    """

    subject: SubjectId
    kind: CodeKind
    city: int
    colour: Colour
    """The base colour: the no-data policy's, or what ops last set. See ``colour_at``."""
    version: int
    updated_at: int
    risk: Risk = ()
    """Risk periods from imported records (colour, until), as the rules set them."""
    override: tuple[Colour, int] | None = None
    """An upheld appeal's colour and the instant it ends."""
    head: str = ""
    """The MAC (hex) of the subject's latest audit entry: the audit chain's head."""
    entries: int = 0
    """How many audit entries the subject has: the next entry's position (codeengine.code.chain)."""
    fences: tuple[tuple[str, int], ...] = ()
    """The highest fencing epoch of each city that wrote the subject (codeengine.store.fence)."""
    last_batch: str = ""
    """The import batch that wrote the record last, if nothing wrote it since (its rollback)."""

    def colour_at(self, now: int) -> Colour:
        """The colour the subject shows at ``now`` (override, risk periods, base)."""
        if not self.risk and self.override is None:
            return self.colour
        return effective_colour_at(self.colour, self.risk, self.override, now)

    def pack(self) -> bytes:
        """The msgpack value stored under the subject's key (short field names: memory)."""
        fields: dict[str, Any] = {"k": int(self.kind), "c": self.city, "col": int(self.colour)}
        fields |= {"v": self.version, "u": self.updated_at}
        if self.risk:
            fields["r"] = [int(x) for period in self.risk for x in period]
        if self.override is not None:
            fields["o"] = [int(self.override[0]), self.override[1]]
        if self.head:
            fields["h"] = self.head
        if self.entries:
            fields["n"] = self.entries
        if self.fences:
            fields["fe"] = dict(self.fences)
        if self.last_batch:
            fields["lb"] = self.last_batch
        return msgpack.packb(fields)  # type: ignore[no-any-return]

    @classmethod
    def unpack(cls, subject: SubjectId, raw: bytes) -> SubjectRecord:
        """Read a stored value; a value the engine did not write raises CodeEngineError."""
        try:
            fields: dict[str, Any] = msgpack.unpackb(raw)
            fences = fields.get("fe")
            # Every field given, as a tuple: skips the generated __new__ (a read per request).
            return _new_tuple(cls, (
                subject,
                _KINDS[fields["k"]],
                int(fields["c"]),
                _COLOURS[fields["col"]],
                int(fields["v"]),
                int(fields["u"]),
                _risk(fields.get("r")),
                _override(fields.get("o")),
                str(fields.get("h", "")),
                int(fields.get("n", 0)),
                tuple(sorted([(str(c), int(e)) for c, e in fences.items()])) if fences else (),
                str(fields.get("lb", "")),
            ))  # fmt: skip
        except _CORRUPT as exc:
            raise CodeEngineError("stored subject record is corrupt") from exc


def colour_in_record_at(raw: bytes, now: int) -> Colour:
    """``SubjectRecord.unpack(subject, raw).colour_at(now)``, reading only the colour's fields.

    Verify needs nothing else of the record, and a record read whole costs 2.2 µs where its
    colour costs 0.8 (timeit, a record with its audit head and a city's fence): the rest is
    making the fields verify never looks at. A property test holds both readings equal; a
    value the engine did not write raises CodeEngineError here as well, if its colour's fields
    are what is wrong.
    """
    try:
        fields: dict[str, Any] = msgpack.unpackb(raw)
        colour = _COLOURS[fields["col"]]
        flat = fields.get("r")
        override = fields.get("o")
        if not flat and not override:
            return colour
        return effective_colour_at(colour, _risk(flat), _override(override), now)
    except _CORRUPT as exc:
        raise CodeEngineError("stored subject record is corrupt") from exc


_CORRUPT = (ValueError, LookupError, TypeError, msgpack.UnpackException)
"""What reading a value the engine did not write raises on the way."""


def _risk(flat: Any) -> Risk:
    """Risk periods as a record stores them, flat (colour, until, colour, until...)."""
    # Most records have no rule period running: no generator for them.
    if not flat:
        return ()
    return tuple((_COLOURS[flat[i]], int(flat[i + 1])) for i in range(0, len(flat), 2))


def _override(stored: Any) -> tuple[Colour, int] | None:
    """An override as a record stores it, [colour, until], or None."""
    return None if not stored else (_COLOURS[stored[0]], int(stored[1]))


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A request to set a subject's colour, valid only if the status is still ``if_version``.

    ``op_id`` names the operation: resending the same change after a timeout is a no-op.
    """

    subject: SubjectId
    if_version: int
    colour: Colour
    op_id: str
    actor: str
    reason: str
    at: int

    def __post_init__(self) -> None:
        if self.if_version < 0:
            raise ValueError("if_version must be >= 0")
        if not 0 < len(self.op_id) <= MAX_OP_ID_CHARS:
            raise ValueError(f"op_id must be 1..{MAX_OP_ID_CHARS} characters")
        if not 0 < len(self.actor) <= MAX_ACTOR_CHARS:
            raise ValueError(f"actor must be 1..{MAX_ACTOR_CHARS} characters")
        if len(self.reason) > MAX_REASON_CHARS:
            raise ValueError(f"reason must be at most {MAX_REASON_CHARS} characters")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of an acknowledged status write."""

    version: int
    """The status version after the write."""
    applied: bool
    """False when this operation id had been applied before (a resend): nothing changed now."""
    colour: Colour
    """The colour this operation set (on a resend, the one it set the first time)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of a subject's audit trail."""

    op: str
    actor: str
    reason: str
    old_colour: Colour | None
    new_colour: Colour
    version: int
    at: int
    op_id: str
    writer: str = ""
    """The endpoint that wrote it (``city/role``), where the city has per-city endpoints."""
    epoch: int = 0
    """The writer's fencing epoch (codeengine.store.fence); 0 without per-city endpoints."""
