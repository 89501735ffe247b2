"""Change log entries: the exact packed shape the records service hands to ClickHouse."""

from __future__ import annotations

import msgpack
import pytest

from codeengine.code.changes import CHANGE_FIELDS, ChangeEntry, change_of, colour_name
from codeengine.code.errors import CodeEngineError

SUBJECT = "AAECAwQFBgcICQoL"


def status_change() -> ChangeEntry:
    return ChangeEntry(
        1_800_000_000_000, 320500, SUBJECT, "status", "green", "red", 7, "dev-convert",
        "close contact", "op-1",
    )  # fmt: skip


def test_the_fields_are_the_topic_library_columns_in_order() -> None:
    assert CHANGE_FIELDS == (
        "at_ms", "city", "subject", "op", "old_colour", "new_colour", "version", "actor",
        "reason", "op_id",
    )  # fmt: skip


def test_an_entry_is_a_ten_element_fixarray_of_ints_and_strings() -> None:
    packed = status_change().pack()
    # 0x90 | 10: the one-byte header the records service strips before FORMAT MsgPack.
    assert packed[0] == 0x9A
    # What ClickHouse reads after the header: ten values, one per column, in column order.
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(packed[1:])
    values = list(unpacker)
    assert values == list(status_change())
    assert [type(v) for v in values] == [int, int, str, str, str, str, int, str, str, str]
    # The time is a 64-bit unsigned integer (0xcf), the city a 32-bit one (0xce): numbers,
    # never their text.
    assert packed[1] == 0xCF and packed[10] == 0xCE
    assert ChangeEntry.unpack(packed) == status_change()


def test_the_writer_form_is_the_city_and_the_same_bytes() -> None:
    assert status_change().packed() == (320500, status_change().pack())


def test_an_audit_entry_becomes_its_change() -> None:
    audit = {"op": "status", "actor": "dev-convert", "reason": "close contact", "old": 1,
             "new": 3, "v": 7, "at": 1_800_000_000, "op_id": "op-1",
             "by": "320500/primary"}  # fmt: skip
    assert change_of(audit, SUBJECT, 320500) == status_change()


def test_a_create_has_no_old_colour() -> None:
    audit = {"op": "create", "actor": "dev-generate", "reason": "", "new": 1, "v": 1,
             "at": 1_800_000_000, "op_id": ""}  # fmt: skip
    change = change_of(audit, SUBJECT, 320100)
    assert (change.old_colour, change.new_colour, change.op) == ("", "green", "create")


def test_colour_names() -> None:
    assert [colour_name(c) for c in (None, 1, 2, 3)] == ["", "green", "yellow", "red"]


@pytest.mark.parametrize(
    "value",
    [
        b"\xc1",  # never used in msgpack
        msgpack.packb({"at_ms": 1}),
        msgpack.packb(list(status_change())[:9]),
        msgpack.packb([str(1_800_000_000_000), *list(status_change())[1:]]),
    ],
    ids=["not-msgpack", "a-map", "nine-fields", "time-as-text"],
)
def test_what_is_not_an_entry_is_refused(value: bytes) -> None:
    with pytest.raises(CodeEngineError):
        ChangeEntry.unpack(value)
