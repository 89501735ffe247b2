"""Signed lists: sign and verify, and every refusal with its reason, in the order they apply."""

from __future__ import annotations

import hashlib
import json

import pytest

from codeengine.code.errors import ListRefused, Reason
from codeengine.code.keyring import Keyring, SigningKey
from codeengine.code.signedlist import (
    ListKind,
    SignedList,
    check_newer,
    next_sequence,
    read_list,
    resign_due_at,
    revocations_from_json,
    revocations_json,
    sign_list,
    verify_list_at,
)
from codeengine.code.suites import ED25519, ES256, b64url_decode, deterministic_random
from codeengine.code.token import sig_structure
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations

NOW = 1_800_000_000
TTL = 86_400
ANCHOR = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"anchor"))
ANCHORS = TrustList.from_keyring(ANCHOR)
OTHER = Keyring.generate_at(NOW - 1000, ED25519, deterministic_random(b"another anchor"))
P256_ANCHOR = Keyring.generate_at(NOW - 1000, ES256, deterministic_random(b"p-256 anchor"))
CONTENT = b'{"codes":["0102030405a6"],"keys":[]}'


def signed(
    seq: int = 7,
    kind: ListKind = ListKind.REVOCATIONS,
    content: bytes = CONTENT,
    ring: Keyring = ANCHOR,
    issued_at: int = NOW,
) -> SignedList:
    return sign_list(kind, content, seq, issued_at, issued_at + TTL, ring.current)


def reason(
    document: bytes,
    kind: ListKind = ListKind.REVOCATIONS,
    *,
    now: int = NOW,
    held: SignedList | None = None,
) -> Reason:
    """Why ``verify_list_at`` refuses the document (it must refuse it)."""
    with pytest.raises(ListRefused) as refused:
        verify_list_at(document, kind, ANCHORS, now, held=held)
    return refused.value.reason


def test_a_signed_list_verifies_and_carries_what_was_signed() -> None:
    made = signed()
    checked = verify_list_at(made.document, ListKind.REVOCATIONS, ANCHORS, NOW + 1)
    assert checked == made
    assert (checked.seq, checked.content, checked.anchor) == (7, CONTENT, ANCHOR.current.kid)
    assert (checked.issued_at, checked.expires_at) == (NOW, NOW + TTL)
    assert read_list(made.document) == made


def test_an_es256_anchor_signs_too() -> None:
    made = signed(ring=P256_ANCHOR)
    anchors = TrustList.from_keyring(P256_ANCHOR)
    assert verify_list_at(made.document, ListKind.REVOCATIONS, anchors, NOW).content == CONTENT


def test_the_layout_is_the_documented_one() -> None:
    # docs/code-format.md section 12: tag 18, {1: alg, 4: kid}, {}, the five-entry payload.
    made = signed(seq=1, content=b"{}")
    kid = ANCHOR.current.kid
    protected = b"\xa2\x01\x27\x04\x48" + kid
    payload = (
        b"\xa5\x04\x1a" + (NOW + TTL).to_bytes(4, "big") + b"\x06\x1a" + NOW.to_bytes(4, "big")
        + b"\x20\x02\x21\x01\x22\x42{}"
    )  # fmt: skip
    assert made.document[: 2 + 1 + len(protected) + 1] == b"\xd2\x84\x4d" + protected + b"\xa0"
    signature = made.document[-64:]
    assert len(payload) == 21, "a payload under 24 bytes has a one-byte head"
    assert made.document == (
        b"\xd2\x84\x4d" + protected + b"\xa0" + bytes((0x40 | len(payload),)) + payload
        + b"\x58\x40" + signature
    )  # fmt: skip
    ANCHOR.current.trusted.verify(signature, sig_structure(protected, payload))


@pytest.mark.parametrize(
    "document",
    [CONTENT, b"", b"[1, 2]", json.dumps({"keys": []}).encode()],
    ids=["revocation-json", "empty", "json-array", "jwks"],
)
def test_an_unsigned_list_is_refused(document: bytes) -> None:
    assert reason(document) == Reason.LIST_UNSIGNED


