"""亮码 policy: when a token is handed out again, when it is replaced, what verify accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.display import (
    DisplayedCode,
    body_accepts_at,
    claims_for_at,
    is_current_at,
    refresh_at,
    successor_at,
    token_digest,
)
from codeengine.code.errors import CodeEngineError
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.status import SubjectRecord

NOW = 1_800_000_000
TTL = 120
SUBJECT = SubjectId("AAECAwQFBgcICQoL")


def record(colour: Colour = Colour.GREEN, version: int = 1) -> SubjectRecord:
    return SubjectRecord(SUBJECT, CodeKind.HEALTH, 320100, colour, version, NOW)


def shown_at(iat: int, colour: Colour = Colour.GREEN, version: int = 1) -> DisplayedCode:
    claims = claims_for_at(record(colour, version), iat, TTL, b"\x01" * 6)
    return successor_at(None, f"CE1:T{iat}", claims, iat)


def test_refresh_at_half_life() -> None:
    assert refresh_at(NOW, 120) == NOW + 60
    assert refresh_at(NOW, 121) == NOW + 60


@pytest.mark.parametrize(
    ("now", "colour", "version", "current"),
    [
        (NOW, Colour.GREEN, 1, True),
        (NOW + 59, Colour.GREEN, 1, True),
        (NOW + 60, Colour.GREEN, 1, False),
        (NOW + 10, Colour.RED, 2, False),
        (NOW + 10, Colour.GREEN, 2, False),
        (NOW - 1, Colour.GREEN, 1, False),
    ],
    ids=[
        "fresh",
        "before-half-life",
        "at-half-life",
        "colour-changed",
        "version-changed",
        "future",
    ],
)
def test_is_current_at(now: int, colour: Colour, version: int, current: bool) -> None:
    assert is_current_at(shown_at(NOW), record(colour, version), now, TTL) is current
    assert is_current_at(None, record(), NOW, TTL) is False


def test_a_token_of_another_key_is_not_current() -> None:
    claims = claims_for_at(record(), NOW, TTL, b"\x05" * 6)
    shown = successor_at(None, "CE1:K", claims, NOW, b"old-kid!")
    assert is_current_at(shown, record(), NOW + 1, TTL, b"old-kid!")
    assert not is_current_at(shown, record(), NOW + 1, TTL, b"new-kid!"), "rotated: re-sign"
    assert DisplayedCode.unpack(shown.pack()).kid == b"old-kid!"


def test_claims_carry_status_and_window() -> None:
    claims = claims_for_at(record(Colour.YELLOW, 7), NOW, TTL, b"\x02" * 6)
    assert (claims.iat, claims.exp, claims.version, claims.colour) == (
        NOW,
        NOW + TTL,
        7,
        Colour.YELLOW,
    )
    assert claims.subject_id == SUBJECT
    with pytest.raises(ValueError, match="6 random bytes"):
        claims_for_at(record(), NOW, TTL, b"\x02" * 5)


def test_successor_keeps_the_previous_token_until_it_expires() -> None:
    first = shown_at(NOW)
    claims = claims_for_at(record(), NOW + 60, TTL, b"\x03" * 6)
    second = successor_at(first, "CE1:SECOND", claims, NOW + 60)
    assert (second.cti, second.previous_digest, second.previous_exp) == (
        b"\x03" * 6,
        token_digest(first.token),
        first.exp,
    )
    assert second.accepts_at(first.token, first.exp)
    assert not second.accepts_at(first.token, first.exp + 1)
    assert second.accepts_at("CE1:SECOND", NOW + 60)
    assert not second.accepts_at("CE1:SECONE", NOW + 60), "the whole text must match"
    assert not second.accepts_at(first.token + "X", NOW + 60)
    late = successor_at(first, "CE1:LATE", claims, first.exp + 1)
    assert late.previous_digest == b"", "an expired token is not carried as previous"


def test_pack_round_trip_and_corrupt_values() -> None:
    first = shown_at(NOW)
    second = successor_at(first, "CE1:X", claims_for_at(record(), NOW + 60, TTL, b"\x04" * 6), NOW)
    for value in (first, second):
        assert DisplayedCode.unpack(value.pack()) == value
    for raw in (b"", b"\x81\xa1t\x01", b"\xc1"):
        with pytest.raises(CodeEngineError):
            DisplayedCode.unpack(raw)


_TOKEN_TEXT = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=400)


@settings(max_examples=400, deadline=None)
@given(
    current=_TOKEN_TEXT,
    previous=st.none() | _TOKEN_TEXT,
    scanned=_TOKEN_TEXT,
    edit=st.sampled_from(["none", "current", "previous", "prefix", "longer", "changed"]),
    late=st.integers(min_value=-5, max_value=5),
    kid=st.binary(max_size=8),
)
def test_body_accepts_at_answers_as_the_unpacked_token(
    current: str, previous: str | None, scanned: str, edit: str, late: int, kid: bytes
) -> None:
    """The verifier's reading of a stored body agrees with unpacking it, for every token
    length (msgpack's three string heads) and near misses of the current token."""
    token = "CE1:" + current
    digest, previous_exp = (b"", 0) if previous is None else (token_digest("CE1:" + previous), NOW)
    shown = DisplayedCode(token, b"\x01" * 6, NOW - 60, NOW + 60, Colour.GREEN, 7, digest,
                          previous_exp, kid)  # fmt: skip
    text = {
        "none": "CE1:" + scanned,
        "current": token,
        "previous": "CE1:" + (previous or ""),
        "prefix": token[:-1],
        "longer": token + "A",
        "changed": token[:-1] + ("B" if token.endswith("A") else "A"),
    }[edit]
    now = NOW + late
    body = shown.pack()
    assert body_accepts_at(body, text, now) == shown.accepts_at(text, now)
    if edit == "current":
        assert body_accepts_at(body, text, now)


def test_body_accepts_at_refuses_a_body_that_is_not_a_token() -> None:
    with pytest.raises(CodeEngineError):
        body_accepts_at(b"\x91\x01", "CE1:X", NOW)
