"""The snapshot folder: a whole one reads back, a partial, changed or padded one is refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from codeengine.ops.backup import _slot_routes, parse_slots
from codeengine.ops.backupformat import (
    MANIFEST,
    BackupError,
    Manifest,
    Record,
    ShardWriter,
    check_snapshot,
    make_snapshot_dir,
    read_records,
    write_manifest,
)
from codeengine.store.cluster import SLOT_COUNT, key_slot

HALVES = (((0, 8191),), ((8192, 16383),))
RECORDS: tuple[list[Record], list[Record]] = (
    [(12, b"ce:s:{a}", 0, b"\x00payload-a"), (12, b"ce:a:{a}", 0, b"\x0fstream-a")],
    [(9000, b"ce:o:{b}:op", 1_800_000_000_000, b"marker"), (16383, b"\xff\xfebinary", 0, b"")],
)


def snapshot(tmp_path: Path) -> Path:
    folder = tmp_path / "snap"
    make_snapshot_dir(folder)
    files = []
    for index, (spans, records) in enumerate(zip(HALVES, RECORDS, strict=True)):
        writer = ShardWriter(folder, index, f"127.0.0.1:{7000 + index}", spans)
        for record in records:
            writer.add(record)
        files.append(writer.close())
    write_manifest(folder, Manifest(1_800_000_000, "7.0.15", 4, tuple(files)))
    return folder


def test_a_whole_snapshot_checks_and_reads_back_every_record_owner_only(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    manifest = check_snapshot(folder)
    assert manifest.keys == 4 and [f.keys for f in manifest.files] == [2, 2]
    for shard, records in zip(manifest.files, RECORDS, strict=True):
        assert list(read_records(folder, shard)) == records
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


def test_a_folder_without_its_manifest_is_a_partial_snapshot(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    (folder / MANIFEST).unlink()
    with pytest.raises(BackupError, match="did not finish"):
        check_snapshot(folder)


def test_a_changed_byte_is_refused_by_its_checksum(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    path = folder / "shard-1.cedump"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"shard-1\.cedump: SHA-256 differs"):
        check_snapshot(folder)


def test_a_file_cut_short_or_missing_is_refused(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    path = folder / "shard-0.cedump"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(BackupError, match="cut short"):
        check_snapshot(folder)
    path.unlink()
    with pytest.raises(BackupError, match="missing: partial"):
        check_snapshot(folder)


def test_a_file_the_manifest_does_not_list_is_refused(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    (folder / "shard-2.cedump").write_bytes(b"")
    with pytest.raises(BackupError, match=r"not in manifest\.json"):
        check_snapshot(folder)


def test_a_manifest_that_leaves_a_slot_out_is_refused(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    document = json.loads((folder / MANIFEST).read_text())
    document["files"][1]["slots"] = [[8193, 16383]]
    (folder / MANIFEST).write_text(json.dumps(document))
    with pytest.raises(BackupError, match="does not cover slot 8192"):
        check_snapshot(folder)
    document["format"] = "something-else/1"
    (folder / MANIFEST).write_text(json.dumps(document))
    with pytest.raises(BackupError, match="format"):
        check_snapshot(folder)


def test_a_file_changed_after_the_check_fails_its_read(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    manifest = check_snapshot(folder)
    (folder / "shard-0.cedump").write_bytes(b"\x94\x01\xc4\x01k\x00\xc4\x01v")  # [1, b"k", 0, b"v"]
    with pytest.raises(BackupError, match="changed while it was restored"):
        list(read_records(folder, manifest.files[0]))


def test_a_snapshot_goes_only_into_an_empty_folder(tmp_path: Path) -> None:
    folder = snapshot(tmp_path)
    with pytest.raises(BackupError, match="not empty"):
        make_snapshot_dir(folder)


def test_every_slot_has_a_routing_key_that_hashes_to_it() -> None:
    routes = _slot_routes()
    assert len(routes) == SLOT_COUNT
    assert all(key_slot(route) == slot for slot, route in enumerate(routes))


def test_slots_are_ranges_and_single_slots_within_the_cluster() -> None:
    assert parse_slots("0-2,7, 16383") == frozenset({0, 1, 2, 7, 16383})
    for bad in ("", "5-", "-5", "3-1", "16384", "0-16384", "a"):
        with pytest.raises(BackupError, match="--slots"):
            parse_slots(bad)
