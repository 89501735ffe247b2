"""Seals and the keyed audit chain, without a store: what each check catches."""

from __future__ import annotations

import itertools

import msgpack
import pytest

from codeengine.code.chain import append_entry, check_chain
from codeengine.code.errors import KeyringError, RecordTampered
from codeengine.code.fencing import NO_FENCE_TOKEN
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.seal import (
    TRAILER_BYTES,
    MACKeyset,
    open_sealed,
    record_context,
    seal,
    token_context,
)
from codeengine.code.status import SubjectRecord

_counter = itertools.count()


def fake_random(n: int) -> bytes:
    """Distinct, reproducible bytes (the pure layer takes randomness as an argument)."""
    seed = next(_counter).to_bytes(4, "big")
    return (seed * (n // 4 + 1))[:n]


def keyset() -> MACKeyset:
    kid = fake_random(4)
    return MACKeyset(kid, {kid: fake_random(32)})


A, B = SubjectId("AAAAAAAAAAAAAAAA"), SubjectId("BBBBBBBBBBBBBBBB")


def test_a_sealed_record_opens_and_any_edit_or_move_does_not() -> None:
    keys = keyset()
    record = SubjectRecord(A, CodeKind.HEALTH, 320100, Colour.GREEN, 1, 0)
    raw = seal(keys, record_context(A), record.pack())
    assert len(raw) == len(record.pack()) + TRAILER_BYTES
    assert SubjectRecord.unpack(A, open_sealed(keys, record_context(A), raw)) == record
    red = record._replace(colour=Colour.RED).pack() + raw[-TRAILER_BYTES:]
    for bad, context in [(red, record_context(A)), (raw, record_context(B)),
                         (record.pack(), record_context(A)), (raw[:-1] + b"x", record_context(A)),
                         (raw, token_context(A, None))]:  # fmt: skip
        with pytest.raises(RecordTampered):
            open_sealed(keys, context, bad)


def test_a_token_seal_names_the_key_it_is_stored_under() -> None:
    keys = keyset()
    raw = seal(keys, token_context(A, int(CodeKind.HEALTH)), b"\x80")
    # The own kind is stored under the plain key, whichever way a caller names it.
    assert open_sealed(keys, token_context(A, None), raw) == b"\x80"
    with pytest.raises(RecordTampered):
        open_sealed(keys, token_context(A, int(CodeKind.FUSED)), raw)


def test_after_a_rotation_old_values_open_and_new_ones_use_the_new_key() -> None:
    old = keyset()
    before = seal(old, record_context(A), b"\x80")
    kid = fake_random(4)
    rotated = old.with_key(kid, fake_random(32))
    assert rotated.current == kid and open_sealed(rotated, record_context(A), before) == b"\x80"
    after = seal(rotated, record_context(A), b"\x80")
    assert after[-20:-16] == kid
    with pytest.raises(RecordTampered):
        open_sealed(old, record_context(A), after)
    assert MACKeyset.from_document(rotated.to_document()).keys == rotated.keys
    with pytest.raises(KeyringError):
        rotated.with_key(kid, fake_random(32))
    assert fake_random(32).hex() not in repr(rotated)


def chain(
    keys: MACKeyset, subject: SubjectId, n: int
) -> tuple[SubjectRecord, list[tuple[bytes, str]]]:
    record = SubjectRecord(subject, CodeKind.HEALTH, 320100, Colour.GREEN, 1, 0)
    entries = []
    for v in range(n):
        entry = {"op": "status", "actor": "a", "reason": str(v), "new": 1, "v": v, "at": v}
        record, packed, digest = append_entry(keys, record, entry, NO_FENCE_TOKEN)
        entries.append((packed, digest))
    return record, entries


def test_the_chain_catches_edits_removals_truncation_and_copies() -> None:
    keys = keyset()
    record, entries = chain(keys, A, 4)
    assert record.entries == 4 and check_chain(keys, A, record, entries).ok
    edited = msgpack.unpackb(entries[1][0])
    edited["reason"] = "nothing"
    cases = {
        "entry altered": [entries[0], (msgpack.packb(edited), entries[1][1]), *entries[2:]],
        "removed or moved": [entries[0], *entries[2:]],
        "latest entries removed": entries[:3],
    }
    for problem, broken in cases.items():
        check = check_chain(keys, A, record, broken)
        assert not check.ok and problem in check.problem, (problem, check)
    other, copied = chain(keys, B, 4)
    check = check_chain(keys, A, record._replace(head=other.head), copied)
    assert (check.ok, check.broken_at) == (False, 0) and "not this subject's" in check.problem
