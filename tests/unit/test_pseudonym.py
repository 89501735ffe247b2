"""Pseudonyms and alias hashes: known answers, domain separation, peppers, strict decoding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeengine.code.errors import InvalidIdentifier, Reason
from codeengine.code.identifiers import USCC, ResidentId
from codeengine.code.model import SubjectId
from codeengine.code.pseudonym import (
    MAX_ALIAS_LENGTH,
    alias_hash,
    pseudonym,
    subject_bytes,
    subject_id,
)
from codeengine.code.secret import Secret

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "identifiers.json"
_CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="ascii"))["cases"]
# No example database: unit tests write no files.
PROPERTY = settings(database=None, deadline=None, max_examples=150)

PEPPER = Secret(bytes(range(32)))
OTHER_PEPPER = Secret(bytes(range(1, 33)))
PERSON = ResidentId("11010519491231002X")
ENTERPRISE = USCC("91350100M000100Y43")
URL_SAFE = string.ascii_letters + string.digits + "-_"


def cases(op: str) -> list[Any]:
    """The vector cases of one operation, with readable ids."""
    chosen = [c for c in _CASES if c["op"] == op]
    assert chosen, f"no {op} vectors"
    return [pytest.param(c, id=c["id"]) for c in chosen]


@pytest.mark.parametrize("case", cases("pseudonym"))
def test_pseudonym_vectors(case: dict[str, Any]) -> None:
    kind = ResidentId if case["kind"] == "person" else USCC
    pepper = Secret(bytes.fromhex(case["pepper_hex"]))
    assert pseudonym(kind(case["normalised"]), pepper) == case["expected"]


@pytest.mark.parametrize("case", cases("alias_hash"))
def test_alias_hash_vectors(case: dict[str, Any]) -> None:
    pepper = Secret(bytes.fromhex(case["pepper_hex"]))
    assert alias_hash(case["alias_type"], case["value"], pepper) == case["expected"]


def test_pseudonym_is_deterministic_fixed_length_and_url_safe() -> None:
    first = pseudonym(PERSON, PEPPER)
    assert first == pseudonym(ResidentId("11010519491231002X"), Secret(bytes(range(32))))
    assert len(first) == 16
    assert set(first) <= set(URL_SAFE)


def test_kinds_are_domain_separated() -> None:
    # The same 18 characters as a person and as an enterprise must be two subjects.
    same = "11010519491231002X"
    assert pseudonym(ResidentId(same), PEPPER) != pseudonym(USCC(same), PEPPER)
    assert str(alias_hash("person", same, PEPPER)) != str(pseudonym(ResidentId(same), PEPPER))
    assert alias_hash("ssc", "1", PEPPER) != alias_hash("ss", "c1", PEPPER)


def test_pepper_changes_every_pseudonym() -> None:
    flipped = Secret(bytes([1]) + bytes(range(1, 32)))
    for subject in (PERSON, ENTERPRISE):
        assert pseudonym(subject, PEPPER) != pseudonym(subject, OTHER_PEPPER)
        assert pseudonym(subject, PEPPER) != pseudonym(subject, flipped)
    # Interleaving peppers must not let one pepper's cached key answer for another.
    assert pseudonym(PERSON, PEPPER) == pseudonym(PERSON, Secret(bytes(range(32))))


def test_long_pepper_matches_plain_hmac() -> None:
    long_pepper = bytes(range(100))  # Longer than a SHA-256 block, so HMAC hashes the key.
    expected = hmac.new(long_pepper, b"person\x00" + PERSON.normalised.encode(), hashlib.sha256)
    wanted = base64.urlsafe_b64encode(expected.digest()[:12]).decode()
    assert pseudonym(PERSON, Secret(long_pepper)) == wanted


@PROPERTY
@given(
    pepper=st.binary(min_size=32, max_size=200),
    normalised=st.text("0123456789X", min_size=18, max_size=18),
)
def test_pseudonym_is_plain_hmac_sha256_for_any_pepper(pepper: bytes, normalised: str) -> None:
    # The digest is built from two precomputed SHA-256 states; around the 64-byte block size
    # (padded, exact, hashed first) it must still be exactly HMAC-SHA256.
    expected = hmac.new(pepper, b"person\x00" + normalised.encode(), hashlib.sha256).digest()
    wanted = base64.urlsafe_b64encode(expected[:12]).decode()
    assert pseudonym(ResidentId(normalised), Secret(pepper)) == wanted


@pytest.mark.parametrize("size", [0, 16, 31])
def test_short_pepper_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes") as caught:
        pseudonym(PERSON, Secret(bytes(size)))
    assert not isinstance(caught.value, InvalidIdentifier)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        alias_hash("ssc", "1", Secret(bytes(size)))


@pytest.mark.parametrize("alias_type", ["", "SSC", "s\x00c", "ssc ", "1ssc", "a" * 33, "\u793e"])
def test_alias_type_must_be_a_short_lower_case_name(alias_type: str) -> None:
    with pytest.raises(ValueError, match="alias_type"):
        alias_hash(alias_type, "1", PEPPER)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", Reason.BAD_LENGTH),
        ("1" * (MAX_ALIAS_LENGTH + 1), Reason.BAD_LENGTH),
        ("token\ud800", Reason.BAD_CHARACTERS),
    ],
)
def test_bad_alias_values_are_refused(value: str, reason: Reason) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        alias_hash("essc", value, PEPPER)
    assert caught.value.reason is reason
    printed = "".join(traceback.format_exception(caught.value))
    assert "token" not in printed
    assert "1" * 8 not in printed


def test_longest_alias_is_accepted() -> None:
    assert len(alias_hash("essc", "1" * MAX_ALIAS_LENGTH, PEPPER)) == 16


def test_subject_bytes_round_trips() -> None:
    subject = pseudonym(ENTERPRISE, PEPPER)
    raw = subject_bytes(subject)
    assert len(raw) == 12
    assert subject_id(raw) == subject


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", Reason.BAD_LENGTH),
        ("AAAAAAAAAAAAAAA", Reason.BAD_LENGTH),
        ("AAAAAAAAAAAAAAAAA", Reason.BAD_LENGTH),
        ("AAAAAAAAAAAAAAAA==", Reason.BAD_LENGTH),
        ("AAAAAAAAAAAAAAA=", Reason.BAD_CHARACTERS),
        ("AAAAAAAAAAAAAAA+", Reason.BAD_CHARACTERS),
        ("AAAAAAAAAAAAAAA/", Reason.BAD_CHARACTERS),
        ("AAAAAAAAAAAAAAA ", Reason.BAD_CHARACTERS),
        ("AAAAAAAAAAAAAAA\n", Reason.BAD_CHARACTERS),
        ("AAAAAAAAAAAAAAA\u00e9", Reason.BAD_CHARACTERS),
        ("AAAAAAAAAAAAAAA\uff21", Reason.BAD_CHARACTERS),
    ],
)
def test_subject_bytes_is_strict(text: str, reason: Reason) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        subject_bytes(SubjectId(text))
    assert caught.value.reason is reason


@pytest.mark.parametrize("size", [0, 11, 13, 32])
def test_subject_id_needs_twelve_bytes(size: int) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        subject_id(bytes(size))
    assert caught.value.reason is Reason.BAD_LENGTH


@PROPERTY
@given(st.binary(min_size=12, max_size=12))
def test_any_twelve_bytes_round_trip(raw: bytes) -> None:
    text = subject_id(raw)
    assert len(text) == 16
    assert subject_bytes(text) == raw


@PROPERTY
@given(st.one_of(st.text(), st.text(alphabet=URL_SAFE + "+/= ", min_size=16, max_size=16)))
def test_subject_bytes_accepts_exactly_what_subject_id_writes(text: str) -> None:
    try:
        raw = subject_bytes(SubjectId(text))
    except InvalidIdentifier as exc:
        assert exc.reason in {Reason.BAD_LENGTH, Reason.BAD_CHARACTERS}
    else:
        assert subject_id(raw) == text


@PROPERTY
@given(st.text(alphabet="0123456789X", min_size=18, max_size=18), st.binary(min_size=32))
def test_pseudonym_matches_its_definition(normalised: str, pepper: bytes) -> None:
    message = b"person\x00" + normalised.encode()
    digest = hmac.new(pepper, message, hashlib.sha256).digest()[:12]
    expected = base64.urlsafe_b64encode(digest).decode()
    assert pseudonym(ResidentId(normalised), Secret(pepper)) == expected


def test_licence_hashes_are_keyed_and_apart_from_alias_hashes() -> None:
    from codeengine.code.pseudonym import alias_hash, licence_hash

    pepper, other = Secret(b"p" * 32), Secret(b"q" * 32)
    first = licence_hash("business_licence", "91320100MA1XYZ8K3Q", pepper)
    assert first == licence_hash("business_licence", "91320100MA1XYZ8K3Q", pepper)
    assert first != licence_hash("business_licence", "91320100MA1XYZ8K3Q", other)
    assert first != licence_hash("food_licence", "91320100MA1XYZ8K3Q", pepper)
    assert first != alias_hash("business_licence", "91320100MA1XYZ8K3Q", pepper)
    assert "91320100" not in first
    with pytest.raises(ValueError):
        licence_hash("Bad Type", "1", pepper)
