"""Pseudonyms: the keyed hashes by which the engine knows subjects and their aliases.

A pseudonym is the first 12 bytes of HMAC-SHA256 (HMAC-SM3 in the national profile, whose
``mac`` the caller passes) under a secret pepper, written as 16 unpadded URL-safe base64
characters. The hashed message starts with a domain ("person", "enterprise",
"alias") and a NUL, so that no two kinds of input can ever share a pseudonym.
"""

from __future__ import annotations

__all__ = [
    "MAX_ALIAS_LENGTH",
    "MIN_PEPPER_BYTES",
    "SUBJECT_ID_BYTES",
    "SUBJECT_ID_LENGTH",
    "AliasHash",
    "alias_hash",
    "check_subject_id",
    "licence_hash",
    "pseudonym",
    "subject_bytes",
    "subject_id",
]

import base64
import re
from functools import lru_cache
from typing import NewType

from codeengine.code.errors import InvalidIdentifier, Reason
from codeengine.code.identifiers import Identifier
from codeengine.code.macs import MACAlgorithm, PreparedMAC, prepare
from codeengine.code.model import SubjectId
from codeengine.code.secret import Secret

AliasHash = NewType("AliasHash", str)
"""An alias's keyed hash: 16 URL-safe base64 characters, like a subject pseudonym."""

MIN_PEPPER_BYTES = 32
SUBJECT_ID_BYTES = 12
SUBJECT_ID_LENGTH = 16
MAX_ALIAS_LENGTH = 256

_SUBJECT_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{16}")
_ALIAS_TYPE_SHAPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_LICENCE_TYPE_SHAPE = re.compile(r"[a-z0-9_]{1,32}")
_INTERNATIONAL = MACAlgorithm.HMAC_SHA256


@lru_cache(maxsize=8)
def _keyed(pepper: bytes, mac: MACAlgorithm) -> PreparedMAC:
    """The pepper prepared for many MACs (bulk imports make one per row).

    Eight entries cover a rotation in either profile.
    """
    return prepare(mac, pepper)


def _digest12(pepper: Secret, message: bytes, mac: MACAlgorithm) -> bytes:
    key = pepper.reveal()
    if len(key) < MIN_PEPPER_BYTES:
        raise ValueError(f"the pepper must have at least {MIN_PEPPER_BYTES} bytes")
    return _keyed(key, mac).digest(message)[:SUBJECT_ID_BYTES]


def _encode(raw12: bytes) -> str:
    return base64.urlsafe_b64encode(raw12).decode("ascii")


def pseudonym(
    identifier: Identifier, pepper: Secret, mac: MACAlgorithm = _INTERNATIONAL
) -> SubjectId:
    """The subject's pseudonym: its domain and normalised identifier under the pepper, keyed
    with the profile's ``mac``."""
    message = identifier.kind.encode("ascii") + b"\x00" + identifier.normalised.encode("ascii")
    return SubjectId(_encode(_digest12(pepper, message, mac)))


def alias_hash(
    alias_type: str, value: str, pepper: Secret, mac: MACAlgorithm = _INTERNATIONAL
) -> AliasHash:
    """An alias's keyed hash (卡码融合); the caller normalises ``value`` for its alias type.

    ``alias_type`` is a short lower-case name chosen by the engine, such as ``"ssc"``; ``value``
    is the credential itself, refused when empty or longer than ``MAX_ALIAS_LENGTH``.
    """
    if not _ALIAS_TYPE_SHAPE.fullmatch(alias_type):
        # A NUL or other byte here could make two (type, value) pairs hash the same message.
        raise ValueError("alias_type must be a short lower-case ASCII name")
    if not 0 < len(value) <= MAX_ALIAS_LENGTH:
        detail = f"an alias must have 1 to {MAX_ALIAS_LENGTH} characters"
        raise InvalidIdentifier(detail, reason=Reason.BAD_LENGTH)
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate. The codec error quotes part of the value, so it is not chained.
        detail = "an alias must be valid Unicode text"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHARACTERS) from None
    message = b"alias\x00" + alias_type.encode("ascii") + b"\x00" + encoded
    return AliasHash(_encode(_digest12(pepper, message, mac)))


def licence_hash(
    licence_type: str, number: str, pepper: Secret, mac: MACAlgorithm = _INTERNATIONAL
) -> str:
    """A linked electronic licence's keyed hash; domain-separated from subjects and aliases.

    ``licence_type`` is a short lower-case name; ``number`` is the licence's ASCII number.
    """
    if not _LICENCE_TYPE_SHAPE.fullmatch(licence_type) or not number.isascii():
        raise ValueError("a licence is a short lower-case type and an ASCII number")
    message = b"licence\x00" + licence_type.encode("ascii") + b"\x00" + number.encode("ascii")
    return _encode(_digest12(pepper, message, mac))


def check_subject_id(text: str) -> SubjectId:
    """``text`` if ``subject_id`` could have made it, else InvalidIdentifier.

    16 characters of the URL-safe alphabet always decode to 12 bytes (96 bits, no padding),
    so a path that only names a subject needs no decoding.
    """
    if len(text) != SUBJECT_ID_LENGTH:
        detail = f"a subject pseudonym has {SUBJECT_ID_LENGTH} characters, not {len(text)}"
        raise InvalidIdentifier(detail, reason=Reason.BAD_LENGTH)
    # Checked before any decoding because the decoder silently drops characters outside
    # its alphabet.
    if not _SUBJECT_ID_SHAPE.fullmatch(text):
        detail = "a subject pseudonym uses only URL-safe base64 characters"
        raise InvalidIdentifier(detail, reason=Reason.BAD_CHARACTERS)
    return SubjectId(text)


def subject_bytes(subject: SubjectId) -> bytes:
    """The 12 bytes of a pseudonym; refuses anything that ``subject_id`` could not have made."""
    return base64.urlsafe_b64decode(check_subject_id(subject))


def subject_id(raw12: bytes) -> SubjectId:
    """The pseudonym written as text, from its 12 bytes."""
    if len(raw12) != SUBJECT_ID_BYTES:
        detail = f"a subject pseudonym has {SUBJECT_ID_BYTES} bytes, not {len(raw12)}"
        raise InvalidIdentifier(detail, reason=Reason.BAD_LENGTH)
    return SubjectId(_encode(raw12))