def test_a_list_that_is_not_bytes_is_refused_as_unsigned() -> None:
    assert reason(CONTENT.decode()) == Reason.LIST_UNSIGNED  # type: ignore[arg-type]


def test_a_list_signed_by_another_key_is_refused() -> None:
    assert reason(signed(ring=OTHER).document) == Reason.LIST_UNKNOWN_ANCHOR
    assert reason(signed(ring=P256_ANCHOR).document) == Reason.LIST_UNKNOWN_ANCHOR


def test_an_anchor_outside_its_validity_is_refused() -> None:
    anchor = ANCHOR.current
    assert reason(signed().document, now=anchor.not_after + 1) == Reason.LIST_UNKNOWN_ANCHOR
    assert reason(signed().document, now=anchor.not_before - 1) == Reason.LIST_UNKNOWN_ANCHOR


def test_the_anchors_own_id_with_another_algorithm_is_refused() -> None:
    document = bytearray(signed().document)
    assert document[4:6] == b"\x01\x27"
    document[5] = 0x26  # ES256 in the header of an Ed25519 anchor's list
    assert reason(bytes(document)) == Reason.LIST_UNKNOWN_ANCHOR


def test_a_tampered_list_is_refused() -> None:
    document = signed().document
    at = document.index(b"0102030405a6")
    changed = document[:at] + b"0102030405a7" + document[at + 12 :]
    assert reason(changed) == Reason.LIST_BAD_SIGNATURE
    flipped = document[:-1] + bytes((document[-1] ^ 1,))
    assert reason(flipped) == Reason.LIST_BAD_SIGNATURE


def test_a_list_of_the_other_kind_is_refused() -> None:
    trust = signed(kind=ListKind.TRUST, content=b'{"keys":[]}').document
    assert reason(trust, ListKind.REVOCATIONS) == Reason.LIST_WRONG_KIND
    assert reason(signed().document, ListKind.TRUST) == Reason.LIST_WRONG_KIND


def test_an_expired_list_is_refused_from_the_second_after_its_expiry() -> None:
    document = signed().document
    assert verify_list_at(document, ListKind.REVOCATIONS, ANCHORS, NOW + TTL).seq == 7
    assert reason(document, now=NOW + TTL + 1) == Reason.LIST_EXPIRED


def test_an_older_list_than_the_one_held_is_refused() -> None:
    held = signed(seq=7)
    assert reason(signed(seq=6).document, held=held) == Reason.LIST_ROLLBACK
    # The same sequence with other content would be a second list 7: refused too.
    other = signed(seq=7, content=b'{"codes":[],"keys":[]}')
    assert reason(other.document, held=held) == Reason.LIST_ROLLBACK
    # The very list held (fetched again) and a newer one are taken.
    assert verify_list_at(held.document, ListKind.REVOCATIONS, ANCHORS, NOW, held=held) == held
    assert verify_list_at(signed(seq=8).document, ListKind.REVOCATIONS, ANCHORS, NOW, held=held)


def test_a_held_list_past_its_expiry_sets_no_floor() -> None:
    # Held: sequence 10**15, signed at NOW. A day later it has expired, and a genuine list with
    # a lower sequence signed since is taken; while it was valid, the same list was refused.
    held = signed(seq=10**15)
    later = signed(seq=8, issued_at=NOW + TTL)
    assert reason(later.document, now=NOW + TTL, held=held) == Reason.LIST_ROLLBACK
    taken = verify_list_at(later.document, ListKind.REVOCATIONS, ANCHORS, NOW + TTL + 1, held=held)
    assert taken.seq == 8


def test_check_newer_compares_lists_of_one_kind_only() -> None:
    with pytest.raises(ValueError, match="one kind"):
        check_newer(signed(kind=ListKind.TRUST), signed(kind=ListKind.REVOCATIONS))


