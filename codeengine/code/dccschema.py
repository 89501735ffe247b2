"""The EU DCC JSON schema (version 1.3.3), checked structurally without a schema library.

The terminal SDK stays light, so it carries no JSON Schema engine; the DCC schema is small and
fixed, and its assertions are written out here: the required members, exactly one group (``v``,
``t`` or ``r``) of exactly one entry, each entry's required members and their types, the name
and date patterns and the length limits. Value-set membership (vaccine codes and the like) and
the ``format`` annotations are not assertions of the schema and are not checked, as in the
schema's own validators.
"""

from __future__ import annotations

__all__ = ["check_schema"]

import re
from collections.abc import Mapping
from typing import Final

from codeengine.code.errors import MalformedCode

_VERSION: Final = re.compile(r"\d+.\d+.\d+")
_DOB: Final = re.compile(r"((19|20)\d\d(-\d\d){0,2}){0,1}")
_STANDARD_NAME: Final = re.compile(r"[A-Z<]*")
_COUNTRY: Final = re.compile(r"[A-Z]{1,10}")
_MAX_TEXT: Final = 80
_NAME_MEMBERS: Final = ("fn", "fnt", "gn", "gnt")
_STANDARD_MEMBERS: Final = ("fnt", "gnt")

# Per group: each entry's required members, and the members that are positive integers; every
# other member named here is a string.
_REQUIRED: Final = {
    "v": ("tg", "vp", "mp", "ma", "dn", "sd", "dt", "co", "is", "ci"),
    "t": ("tg", "tt", "sc", "tr", "co", "is", "ci"),
    "r": ("tg", "fr", "co", "is", "df", "du", "ci"),
}
_OPTIONAL_TEXT: Final = {"v": (), "t": ("nm", "ma", "tc"), "r": ()}
_POSITIVE: Final = frozenset(("dn", "sd"))
_LIMITED: Final = frozenset(("is", "ci", "nm", "tc"))


def _fail(where: str) -> MalformedCode:
    return MalformedCode(f"DCC schema: {where}")


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{where} must be a string")
    return value


def _check_name(name: object) -> None:
    if not isinstance(name, Mapping):
        raise _fail("nam must be an object")
    if "fnt" not in name and "gnt" not in name:
        raise _fail("nam needs fnt or gnt")
    for member in _NAME_MEMBERS:
        if member in name:
            value = _text(name[member], f"nam.{member}")
            if len(value) > _MAX_TEXT:
                raise _fail(f"nam.{member} is longer than {_MAX_TEXT}")
            if member in _STANDARD_MEMBERS and not _STANDARD_NAME.fullmatch(value):
                raise _fail(f"nam.{member} must be A-Z and <")


def _check_entry(group: str, entry: object) -> None:
    if not isinstance(entry, Mapping):
        raise _fail(f"{group}[0] must be an object")
    for member in _REQUIRED[group]:
        if member not in entry:
            raise _fail(f"{group}[0].{member} is required")
    for member in (*_REQUIRED[group], *_OPTIONAL_TEXT[group]):
        if member not in entry:
            continue
        value = entry[member]
        where = f"{group}[0].{member}"
        if member in _POSITIVE:
            if type(value) is not int or value < 1:
                raise _fail(f"{where} must be a positive integer")
            continue
        text = _text(value, where)
        if member in _LIMITED and len(text) > _MAX_TEXT:
            raise _fail(f"{where} is longer than {_MAX_TEXT}")
        if member == "co" and not _COUNTRY.search(text):
            raise _fail(f"{where} must be a country code")


def check_schema(certificate: Mapping[str, object]) -> None:
    """Refuse, with MalformedCode, a certificate that does not adhere to the DCC schema."""
    for member in ("ver", "nam", "dob"):
        if member not in certificate:
            raise _fail(f"{member} is required")
    if not _VERSION.fullmatch(_text(certificate["ver"], "ver")):
        raise _fail("ver must be a semantic version")
    _check_name(certificate["nam"])
    if not _DOB.fullmatch(_text(certificate["dob"], "dob")):
        raise _fail("dob must be a date from 1900 to 2099, or empty")
    groups = [group for group in _REQUIRED if group in certificate]
    if len(groups) != 1:
        raise _fail("exactly one of v, t and r")
    entries = certificate[groups[0]]
    if not isinstance(entries, list) or len(entries) != 1:
        raise _fail(f"{groups[0]} must hold exactly one entry")
    _check_entry(groups[0], entries[0])
