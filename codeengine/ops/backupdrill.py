"""The backup-restore drill: snapshot a cluster under writes, restore it, lose nothing.

``codeengine drill backup-restore [--subjects N]`` starts its own world on loopback and:

1. starts a 3 + 3 Redis Cluster (TLS, ACL users) and dev keys, and adds a read-only
   ``backup`` user (:data:`~codeengine.ops.backup.SNAPSHOT_ACL_RULE`) on every node, as ops
   would on a production cluster;
2. loads it through the store, as the issuer writes: ``subjects`` subjects created, then
   converted ``changes`` times each (sealed records, keyed audit chains, every write
   acknowledged by a replica), logging every acknowledged change;
3. keeps converting while :func:`~codeengine.ops.backup.take_snapshot` runs as ``backup``.
   The boundary is an event, not a time: the number of changes acknowledged when the snapshot
   starts. The snapshot is held after its first batch until the load has acknowledged another
   change, so writes do interleave with it however loaded the machine is;
4. starts a fresh cluster on other ports, adds a ``restore`` user
   (:data:`~codeengine.ops.backup.RESTORE_ACL_RULE`), checks the snapshot and restores it;
5. checks the restored cluster with the engine's own reads: every subject's sealed record
   opens under the record MAC keys, every change acknowledged before the snapshot is in its
   subject's audit trail (and the record's version is at least that change's), and every
   audit chain verifies (the ``codeengine audit verify`` check).

It writes ``backup-restore-TIME.json`` and ``.md`` beside the other drills' reports; the
snapshot stays in the drill's folder (owner-only).
"""

from __future__ import annotations

__all__ = ["BACKUP_DRILL", "BackupDrillOptions", "run_backup_drill"]

import asyncio
import dataclasses
import functools
import hashlib
import json
import os
import random
import secrets
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from codeengine.code.errors import RecordTampered, StoreUnavailable
from codeengine.code.model import CITIES, CodeKind, Colour, SubjectId
from codeengine.code.pseudonym import subject_id
from codeengine.code.status import StatusChange, SubjectRecord
from codeengine.keyfiles import load_mac_keyset, write_private
from codeengine.ops.backup import (
    EPOCH_RAISE,
    RESTORE_ACL_RULE,
    SNAPSHOT_ACL_RULE,
    Progress,
    backup_client,
    restore_snapshot,
    take_snapshot,
)
from codeengine.ops.commands import store_keys
from codeengine.ops.devcluster import ClusterError, DevCluster, find_free_base_port
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.devtls import SERVER_NAME
from codeengine.ops.drill import goal, goals_table
from codeengine.settings import ENV_PREFIX, Settings, load_settings, parse_nodes
from codeengine.store.audit import verify_store
from codeengine.store.cluster import FastCluster
from codeengine.store.keyspace import fence_keys
from codeengine.store.redisstore import RedisStore
from codeengine.store.security import StoreSecurity, load_security
from codeengine.web.runtime import store_settings

BACKUP_DRILL = "backup-restore"
CITY = 320100
COLOURS = (Colour.GREEN, Colour.YELLOW, Colour.RED)
IN_FLIGHT = 32
"""Store calls the load keeps in flight."""
HOLD_TIMEOUT_S = 60.0
"""How long the held snapshot waits for the load's next acknowledged change (a bound on a
failure, never an ordering: the change normally lands in milliseconds)."""
SEND_TRIES = 20
"""A write that timed out or was not replicated is resent (same op_id) up to this often."""
T = TypeVar("T")


@dataclass(frozen=True)
class BackupDrillOptions:
    """How much the drill loads, and where it writes."""

    subjects: int = 2000
    changes: int = 2
    """Status changes per subject before the snapshot (besides its creation)."""
    writers: int = 8
    """Writers converting subjects while the snapshot runs, each its own share of subjects."""
    out_dir: Path = Path("var/drills")
    work_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class _Change:
    subject: SubjectId
    op_id: str
    """Empty for the subject's creation."""
    version: int