def _resigned(payload: bytes) -> bytes:
    """A list with this payload, correctly signed: only a strict reader refuses it."""
    key = ANCHOR.current
    protected = b"\xa2\x01\x27\x04\x48" + key.kid
    signature = key.private.sign(sig_structure(protected, payload))
    assert len(payload) < 256
    head = bytes((0x40 | len(payload),)) if len(payload) < 24 else bytes((0x58, len(payload)))
    return b"\xd2\x84\x4d" + protected + b"\xa0" + head + payload + b"\x58\x40" + signature


_EXP = b"\x04\x1a" + (NOW + TTL).to_bytes(4, "big")
_IAT = b"\x06\x1a" + NOW.to_bytes(4, "big")


_CASES = {
    "seq-not-shortest": b"\xa5" + _EXP + _IAT + b"\x20\x02\x21\x18\x07\x22\x40",
    "unknown-kind": b"\xa5" + _EXP + _IAT + b"\x20\x03\x21\x07\x22\x40",
    "keys-out-of-order": b"\xa5" + _IAT + _EXP + b"\x20\x02\x21\x07\x22\x40",
    "no-content": b"\xa4" + _EXP + _IAT + b"\x20\x02\x21\x07",
    "content-as-text": b"\xa5" + _EXP + _IAT + b"\x20\x02\x21\x07\x22\x60",
    "trailing-byte": b"\xa5" + _EXP + _IAT + b"\x20\x02\x21\x07\x22\x40\x00",
    "iat-after-exp": b"\xa5\x04\x1a" + NOW.to_bytes(4, "big") + b"\x06\x1a"
    + (NOW + 1).to_bytes(4, "big") + b"\x20\x02\x21\x07\x22\x40",
}  # fmt: skip


@pytest.mark.parametrize("payload", _CASES.values(), ids=_CASES.keys())
def test_a_correctly_signed_list_in_another_encoding_is_malformed(payload: bytes) -> None:
    assert reason(_resigned(payload)) == Reason.LIST_MALFORMED


def test_the_canonical_payload_is_accepted_so_the_cases_above_differ_only_where_named() -> None:
    payload = b"\xa5" + _EXP + _IAT + b"\x20\x02\x21\x07\x22\x40"
    assert verify_list_at(_resigned(payload), ListKind.REVOCATIONS, ANCHORS, NOW).content == b""


def test_structure_is_refused_before_any_key_is_looked_up() -> None:
    # Trailing bytes after a list by an unknown key: MALFORMED, not UNKNOWN_ANCHOR.
    assert reason(signed(ring=OTHER).document + b"\x00") == Reason.LIST_MALFORMED
    assert reason(b"\xd2\x84\x40") == Reason.LIST_MALFORMED


def test_signing_refuses_values_outside_the_format() -> None:
    with pytest.raises(ValueError, match="expire"):
        sign_list(ListKind.TRUST, b"", 1, NOW, NOW - 1, ANCHOR.current)
    with pytest.raises(ValueError, match="seq"):
        sign_list(ListKind.TRUST, b"", -1, NOW, NOW, ANCHOR.current)


def test_sequences_rise_and_never_fall_below_the_time() -> None:
    assert next_sequence(0, 1_800_000_000_000) == 1_800_000_000_000
    assert next_sequence(1_800_000_000_000, 1_800_000_000_000) == 1_800_000_000_001
    # A store restored from an old backup holds an old sequence: the time still wins.
    assert next_sequence(5, 1_800_000_000_000) == 1_800_000_000_000


