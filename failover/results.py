"""The answers of the typed calls, as values: what app backends and terminals read.

Each is built from the JSON the service answered (docs/api.md, the OpenAPI documents); a body
that does not have the documented shape raises :class:`~failover.errors.UnexpectedAnswer`
rather than a ``KeyError`` deep in the caller.
"""

from __future__ import annotations

__all__ = ["Converted", "DisplayedCode", "Licence", "Scan", "Subject", "Verdict"]

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from codeengine.code.model import CityCode, CodeKind, Colour, SubjectId
from failover.errors import PROBLEM_CLASSES, ServiceProblem, UnexpectedAnswer

T = TypeVar("T")


def _field(document: Mapping[str, Any], name: str, kind: type[T]) -> T:
    value = document.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UnexpectedAnswer(200, f"field {name!r} is not {kind.__name__}")
    return value


def _optional(document: Mapping[str, Any], name: str, kind: type[T]) -> T | None:
    return None if document.get(name) is None else _field(document, name, kind)


def _colour(label: object) -> Colour:
    try:
        return Colour[str(label).upper()]
    except KeyError:
        raise UnexpectedAnswer(200, "unknown colour") from None


def _kind(label: object) -> CodeKind:
    try:
        return CodeKind[str(label).upper()]
    except KeyError:
        raise UnexpectedAnswer(200, "unknown code kind") from None


def _object(document: object) -> Mapping[str, Any]:
    if not isinstance(document, dict):
        raise UnexpectedAnswer(200, "the body is not a JSON object")
    return document


@dataclass(frozen=True, slots=True)
class Subject:
    """生码: the subject a resident ID or credit code was generated as."""

    subject: SubjectId
    kind: CodeKind
    city: CityCode
    colour: Colour
    version: int
    created: bool
    """True when this call created it; False when it existed (generate is idempotent)."""

    @classmethod
    def from_json(cls, document: object) -> Subject:
        """The value of the issuer's ``Subject`` answer."""
        d = _object(document)
        return cls(
            SubjectId(_field(d, "subject", str)),
            _kind(d.get("kind")),
            CityCode(_field(d, "city", int)),
            _colour(d.get("colour")),
            _field(d, "version", int),
            _field(d, "created", bool),
        )


@dataclass(frozen=True, slots=True)
class DisplayedCode:
    """亮码: the code to show, and until when it is the one to show."""

    token: str
    colour: Colour
    version: int
    issued_at: int
    expires_at: int
    refresh_at: int
    """Ask again from this Unix second on: the issuer signs a new code past half-life."""
    kind: CodeKind
    city: CityCode

    @classmethod
    def from_json(cls, document: object) -> DisplayedCode:
        """The value of the issuer's ``DisplayedCode`` answer."""
        d = _object(document)
        return cls(
            _field(d, "token", str),
            _colour(d.get("colour")),
            _field(d, "version", int),
            _field(d, "issued_at", int),
            _field(d, "expires_at", int),
            _field(d, "refresh_at", int),
            _kind(d.get("kind")),
            CityCode(_field(d, "city", int)),
        )


@dataclass(frozen=True, slots=True)
class Converted:
    """赋码/转码: the subject's status after the change."""

    subject: SubjectId
    colour: Colour
    """The base colour set."""
    shows: Colour
    """The colour the subject shows: a rule period or an upheld appeal can outweigh the base."""
    version: int
    applied: bool
    """False when this ``op_id`` had been applied already (a resend changes nothing)."""
    op_id: str

    @classmethod
    def from_json(cls, document: object) -> Converted:
        """The value of the issuer's ``Converted`` answer."""
        d = _object(document)
        return cls(
            SubjectId(_field(d, "subject", str)),
            _colour(d.get("colour")),
            _colour(d.get("shows")),
            _field(d, "version", int),
            _field(d, "applied", bool),
            _field(d, "op_id", str),
        )


@dataclass(frozen=True, slots=True)
class Scan:
    """One scanned code as a terminal sends it: an item of a batch verify."""

    code: str
    terminal: str
    city: int
    venue: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``Scan`` body the verifier takes."""
        body: dict[str, Any] = {"code": self.code, "terminal": self.terminal, "city": self.city}
        if self.venue is not None:
            body["venue"] = self.venue
        return body


@dataclass(frozen=True, slots=True)
class Licence:
    """An electronic licence linked to the subject, masked."""

    type: str
    masked: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """扫码/验码: the verifier's verdict on one scanned code.

    Which fields beyond ``valid`` and ``reason`` are set is the terminal profile's (a venue
    gate sees the colour only); the others are None. An invalid code is a verdict, not an
    error of the call: :meth:`check` raises its reason's exception for callers that want one.
    """

    valid: bool
    reason: str
    """``VALID``, or why not (a reason code: ``EXPIRED``, ``REVOKED``, ...)."""
    colour: Colour | None = None
    kind: CodeKind | None = None
    city: CityCode | None = None
    checked_at: int | None = None
    as_of: int | None = None
    """When the colour was true: now online, the code's issue time when ``degraded``."""
    degraded: bool = False
    """The store was unreachable: the verdict rests on the signature alone."""
    licences: tuple[Licence, ...] = ()

    @classmethod
    def from_json(cls, document: object) -> Verdict:
        """The value of the verifier's ``Verdict`` answer."""
        d = _object(document)
        city = _optional(d, "city", int)
        colour, kind = d.get("colour"), d.get("kind")
        licences = d.get("licences") or []
        if not isinstance(licences, list) or not all(isinstance(x, dict) for x in licences):
            raise UnexpectedAnswer(200, "field 'licences' is not a list of objects")
        return cls(
            valid=_field(d, "valid", bool),
            reason=_field(d, "reason", str),
            colour=None if colour is None else _colour(colour),
            kind=None if kind is None else _kind(kind),
            city=None if city is None else CityCode(city),
            checked_at=_optional(d, "checked_at", int),
            as_of=_optional(d, "as_of", int),
            degraded=bool(d.get("degraded", False)),
            licences=tuple(
                Licence(_field(x, "type", str), _field(x, "masked", str)) for x in licences
            ),
        )

    def check(self) -> Verdict:
        """This verdict if the code is valid; otherwise raise its reason's exception (a
        :class:`~failover.errors.CodeRefused` for the verdict reasons) with status 200."""
        if self.valid:
            return self
        cls = PROBLEM_CLASSES.get(self.reason, ServiceProblem)
        extra = {} if self.colour is None else {"colour": self.colour.label}
        raise cls(200, self.reason, "the code was refused", extra=extra)