@dataclass
class _Load:
    """The acknowledged changes, in the order their acknowledgements arrived."""

    store: RedisStore
    versions: dict[SubjectId, int]
    acked: list[_Change] = field(default_factory=list)
    snapshot_started: bool = False
    acked_during: asyncio.Event = field(default_factory=asyncio.Event)
    stop: bool = False

    async def _send(self, call: Callable[[], Awaitable[T]]) -> T:
        """A write until it is acknowledged: resent on a timeout or a missing replica, which
        is safe (a create finds its record, a status change its op_id)."""
        for _ in range(SEND_TRIES - 1):
            try:
                return await call()
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        return await call()

    def _acknowledged(self, change: _Change) -> None:
        self.acked.append(change)
        if self.snapshot_started:
            self.acked_during.set()

    async def create(self, subject: SubjectId, now: int) -> None:
        record = SubjectRecord(subject, CodeKind.HEALTH, CITY, Colour.GREEN, 1, now)
        stored, _ = await self._send(lambda: self.store.create_subject(record, "drill:load"))
        self.versions[subject] = stored.version
        self._acknowledged(_Change(subject, "", stored.version))

    async def convert(self, subject: SubjectId, rng: random.Random) -> None:
        change = StatusChange(
            subject=subject,
            if_version=self.versions[subject],
            colour=rng.choice(COLOURS),
            op_id=uuid.uuid4().hex,
            actor="drill:backup-restore",
            reason="drill",
            at=int(time.time()),
        )
        result = await self._send(lambda: self.store.set_status(change))
        self.versions[subject] = result.version
        self._acknowledged(_Change(subject, change.op_id, result.version))

    async def keep_writing(self, subjects: Sequence[SubjectId], rng: random.Random) -> None:
        """Convert these subjects one after another until told to stop."""
        while True:
            for subject in subjects:
                if self.stop:
                    return
                await self.convert(subject, rng)


async def _gather_bounded(calls: Sequence[Callable[[], Awaitable[Any]]]) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


def _subjects(count: int, salt: bytes) -> list[SubjectId]:
    """Synthetic pseudonyms (the drill holds no identifiers), new for every run."""
    return [
        subject_id(hashlib.sha256(salt + n.to_bytes(4, "big")).digest()[:12]) for n in range(count)
    ]


class _World:
    """The drill's two clusters, its keys and its logins, in its own folder."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.source = DevCluster(work / "source", find_free_base_port())
        self.target: DevCluster | None = None
        keys = work / "keys"
        env = {
            "KEYS_KEYRING_FILE": keys / "keyring.json",
            "KEYS_KEK_FILE": keys / "kek",
            "KEYS_PEPPER_FILE": keys / "pepper",
            "KEYS_ALIAS_KEY_FILE": keys / "alias-key",
            "KEYS_RECORD_MAC_FILE": keys / "record-mac.json",
            "KEYS_AUDIT_MAC_FILE": keys / "audit-mac.json",
            "KEYS_CHECKPOINT_KEY_FILE": keys / "checkpoint-ed25519.pem",
            "KEYS_CREDENTIALS_FILE": work / "credentials.json",
        }
        self.key_env = {f"{ENV_PREFIX}{k}": str(v) for k, v in env.items()}

    def settings(self, cluster: DevCluster) -> Settings:
        """The services' settings for one of the clusters."""
        return load_settings(None, self.key_env | cluster.client_env())

    def start_target(self) -> DevCluster:
        """The fresh cluster to restore into, on ports the source does not use."""
        self.target = DevCluster(self.work / "restored", find_free_base_port())
        self.target.start()
        return self.target

    def stop(self) -> None:
        for cluster in (self.target, self.source):
            if cluster is not None:
                cluster.stop()