def test_a_list_is_signed_again_when_it_changes_or_at_half_its_validity() -> None:
    stored = signed()
    kid = ANCHOR.current.kid
    assert resign_due_at(None, CONTENT, kid, NOW)
    assert not resign_due_at(stored, CONTENT, kid, NOW)
    assert not resign_due_at(stored, CONTENT, kid, NOW + TTL // 2 - 1)
    assert resign_due_at(stored, CONTENT, kid, NOW + TTL // 2)
    assert resign_due_at(stored, b'{"codes":[],"keys":[]}', kid, NOW)
    assert resign_due_at(stored, CONTENT, OTHER.current.kid, NOW), "a new anchor signs at once"


def test_the_revocation_document_round_trips_and_is_sorted() -> None:
    revocations = Revocations(
        codes=frozenset({bytes.fromhex("ffeeddccbbaa"), bytes.fromhex("0102030405a6")}),
        keys=frozenset({ANCHOR.current.kid}),
    )
    content = revocations_json(revocations)
    assert content.startswith(b'{"codes":["0102030405a6","ffeeddccbbaa"],"keys":["')
    assert revocations_from_json(content) == revocations
    assert revocations_json(Revocations()) == b'{"codes":[],"keys":[]}'


@pytest.mark.parametrize(
    "content",
    [
        b"[]",
        b'{"codes":[]}',
        b'{"codes":[],"keys":[],"as_of":1}',
        b'{"codes":["0102030405A6"],"keys":[]}',
        b'{"codes":["01 02030405a6"],"keys":[]}',
        b'{"codes":["0102030405"],"keys":[]}',
        b'{"codes":[1],"keys":[]}',
        b'{"codes":[],"keys":["jsy_p1bMtRg="]}',
        b'{"codes":[],"keys":["jsy_p1bMtR"]}',
        b"not json",
    ],
)
def test_a_revocation_document_is_read_strictly(content: bytes) -> None:
    with pytest.raises(ListRefused) as refused:
        revocations_from_json(content)
    assert refused.value.reason == Reason.LIST_MALFORMED


def test_the_unsigned_answer_may_carry_as_of_when_asked() -> None:
    content = b'{"codes":[],"keys":[],"as_of":1}'
    assert revocations_from_json(content, extra=frozenset({"as_of"})) == Revocations()


def test_the_worked_example_of_the_format_document() -> None:
    # docs/code-format.md section 12.4, byte for byte.
    seed = hashlib.sha256(b"codeengine vectors/trust-anchor").digest()
    key = SigningKey.of(ED25519.from_seed(seed), 1797408000, 1955174400)
    assert TrustList.from_keyring(Keyring(key)).to_json() == (
        '{"keys":[{"alg":"EdDSA","crv":"Ed25519","exp":1955174400,"kid":"yNl6bOUZuHY",'
        '"kty":"OKP","nbf":1797408000,"use":"sig",'
        '"x":"eYGb8-72pgu30rZnGfxyXblNdqK2TcG2capIPHew1hM"}]}'
    )
    revoked = Revocations(
        codes=frozenset({bytes.fromhex("02e7330eb96d")}),
        keys=frozenset({b64url_decode("P_YqIuFAZCw")}),
    )
    content = revocations_json(revoked)
    assert content == b'{"codes":["02e7330eb96d"],"keys":["P_YqIuFAZCw"]}'
    made = sign_list(ListKind.REVOCATIONS, content, 1800000000000, NOW, NOW + TTL, key)
    assert made.document.hex() == (
        "d2844da201270448c8d97a6ce519b876a0584da5041a6b4b2380061a6b49d2002002211b000001a3185c50"
        "002258317b22636f646573223a5b22303265373333306562393664225d2c226b657973223a5b22505f5971"
        "497546415a4377225d7d584065420037bd7dcdf13a17ea2634853f97cd436d328eb22ff77418953ac1458a"
        "83a77042605daad2206600819859845470daa39717f25dcadac7d6ae1526c52f03"
    )
    anchors = TrustList.from_keyring(Keyring(key))
    assert verify_list_at(made.document, ListKind.REVOCATIONS, anchors, NOW) == made
    with pytest.raises(ListRefused) as refused:
        verify_list_at(made.document, ListKind.REVOCATIONS, anchors, NOW + TTL + 1)
    assert refused.value.reason == Reason.LIST_EXPIRED
