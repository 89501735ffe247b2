"""Subject identifiers at the boundary: resident IDs (GB 11643) and credit codes (GB 32100).

Each parser normalises its input, validates it and returns a value object whose ``repr`` and
``str`` are masked. Every refusal is an :class:`InvalidIdentifier` with a stable reason and a
detail that never repeats the input, because the input is personal data and details reach logs.
"""

from __future__ import annotations

__all__ = [
    "USCC",
    "USCC_ALPHABET",
    "Identifier",
    "ResidentId",
    "SubjectKind",
    "make_resident_id",
    "make_uscc",
    "parse_identifier",
    "parse_resident_id",
    "parse_uscc",
    "resident_id_check_char",
    "uscc_check_char",
]

import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from operator import mul
from typing import ClassVar, Literal

from codeengine.code.errors import InvalidIdentifier, Reason

SubjectKind = Literal["person", "enterprise"]
"""Which kind of identifier a subject has: a resident ID or a unified social credit code."""

IDENTIFIER_LENGTH = 18
EARLIEST_BIRTH = date(1900, 1, 1)

# Province-level codes (GB/T 2260) that may open a resident ID. 83 is not in the brief's list but
# is what Taiwan residents' residence permits (台湾居民居住证) carry, as 81 and 82 do for Hong Kong
# and Macao residents; those holders live and work here and need codes like anyone else.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
# A credit code registered by a national-level authority carries 100000 as its region.
_USCC_PROVINCES = _PROVINCES | {10}

_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK = "10X98765432"
_RESIDENT_ZERO_SUM = ord("0") * sum(_RESIDENT_WEIGHTS)
# [0-9] rather than \d, which would let full-width and other Unicode digits through.
_RESIDENT_SHAPE = re.compile(r"[0-9]{17}[0-9X]")

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 characters of a unified social credit code, in check-digit value order."""

_USCC_VALUES = {char: value for value, char in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NP-RTUWXY]{18}")

# Registration authority (char 1) and the institution categories (char 2) it may assign: GB 32100
# names 1, 5, 9 and Y; the other authorities are those of the table the national code centre
# publishes, as widely reproduced. Should a genuine code be refused, extend this table. The
# organisation code in chars 9-17 (GB 11714) is checked against the alphabet only, because not
# every issuing authority keeps its inner check character.
_USCC_CATEGORIES: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),  # 机构编制: organs, public institutions, mass organisations.
    "2": frozenset("19"),  # 外交: resident foreign news agencies.
    "3": frozenset("123459"),  # 司法行政: lawyers, notaries, legal aid, forensics, arbitration.
    "4": frozenset("19"),  # 文化: foreign cultural centres.
    "5": frozenset("1239"),  # 民政: associations, private non-enterprises, foundations.
    "6": frozenset("129"),  # 旅游: representative offices of foreign tourism authorities.
    "7": frozenset("129"),  # 宗教: religious venues and colleges.
    "8": frozenset("19"),  # 工会: trade unions.
    "9": frozenset("123"),  # 工商: enterprises, individual businesses, farmer cooperatives.
    "A": frozenset("19"),  # 中央军委改革和编制办公室: military public institutions.
    "N": frozenset("1239"),  # 农业: rural collective economic organisations.
    "Y": frozenset("1"),  # 其他: not subdivided.
}


@dataclass(frozen=True, slots=True, repr=False)
class ResidentId:
    """A valid, normalised resident ID (居民身份证号码); masked whenever printed."""

    kind: ClassVar[SubjectKind] = "person"
    normalised: str = field(repr=False)
    """The 18 normalised characters: for hashing into a pseudonym only, never to log or store."""

    @property
    def masked(self) -> str:
        """The six region digits followed by asterisks, safe for logs."""
        return self.normalised[:6] + "*" * 12

    def __repr__(self) -> str:
        return f"ResidentId({self.masked!r})"

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True, slots=True, repr=False)
class USCC:
    """A valid, normalised unified social credit code (统一社会信用代码); masked when printed."""

    kind: ClassVar[SubjectKind] = "enterprise"
    normalised: str = field(repr=False)
    """The 18 normalised characters: for hashing into a pseudonym only, never to log or store."""

    @property
    def masked(self) -> str:
        """Authority, category and region (the first eight characters), then asterisks."""
        return self.normalised[:8] + "*" * 10

    def __repr__(self) -> str:
        return f"USCC({self.masked!r})"

    def __str__(self) -> str:
        return self.masked


Identifier = ResidentId | USCC
"""Either kind of validated subject identifier."""


def resident_id_check_char(body17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for 17 ASCII digits (GB 11643)."""
    if len(body17) != len(_RESIDENT_WEIGHTS) or not body17.isascii() or not body17.isdigit():
        raise ValueError("a resident ID body is 17 digits")
    # The digits' bytes less the bytes of 17 zeros, summed by map() in C: bulk imports check
    # one of these per row, and int() per digit cost more than the rest together.
    total = sum(map(mul, body17.encode("ascii"), _RESIDENT_WEIGHTS)) - _RESIDENT_ZERO_SUM
    return _RESIDENT_CHECK[total % 11]


