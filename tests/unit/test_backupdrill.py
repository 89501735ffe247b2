"""The backup drill's verdict on one acknowledged change, as read back from a restored store."""

from __future__ import annotations

from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.status import SubjectRecord
from codeengine.ops.backupdrill import _Change, _present
from codeengine.ops.cli import _parser

S = SubjectId("AAAAAAAAAAAAAAAA")


def record(version: int) -> SubjectRecord:
    return SubjectRecord(S, CodeKind.HEALTH, 320100, Colour.RED, version, 1_800_000_000)


def test_a_change_is_there_only_with_its_record_at_its_version_and_its_op_id_in_the_trail() -> None:
    change = _Change(S, "op-7", 3)
    assert _present(change, {S: record(3)}, {S: {"", "op-7"}})
    assert _present(change, {S: record(5)}, {S: {"op-7"}}), "later changes keep it"
    assert not _present(change, {S: record(3)}, {S: {"op-6"}}), "its entry is gone"
    assert not _present(change, {S: record(2)}, {S: {"op-7"}}), "the record went back"
    assert not _present(change, {S: None}, {S: {"op-7"}}), "the record is gone"
    assert not _present(change, {}, {}), "the subject is gone"


def test_a_creation_needs_only_its_record() -> None:
    created = _Change(S, "", 1)
    assert _present(created, {S: record(1)}, {S: set()})
    assert not _present(created, {S: None}, {S: set()})


def test_the_drill_command_takes_backup_restore_with_its_size() -> None:
    args = _parser().parse_args(["drill", "backup-restore", "--subjects", "500", "--changes", "3"])
    assert (args.name, args.subjects, args.changes) == ("backup-restore", 500, 3)
    restore = _parser().parse_args(["backup", "restore", "--from", "snap", "--slots", "0-99"])
    assert (restore.source, restore.slots, restore.user, restore.replicas) == (
        "snap",
        "0-99",
        "admin",
        1,
    )