def add_user(cluster: DevCluster, user: str, rule: str, password_file: Path) -> StoreSecurity:
    """Give every node of ``cluster`` the ACL user ``user`` with ``rule`` and a new password;
    the login as it. Only the password's SHA-256 goes on the command line."""
    password = secrets.token_urlsafe(32)
    write_private(password_file, password.encode())
    digest = hashlib.sha256(password.encode()).hexdigest()
    for port in cluster.ports:
        reply = cluster.command(
            port, "ACL", "SETUSER", user, "reset", "on", f"#{digest}", *rule.split()
        )
        if reply.strip() != "OK":
            raise ClusterError(f"ACL SETUSER {user} failed on port {port}")
    m = cluster.material
    return load_security(
        username=user,
        password_file=str(password_file),
        tls=True,
        ca_file=str(m.ca_file),
        cert_file=str(m.client_cert),
        key_file=str(m.client_key),
        server_name=SERVER_NAME,
    )


def _store(settings: Settings) -> RedisStore:
    # Deadlines for a machine that may be busy: a write is still acknowledged only once a
    # replica has it; a slow one is resent, never counted.
    tuned = dataclasses.replace(
        store_settings(settings),
        read_deadline_ms=5000,
        write_deadline_ms=5000,
        replica_ack_timeout_ms=2000,
    )
    store = RedisStore(tuned)
    store.keys = store_keys(settings)
    return store


async def _with_fast(
    cluster: DevCluster, security: StoreSecurity, work: Callable[[FastCluster], Awaitable[T]]
) -> T:
    fast = backup_client(parse_nodes(cluster.nodes_spec), security)
    try:
        await fast.start()
        return await work(fast)
    finally:
        await fast.aclose()


def _epoch_key(index: int) -> str:
    return fence_keys(int(sorted(CITIES)[index]))[1]


async def _seed_epochs(fast: FastCluster) -> list[int]:
    """Give each city's write-lease epoch counter a distinct value, as leases taken over time
    would; the values."""
    seeded = []
    for index in range(len(CITIES)):
        key = _epoch_key(index)
        seeded.append(int(await fast.execute(key, "INCRBY", key, index + 1)))
    return seeded


async def _epochs(fast: FastCluster) -> list[int]:
    """Each city's epoch counter (0: none)."""
    return [int(await fast.execute(k, "GET", k) or 0) for k in map(_epoch_key, range(len(CITIES)))]


