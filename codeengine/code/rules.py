"""Conversion rules (赋码/转码规则): risk record types to colours and periods. Pure but for load.

``configs/rules.toml`` is the versioned source. A record of a type gives the subject the type's
colour until its event time plus the type's duration; ``clears`` ends other colours' periods
early. The colour a subject shows is worked out when it is read (``effective_colour_at``), so a
period ends at its instant exactly, whether or not anything runs then.
"""

from __future__ import annotations

__all__ = [
    "RULES_FILE",
    "Risk",
    "Rule",
    "RuleSet",
    "RulesError",
    "effective_colour_at",
    "load_rules",
    "merge_risk_at",
    "parse_rules",
]

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeengine.code.model import Colour
from codeengine.code.shipped import shipped

RULES_FILE = shipped("rules.toml")
"""The shipped rules (``configs/rules.toml``); ``codes.rules_file`` names one's own."""
MAX_DURATION_DAYS = 366
_BY_LABEL = {colour.label: colour for colour in Colour}
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

Risk = tuple[tuple[Colour, int], ...]
"""Risk periods: (colour, until) pairs, one per colour, ordered by colour; ``until`` exclusive."""


class RulesError(ValueError):
    """The rules file is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    """What one record type does."""

    record_type: str
    colour: Colour
    duration_s: int
    clears: frozenset[Colour] = frozenset()


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A version of the rules: record types, and the colour of a subject with no data."""

    version: int
    no_data: Colour
    rules: Mapping[str, Rule]

    def rule(self, record_type: str) -> Rule | None:
        """The rule for a record type, or None if the type is unknown."""
        return self.rules.get(record_type)


def _colour(value: Any, where: str, allowed: Iterable[Colour]) -> Colour:
    colour = _BY_LABEL.get(value) if isinstance(value, str) else None
    if colour is None or colour not in set(allowed):
        names = ", ".join(c.label for c in allowed)
        raise RulesError(f"{where} must be one of {names}")
    return colour


def _rule(name: str, spec: Any) -> Rule:
    where = f"types.{name}"
    if not set(name) <= _TYPE_CHARS or not name:
        raise RulesError(f"{where}: a record type is lower-case letters, digits and _")
    if not isinstance(spec, dict) or not set(spec) <= {"colour", "duration_days", "clears"}:
        raise RulesError(f"{where} takes colour, duration_days and clears only")
    colour = _colour(
        spec.get("colour"), f"{where}.colour", (Colour.GREEN, Colour.YELLOW, Colour.RED)
    )
    days = spec.get("duration_days")
    if type(days) is not int or not 0 <= days <= MAX_DURATION_DAYS:
        raise RulesError(f"{where}.duration_days must be an integer 0..{MAX_DURATION_DAYS}")
    if colour is not Colour.GREEN and days == 0:
        raise RulesError(f"{where}: a {colour.label} rule needs a duration")
    clears = spec.get("clears", [])
    if not isinstance(clears, list):
        raise RulesError(f"{where}.clears must be a list of colours")
    cleared = frozenset(_colour(c, f"{where}.clears", (Colour.YELLOW, Colour.RED)) for c in clears)
    return Rule(name, colour, days * 86400, cleared)


def parse_rules(document: Mapping[str, Any]) -> RuleSet:
    """A RuleSet from the decoded TOML; RulesError names the first problem."""
    if set(document) - {"version", "policy", "types"}:
        raise RulesError("the rules file takes version, policy and types only")
    version = document.get("version")
    if type(version) is not int or version < 1:
        raise RulesError("version must be a positive integer")
    policy = document.get("policy", {})
    if not isinstance(policy, dict) or set(policy) - {"no_data"}:
        raise RulesError("policy takes no_data only")
    no_data = _colour(policy.get("no_data", "green"), "policy.no_data", (Colour.GREEN, Colour.GREY))
    types = document.get("types")
    if not isinstance(types, dict) or not types:
        raise RulesError("types must define at least one record type")
    return RuleSet(version, no_data, {name: _rule(name, spec) for name, spec in types.items()})


def load_rules(path: Path = RULES_FILE) -> RuleSet:
    """Read and check the rules file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"cannot read {path.name}: {exc}") from None
    return parse_rules(document)


def merge_risk_at(risk: Risk, rule: Rule, event_at: int, now: int) -> Risk:
    """The risk periods after applying one record; periods ended by ``now`` are dropped.

    Applying the same record twice gives the same result, which makes imports idempotent.
    This is the reference the store's import script follows
    (``codeengine/store/lua/apply_risk.lua``).
    """
    periods = {colour: until for colour, until in risk if until > now}
    for colour in rule.clears:
        periods.pop(colour, None)
    until = event_at + rule.duration_s
    if rule.colour is not Colour.GREEN and until > now:
        periods[rule.colour] = max(periods.get(rule.colour, 0), until)
    return tuple(sorted(periods.items()))


def effective_colour_at(
    base: Colour, risk: Risk, override: tuple[Colour, int] | None, now: int
) -> Colour:
    """The colour a subject shows at ``now``.

    An upheld appeal's override wins while it lasts; otherwise the strongest of the base colour
    (set by ops, or the no-data policy) and every risk period still running (red > yellow >
    green > grey).
    """
    if override is not None and now < override[1]:
        return override[0]
    colour = base
    for risk_colour, until in risk:
        if now < until and risk_colour > colour:
            colour = risk_colour
    return colour
