"""The backup-restore drill's short form, and the backup commands against a real cluster.

The drill starts two real 3 + 3 clusters (TLS, ACL users), loads the first through the store,
snapshots it while writers keep converting, restores the snapshot into the second and reads
it back as the engine does. The full drill (``codeengine drill backup-restore``: 2000
subjects) holds the same goals on more data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codeengine.ops.backup import restore_snapshot
from codeengine.ops.backupdrill import BackupDrillOptions, run_backup_drill
from codeengine.ops.backupformat import BackupError, check_snapshot, read_records
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import parse_nodes
from codeengine.store import keyspace
from codeengine.store.cluster import FastCluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHORT = BackupDrillOptions(subjects=40, changes=2, writers=4)
SUBJECT_KEY_PREFIX = f"{keyspace.NAMESPACE}:s:{{".encode()
"""How a subject record's key starts (``keyspace.subject_key``)."""


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("drills")
    return run_backup_drill(dataclasses.replace(SHORT, out_dir=out))


def test_the_drill_loses_no_change_acknowledged_before_the_snapshot(
    drill: tuple[dict[str, Any], Path],
) -> None:
    summary, report = drill
    assert json.loads(report.read_text()) == summary
    assert report.with_suffix(".md").read_text().startswith("# Drill `backup-restore`: PASS")
    # 40 creations and 80 conversions came before the snapshot, and more during it.
    assert summary["acknowledged_before_snapshot"] == 40 * 3
    assert summary["acknowledged_during_snapshot"] >= 1, "the writers wrote during the snapshot"
    assert summary["lost"] == 0, summary["lost_examples"]
    assert summary["found"] == summary["acknowledged_before_snapshot"]
    assert summary["subjects_missing"] == 0 and summary["seal_failures"] == 0
    assert summary["records_opened"] == 40
    assert summary["chains_checked"] == summary["chains_verified"] == 40
    assert summary["restored_keys"] == summary["snapshot_keys"] > 40 * 2
    assert set(summary["replicas_acked"].values()) == {1}, "every restored primary replicated"
    # Every city's lease epoch counter came back above every epoch the snapshot can hold.
    assert summary["epochs_raised"] == 13
    assert summary["passed"], summary["goals"]


def test_a_snapshot_changed_after_it_was_taken_is_refused(
    drill: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    snapshot = Path(drill[0]["snapshot_dir"])
    assert check_snapshot(snapshot).keys == drill[0]["snapshot_keys"]
    copy = tmp_path / "copy"
    shutil.copytree(snapshot, copy)
    shard = max(copy.glob("*.cedump"), key=lambda p: p.stat().st_size)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="SHA-256 differs"):
        check_snapshot(copy)


@pytest.mark.cluster
def test_restore_refuses_a_cluster_that_is_not_empty_and_writes_nothing(
    drill: tuple[dict[str, Any], Path], cluster: DevCluster
) -> None:
    snapshot = Path(drill[0]["snapshot_dir"])
    first = next(read_records(snapshot, check_snapshot(snapshot).files[0]))
    marker = "ce:test:{backup-restore}"

    async def attempt() -> tuple[str, int]:
        fast = _admin(cluster)
        await fast.start()
        try:
            await fast.execute(marker, "SET", marker, "1")
            try:
                await restore_snapshot(fast, snapshot)
            except BackupError as exc:
                refused = str(exc)
            else:
                refused = ""
            written = int(await fast.execute(first[1], "EXISTS", first[1]))
            await fast.execute(marker, "DEL", marker)
            return refused, written
        finally:
            await fast.aclose()

    refused, written = asyncio.run(attempt())
    assert "not empty" in refused and "restore only into a new, empty cluster" in refused
    assert written == 0