def _keys_per_batch(options: BackupDrillOptions) -> int:
    """Batches small enough that each primary's copy takes several round trips, so that the
    held first one leaves slots still to copy (about 4 + changes keys a subject, over 3
    primaries: some 8 batches each)."""
    return max(16, options.subjects * (4 + options.changes) // 24)


class _Hold:
    """The snapshot's progress hook: after its first batch of slots was copied, it waits
    until the load acknowledges another change, so that writes land between copied slots
    and slots still to copy."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.held = False

    async def __call__(self, progress: Progress) -> None:
        if not self.held:
            self.held = True
            self.load.acked_during.clear()
            await asyncio.wait_for(self.load.acked_during.wait(), HOLD_TIMEOUT_S)


async def _load_and_snapshot(
    world: _World, options: BackupDrillOptions, snapshot_dir: Path, backup: StoreSecurity
) -> tuple[_Load, int, dict[str, Any]]:
    """The loaded source, the acknowledged changes, the boundary, the snapshot's numbers."""
    store = _store(world.settings(world.source))
    rng = random.Random(20)
    try:
        subjects = _subjects(options.subjects, os.urandom(8))
        load = _Load(store, {})
        now = int(time.time())
        await _gather_bounded([functools.partial(load.create, s, now) for s in subjects])
        for _ in range(options.changes):
            await _gather_bounded([functools.partial(load.convert, s, rng) for s in subjects])
        shares = [subjects[i :: options.writers] for i in range(options.writers)]
        writers = [
            asyncio.create_task(load.keep_writing(share, random.Random(i)))
            for i, share in enumerate(shares)
            if share
        ]
        # The boundary: what was acknowledged when the snapshot starts. Nothing can be
        # appended between these two lines (no await between them).
        boundary = len(load.acked)
        load.snapshot_started = True
        started = time.monotonic()
        try:
            manifest = await _with_fast(
                world.source,
                backup,
                lambda fast: take_snapshot(
                    fast, snapshot_dir, int(time.time()), _Hold(load), _keys_per_batch(options)
                ),
            )
            snapshot_s = time.monotonic() - started
            during = len(load.acked) - boundary
        finally:
            load.stop = True
            await asyncio.gather(*writers)
    finally:
        await store.close()
    return (
        load,
        boundary,
        {
            "snapshot_keys": manifest.keys,
            "snapshot_bytes": sum(f.bytes for f in manifest.files),
            "snapshot_files": len(manifest.files),
            "snapshot_slots_retried": manifest.slots_retried,
            "snapshot_s": round(snapshot_s, 3),
            "acknowledged_during_snapshot": during,
        },
    )


def _present(
    change: _Change,
    records: dict[SubjectId, SubjectRecord | None],
    trails: dict[SubjectId, set[str]],
) -> bool:
    """Whether a restored store holds an acknowledged change: its subject's record, at the
    change's version or later, and (a status change) its ``op_id`` in the audit trail."""
    record = records.get(change.subject)
    if record is None or record.version < change.version:
        return False
    return not change.op_id or change.op_id in trails.get(change.subject, set())


async def _check_restored(
    settings: Settings, load: _Load, boundary: int, end: int
) -> dict[str, Any]:
    """Read the restored cluster as the engine does and count what is there: every change
    acknowledged before ``boundary`` must be, those up to ``end`` (during the snapshot) may."""
    store = _store(settings)
    try:
        subjects = list(load.versions)
        records: dict[SubjectId, SubjectRecord | None] = {}
        trails: dict[SubjectId, set[str]] = {}
        seal_failures = 0

        async def read(subject: SubjectId) -> None:
            nonlocal seal_failures
            try:
                records[subject] = await store.get_subject(subject)
            except RecordTampered:
                seal_failures += 1
                records[subject] = None
            trails[subject] = {e.op_id for e in await store.audit_trail(subject, 100_000)}

        await _gather_bounded([functools.partial(read, s) for s in subjects])
        before, during = load.acked[:boundary], load.acked[boundary:end]
        lost = [c for c in before if not _present(c, records, trails)]
        audit_keys = load_mac_keyset(
            Path(settings.keys.audit_mac_file), settings.crypto.selected().mac
        )
        checked, broken = await verify_store(store, audit_keys)
    finally:
        await store.close()
    return {
        "subjects": len(subjects),
        "subjects_missing": sum(1 for r in records.values() if r is None) - seal_failures,
        "records_opened": sum(1 for r in records.values() if r is not None),
        "seal_failures": seal_failures,
        "acknowledged_before_snapshot": len(before),
        "found": len(before) - len(lost),
        "lost": len(lost),
        "lost_examples": [c.op_id or "create" for c in lost[:5]],
        "during_snapshot_found": sum(1 for c in during if _present(c, records, trails)),
        "chains_checked": checked,
        "chains_verified": checked - len(broken),
        "chains_broken": [b.problem for b in broken[:5]],
    }


def _goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        goal("acknowledged changes lost", s["lost"], "0", s["lost"] == 0),
        goal("subjects missing", s["subjects_missing"], "0", s["subjects_missing"] == 0),
        goal("sealed records that do not open", s["seal_failures"], "0", s["seal_failures"] == 0),
        goal(
            "audit chains verified",
            s["chains_verified"],
            f"{s['subjects']} (every subject)",
            s["chains_verified"] == s["subjects"] and s["chains_checked"] == s["subjects"],
        ),
        goal(
            "cities' epoch counters raised past the snapshot's",
            s["epochs_raised"],
            f"{len(CITIES)} (every city)",
            s["epochs_raised"] == len(CITIES),
        ),
        goal(
            "keys restored",
            s["restored_keys"],
            f"{s['snapshot_keys']} (the snapshot's)",
            s["restored_keys"] == s["snapshot_keys"],
        ),
    ]


