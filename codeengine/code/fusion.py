"""Card-code fusion (卡码融合): alias credentials that resolve to a subject, and terminal profiles.

``configs/fusion.toml`` names the alias types (social-security card, electronic SSC, medical
voucher, transit code, city code, electronic ID), the prefix a reader types before each, the
format of each where one is known, and what each kind of terminal is shown on a scan. Alias
values are never stored: only their keyed hash (``pseudonym.alias_hash``) and a masked form.
"""

from __future__ import annotations

__all__ = [
    "FUSION_FILE",
    "AliasType",
    "Fusion",
    "FusionError",
    "TerminalProfile",
    "listed",
    "load_fusion",
    "mask",
]

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from codeengine.code.errors import InvalidIdentifier, Reason
from codeengine.code.identifiers import parse_resident_id
from codeengine.code.macs import MACAlgorithm
from codeengine.code.pseudonym import MAX_ALIAS_LENGTH, AliasHash, alias_hash
from codeengine.code.secret import Secret
from codeengine.code.shipped import shipped

FUSION_FILE = shipped("fusion.toml")
"""The shipped fusion file (``configs/fusion.toml``); ``codes.fusion_file`` names one's own."""
VERDICT_FIELDS = (
    "colour", "kind", "city", "checked_at", "as_of", "degraded", "format", "credential",
)  # fmt: skip
"""The verify answer's fields a terminal profile may show: the engine's verdict, and for other
issuers' credentials (EU DCC, SMART Health Cards) their format and what they are."""
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class FusionError(ValueError):
    """The fusion file is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class AliasType:
    """One kind of credential that can stand for a subject's code."""

    name: str
    prefix: str
    pattern: re.Pattern[str] | None = None
    resident_id: bool = False

    def normalise(self, value: str, today: date) -> str:
        """The credential in its one spelling, or InvalidIdentifier (never echoing it)."""
        text = value.strip()
        if not 0 < len(text) <= MAX_ALIAS_LENGTH:
            raise InvalidIdentifier(
                f"a {self.name} credential must have 1 to {MAX_ALIAS_LENGTH} characters",
                reason=Reason.BAD_LENGTH,
            )
        if self.resident_id:
            return parse_resident_id(text, today).normalised
        if self.pattern is not None and not self.pattern.fullmatch(text):
            raise InvalidIdentifier(
                f"not the format of a {self.name} credential", reason=Reason.BAD_CHARACTERS
            )
        return text

    def hash(
        self, value: str, pepper: Secret, today: date, mac: MACAlgorithm = MACAlgorithm.HMAC_SHA256
    ) -> AliasHash:
        """The keyed hash the store knows the credential by (``mac``: the profile's)."""
        return alias_hash(self.name, self.normalise(value, today), pepper, mac)


@dataclass(frozen=True, slots=True)
class TerminalProfile:
    """What one kind of terminal is shown on a scan."""

    name: str
    fields: frozenset[str]
    licences: bool


@dataclass(frozen=True, slots=True)
class Fusion:
    """Alias types by name and terminal profiles by name."""

    version: int
    aliases: dict[str, AliasType]
    terminals: dict[str, TerminalProfile]

    def resolve_prefix(self, text: str) -> tuple[AliasType, str] | None:
        """The alias type whose prefix ``text`` starts with, and the credential after it."""
        for alias in self.aliases.values():
            if text.startswith(alias.prefix):
                return alias, text[len(alias.prefix) :]
        return None

    def profile(self, terminal_type: str | None) -> TerminalProfile:
        """A terminal type's profile; ``default`` for a client that names none."""
        return self.terminals[terminal_type or "default"]


def _alias(name: str, spec: Any) -> AliasType:
    where = f"aliases.{name}"
    if not _TYPE_NAME.fullmatch(name):
        raise FusionError(f"{where}: a type is a short lower-case name")
    if not isinstance(spec, dict) or not set(spec) <= {"prefix", "pattern", "format"}:
        raise FusionError(f"{where} takes prefix, pattern and format only")
    prefix = spec.get("prefix")
    if not isinstance(prefix, str) or not 2 <= len(prefix) <= 16 or prefix.startswith("CE1"):
        raise FusionError(f"{where}.prefix must be 2 to 16 characters and not a code prefix")
    if "format" in spec and spec["format"] != "resident_id":
        raise FusionError(f"{where}.format can only be resident_id")
    pattern = None
    if "pattern" in spec:
        try:
            pattern = re.compile(str(spec["pattern"]))
        except re.error as exc:
            raise FusionError(f"{where}.pattern: {exc}") from None
    return AliasType(name, prefix, pattern, spec.get("format") == "resident_id")


def _terminal(name: str, spec: Any) -> TerminalProfile:
    where = f"terminals.{name}"
    if not isinstance(spec, dict) or set(spec) != {"fields", "licences"}:
        raise FusionError(f"{where} takes fields and licences")
    fields = spec["fields"]
    if not isinstance(fields, list) or not set(fields) <= set(VERDICT_FIELDS):
        raise FusionError(f"{where}.fields must be drawn from {', '.join(VERDICT_FIELDS)}")
    if not isinstance(spec["licences"], bool):
        raise FusionError(f"{where}.licences must be true or false")
    return TerminalProfile(name, frozenset(fields), spec["licences"])


def parse_fusion(document: dict[str, Any]) -> Fusion:
    """A Fusion from the decoded TOML; FusionError names the first problem."""
    version = document.get("version")
    if type(version) is not int or version < 1:
        raise FusionError("version must be a positive integer")
    aliases = {n: _alias(n, s) for n, s in (document.get("aliases") or {}).items()}
    prefixes = [a.prefix for a in aliases.values()]
    for prefix in prefixes:
        if any(other != prefix and other.startswith(prefix) for other in prefixes):
            raise FusionError(
                f"prefix {prefix!r} is the start of another: a scan would be ambiguous"
            )
    terminals = {n: _terminal(n, s) for n, s in (document.get("terminals") or {}).items()}
    if "default" not in terminals:
        raise FusionError("terminals.default is required")
    return Fusion(version, aliases, terminals)


def load_fusion(path: Path = FUSION_FILE) -> Fusion:
    """Read and check the fusion file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FusionError(f"cannot read {path.name}: {exc}") from None
    return parse_fusion(document)


def listed(entry: str) -> dict[str, str]:
    """A stored ``type:masked`` entry (an alias or a licence) as the API shows it."""
    kind, _, masked = entry.partition(":")
    return {"type": kind, "masked": masked}


def mask(value: str) -> str:
    """What a list shows of a credential: its length in asterisks but the last two characters."""
    return "*" * max(len(value) - 2, 0) + value[-2:]