@pytest.mark.cluster
def test_a_restore_of_some_slots_writes_only_those_and_only_where_they_are_empty(
    drill: tuple[dict[str, Any], Path], cluster: DevCluster
) -> None:
    snapshot = Path(drill[0]["snapshot_dir"])
    records = [r for f in check_snapshot(snapshot).files for r in read_records(snapshot, f)]
    # Two of the snapshot's slots that are empty in the session's cluster, which holds other
    # keys (so a whole restore would be refused): other tests' keys, and the cities' lease
    # keys the drill seeded, may share a slot with the snapshot's. Only slots that hold a
    # subject are candidates: a slot of the cities' fence keys alone holds one key, and which
    # slots are empty depends on what other tests left.
    subjects = sorted({r[0] for r in records if r[1].startswith(SUBJECT_KEY_PREFIX)})
    first, second = asyncio.run(_empty_slots(cluster, subjects, 2))
    inside = [r[1] for r in records if r[0] in (first, second)]
    outside = next(r[1] for r in records if r[0] not in (first, second))
    slots = f"{first},{second}"
    try:
        restored = _codeengine(cluster, "restore", "--from", str(snapshot), "--slots", slots)
        present = [asyncio.run(_command(cluster, "EXISTS", key)) for key in inside]
        absent = asyncio.run(_command(cluster, "EXISTS", outside))
        again = _codeengine(cluster, "restore", "--from", str(snapshot), "--slots", slots)
    finally:
        for key in inside:
            asyncio.run(_command(cluster, "DEL", key))
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["keys"] == len(inside) >= 4, "a subject's record, audit stream and markers"
    assert report["slots"] == slots and set(report["replicas_acked"].values()) == {1}
    assert present == [1] * len(inside) and absent == 0
    assert again.returncode == 2
    assert "holds" in again.stderr and "restore a slot only where it is empty" in again.stderr


@pytest.mark.cluster
def test_the_backup_commands_snapshot_check_and_refuse_a_restore_over_data(
    cluster: DevCluster, tmp_path: Path
) -> None:
    out = tmp_path / "snap"

    def codeengine(*args: str) -> subprocess.CompletedProcess[str]:
        return _codeengine(cluster, *args)

    # The session cluster holds the other tests' keys, and at least this one, throughout.
    seed = b"ce:test:{backup-cli}"
    asyncio.run(_command(cluster, "SET", seed, "1"))
    try:
        taken = codeengine("snapshot", "--out", str(out))
        assert taken.returncode == 0, taken.stderr
        document = json.loads(taken.stdout)
        assert document["keys"] >= 1 and document["files"] == 3
        assert "snapshot 100.0%" in taken.stderr, "the last progress line"
        records = [r for f in check_snapshot(out).files for r in read_records(out, f)]
        assert [r[1] for r in records].count(seed) == 1
        checked = codeengine("check", "--from", str(out))
        assert checked.returncode == 0 and json.loads(checked.stdout)["intact"] is True
        refused = codeengine("restore", "--from", str(out))
        assert refused.returncode == 2, refused.stdout
        assert "not empty" in refused.stderr and refused.stdout == ""
        again = codeengine("snapshot", "--out", str(out))
        assert again.returncode == 2 and "not empty" in again.stderr
    finally:
        asyncio.run(_command(cluster, "DEL", seed))


def _codeengine(cluster: DevCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``codeengine backup ARGS`` as a process, with the session cluster's settings, as admin."""
    login = [] if args[0] == "check" else ["--user", "admin"]
    return subprocess.run(
        [sys.executable, "-m", "codeengine", "backup", *args, *login],
        env=dict(os.environ, **cluster.client_env()),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _admin(cluster: DevCluster) -> FastCluster:
    """The project's cluster client, logged in as the admin user, patient on a busy machine."""
    return FastCluster(
        parse_nodes(cluster.nodes_spec),
        connect_timeout_s=5.0,
        deadline_s=5.0,
        security=cluster.client_security("admin"),
    )


async def _empty_slots(cluster: DevCluster, candidates: list[int], wanted: int) -> list[int]:
    """The first ``wanted`` of ``candidates`` that hold no key in the cluster."""
    fast = _admin(cluster)
    await fast.start()
    try:
        empty = []
        for slot in candidates:
            if await fast.execute_at_slot(slot, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0:
                empty.append(slot)
                if len(empty) == wanted:
                    return empty
        raise AssertionError(f"fewer than {wanted} of the snapshot's slots are empty here")
    finally:
        await fast.aclose()


async def _command(cluster: DevCluster, *args: str | bytes) -> Any:
    fast = _admin(cluster)
    await fast.start()
    try:
        return await fast.execute(args[1], *args)
    finally:
        await fast.aclose()