def render_markdown(summary: dict[str, Any]) -> str:
    """The readable report."""
    verdict = "PASS" if summary["passed"] else "FAIL"
    lines = [
        f"# Drill `{BACKUP_DRILL}`: {verdict}",
        "",
        f"{summary['subjects']} subjects, {summary['options']['changes']} changes each before "
        f"the snapshot; {summary['options']['writers']} writers kept converting during it.",
        "",
        *goals_table(summary["goals"]),
    ]
    lines += [
        "",
        f"Acknowledged before the snapshot: {summary['acknowledged_before_snapshot']}; found "
        f"after the restore: {summary['found']}; lost: {summary['lost']}.",
        f"Acknowledged during the snapshot: {summary['acknowledged_during_snapshot']} "
        f"(in the snapshot: {summary['during_snapshot_found']}; either is correct).",
        f"Snapshot: {summary['snapshot_keys']} keys, {summary['snapshot_bytes']:,} bytes in "
        f"{summary['snapshot_files']} files, {summary['snapshot_s']:.2f} s "
        f"({summary['snapshot_slots_retried']} slots read again). Restore: "
        f"{summary['restored_keys']} keys, {summary['restore_s']:.2f} s, replicas confirmed "
        f"{json.dumps(summary['replicas_acked'])}.",
        f"Audit chains verified: {summary['chains_verified']} of {summary['chains_checked']}.",
        "",
    ]
    return "\n".join(lines)


async def _restore_and_check(
    world: _World,
    target: DevCluster,
    restorer: StoreSecurity,
    snapshot_dir: Path,
    load: _Load,
    boundary: int,
    end: int,
) -> dict[str, Any]:
    report = await _with_fast(target, restorer, lambda fast: restore_snapshot(fast, snapshot_dir))
    checks = await _check_restored(world.settings(target), load, boundary, end)
    return {
        "restored_keys": report.keys,
        "restore_s": round(report.seconds, 3),
        "replicas_acked": report.replicas_acked,
        **checks,
    }


def _run(world: _World, options: BackupDrillOptions) -> dict[str, Any]:
    # The clusters are started from this thread, never from a worker thread: the kernel's
    # parent-death signal, which keeps no node alive past the drill, follows the thread that
    # started the process.
    world.source.start()
    ensure_dev_material(world.settings(world.source))
    snapshot_dir = world.work / "snapshot"
    backup = add_user(world.source, "backup", SNAPSHOT_ACL_RULE, world.work / "backup.password")
    admin = world.source.client_security("admin")
    seeded = asyncio.run(_with_fast(world.source, admin, _seed_epochs))
    load, boundary, numbers = asyncio.run(_load_and_snapshot(world, options, snapshot_dir, backup))
    end = boundary + numbers["acknowledged_during_snapshot"]
    target = world.start_target()
    restorer = add_user(target, "restore", RESTORE_ACL_RULE, world.work / "restore.password")
    restored = asyncio.run(
        _restore_and_check(world, target, restorer, snapshot_dir, load, boundary, end)
    )
    after = asyncio.run(_with_fast(target, target.client_security("admin"), _epochs))
    raised = (a == b + EPOCH_RAISE for a, b in zip(after, seeded, strict=True))
    restored["epochs_raised"] = sum(raised)
    summary: dict[str, Any] = {
        "drill": BACKUP_DRILL,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(options).items()
        },
        "snapshot_dir": str(snapshot_dir),
        **numbers,
        **restored,
    }
    summary["goals"] = _goals(summary)
    summary["passed"] = all(g["passed"] for g in summary["goals"])
    return summary


def run_backup_drill(options: BackupDrillOptions) -> tuple[dict[str, Any], Path]:
    """Run the drill; its summary and the path of its JSON report (Markdown beside)."""
    if options.subjects < 1 or options.writers < 1 or options.changes < 0:
        raise ValueError("the drill needs a subject, a writer and no negative count of changes")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    options.out_dir.mkdir(parents=True, exist_ok=True)
    work = options.work_dir or Path(
        tempfile.mkdtemp(prefix=f"{BACKUP_DRILL}-", dir=options.out_dir)
    )
    world = _World(work)
    try:
        summary = _run(world, options)
    finally:
        world.stop()
    report = options.out_dir / f"{BACKUP_DRILL}-{stamp}.json"
    report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    report.with_suffix(".md").write_text(render_markdown(summary))
    return summary, report
