"""Strict base45: RFC 9285's examples, round trips, and agreement with an independent decoder."""

from __future__ import annotations

import base45 as reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.base45 import ALPHABET, b45decode, b45encode
from codeengine.code.errors import MalformedCode

SOME = settings(max_examples=400, deadline=None, database=None)
# Characters beyond the alphabet that a scanner or a person could produce.
OTHER_CHARS = "az\n\r\t\x00=_~#é中\U0001f600"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
    ],
    ids=["AB", "Hello", "base-45", "ietf"],
)
def test_rfc9285_examples(data: bytes, text: str) -> None:
    assert b45encode(data) == text
    assert b45decode(text) == data


@SOME
@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


def _reference(text: str) -> bytes | None:
    try:
        decoded: bytes = reference.b45decode(text)
    except ValueError:
        return None
    return decoded


def _ours(text: str) -> bytes | None:
    try:
        return b45decode(text)
    except MalformedCode:
        return None


def _agree(text: str) -> None:
    if text.endswith("\n"):
        # The reference strips trailing newlines, so it reads a second spelling of the same
        # bytes; a signed code has exactly one, so these are refused here.
        assert _ours(text) is None
    else:
        assert _ours(text) == _reference(text)


@SOME
@given(st.text(alphabet=ALPHABET + OTHER_CHARS, max_size=300))
def test_agrees_with_the_reference_on_any_text(text: str) -> None:
    _agree(text)


@SOME
@given(
    data=st.binary(min_size=1, max_size=200),
    position=st.integers(0),
    replacement=st.sampled_from(ALPHABET + OTHER_CHARS),
    cut=st.integers(0, 2),
)
def test_agrees_with_the_reference_on_altered_encodings(
    data: bytes, position: int, replacement: str, cut: int
) -> None:
    """The texts near valid ones, where lanes and the final pair are most likely to go wrong."""
    text = b45encode(data)
    position %= len(text)
    altered = text[:position] + replacement + text[position + 1 :]
    for candidate in (altered, altered[: len(altered) - cut], text[: len(text) - cut]):
        _agree(candidate)


@pytest.mark.parametrize(
    ("text", "data"),
    [("FGW", b"\xff\xff"), ("000" * 40 + "FGW", bytes(80) + b"\xff\xff"), ("000U5", b"\0\0\xff")],
    ids=["triplet-65535", "last-of-many-65535", "final-pair-255"],
)
def test_largest_values_are_accepted(text: str, data: bytes) -> None:
    assert b45decode(text) == data


@pytest.mark.parametrize(
    "text",
    ["GGW", ":::", "000" * 40 + "GGW", "GGW" + "000" * 40, "V5", "000V5", "0", "0" * 61],
    ids=["triplet-65536", "triplet-max", "last-of-many", "first-of-many", "final-pair-256",
         "final-pair-after-triplets", "one-char", "leftover-char"],
)  # fmt: skip
def test_overflowing_or_leftover_text_is_refused(text: str) -> None:
    with pytest.raises(MalformedCode):
        b45decode(text)