def uscc_check_char(body17: str) -> str:
    """The MOD 31 check character for 17 credit-code characters (GB 32100)."""
    values = (_USCC_VALUES[char] for char in body17)
    total = sum(value * weight for value, weight in zip(values, _USCC_WEIGHTS, strict=True))
    # The standard's "31 - (sum mod 31), where 31 means 0" is exactly -sum mod 31.
    return USCC_ALPHABET[-total % 31]


def _require_length(text: str, what: str) -> None:
    if len(text) != IDENTIFIER_LENGTH:
        detail = f"{what} must have {IDENTIFIER_LENGTH} characters, not {len(text)}"
        raise InvalidIdentifier(detail, reason=Reason.BAD_LENGTH)


@lru_cache(maxsize=65_536)
def _birth_date(digits8: str) -> date | None:
    # Cached (every day since 1900 fits): a bulk import checks one per row, and a date is no
    # personal data on its own.
    try:
        return date(int(digits8[:4]), int(digits8[4:6]), int(digits8[6:]))
    except ValueError:
        return None


def parse_resident_id(text: str, today: date) -> ResidentId:
    """Validate a resident ID as of ``today``; strips whitespace and accepts a lower-case x."""
    candidate = text.strip()
    _require_length(candidate, "a resident ID")
    if candidate[-1] == "x":
        candidate = candidate[:-1] + "X"
    if not _RESIDENT_SHAPE.fullmatch(candidate):
        detail = "a resident ID is 17 ASCII digits and a check digit or X"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHARACTERS)
    if int(candidate[:2]) not in _PROVINCES:
        detail = "a resident ID must begin with a province-level region code"
        raise InvalidIdentifier(detail, reason=Reason.BAD_REGION)
    born = _birth_date(candidate[6:14])
    if born is None or not EARLIEST_BIRTH <= born <= today:
        detail = "a resident ID's birth date must be a real date from 1900-01-01 to today"
        raise InvalidIdentifier(detail, reason=Reason.BAD_BIRTH_DATE)
    if resident_id_check_char(candidate[:17]) != candidate[17]:
        detail = "the resident ID's check digit does not match"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHECK_DIGIT)
    return ResidentId(candidate)


def parse_uscc(text: str) -> USCC:
    """Validate a unified social credit code; strips whitespace and upper-cases it."""
    candidate = text.strip()
    _require_length(candidate, "a credit code")
    # Upper-case only ASCII: str.upper() turns some letters into two ("ß" into "SS").
    candidate = candidate.upper() if candidate.isascii() else ""
    if not _USCC_SHAPE.fullmatch(candidate):
        detail = "a credit code uses only digits and capital letters other than I, O, S, V, Z"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHARACTERS)
    if candidate[1] not in _USCC_CATEGORIES.get(candidate[0], ()):
        detail = "a credit code must begin with a registration authority and category of GB 32100"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHARACTERS)
    if not candidate[2:8].isdigit():
        detail = "a credit code's region, characters 3 to 8, must be digits"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHARACTERS)
    if int(candidate[2:4]) not in _USCC_PROVINCES:
        detail = "a credit code's region must begin with a province-level code"
        raise InvalidIdentifier(detail, reason=Reason.BAD_REGION)
    if uscc_check_char(candidate[:17]) != candidate[17]:
        detail = "the credit code's check character does not match"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHECK_DIGIT)
    return USCC(candidate)


def parse_identifier(kind: SubjectKind, text: str, today: date) -> Identifier:
    """Validate a person's resident ID or an enterprise's credit code, by ``kind``."""
    if kind == "person":
        return parse_resident_id(text, today)
    if kind == "enterprise":
        return parse_uscc(text)
    # The kind is a programming choice, not user input, so a bad one is not an InvalidIdentifier.
    raise ValueError(f"unknown subject kind {kind!r}")


def make_resident_id(region: str, birth: date, seq: int) -> str:
    """Synthetic data: a resident ID with a correct check digit, for tests and load generators.

    Region and birth date are not validated, so that tests can build IDs that fail only there.
    A made-up ID may be some real person's: never print them beside real names.
    """
    if len(region) != 6 or not region.isascii() or not region.isdigit():
        raise ValueError("region must be six ASCII digits")
    if not 0 <= seq <= 999:
        raise ValueError("seq must be from 0 to 999")
    body = f"{region}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq:03d}"
    return body + resident_id_check_char(body)


def make_uscc(prefix17: str) -> str:
    """Synthetic data: ``prefix17`` completed with its check character, for tests and loads.

    Only the alphabet is checked, so that tests can build codes that fail later checks.
    """
    if len(prefix17) != 17 or any(char not in _USCC_VALUES for char in prefix17):
        raise ValueError(f"prefix17 must be 17 characters of {USCC_ALPHABET}")
    return prefix17 + uscc_check_char(prefix17)
