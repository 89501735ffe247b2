"""Backup and restore of the store's Redis Cluster, key by key: ``DUMP`` and ``RESTORE``.

Why keys and not the nodes' RDB files: this works the same against a self-run cluster and a
managed one (where nobody may copy a node's files or open a replication stream), needs no
access to the nodes' disks, and restores into a cluster of any layout (three masters or
five, other addresses, other slot assignments), since every key goes where the target's slot
map sends it. What it costs: every value crosses the network as a ``DUMP`` payload (an RDB
fragment; the target must run the same Redis or a newer one), which is slower than streaming
whole RDB files for a very large keyspace (docs/operations.md compares the two).

**Consistency.** A snapshot reads the cluster slot by slot. Each slot's keys are dumped in one
``MULTI``/``EXEC`` transaction that also lists the slot's keys again and reads the node's
clock; if the list changed since it was read, the slot is read again. So each slot is copied
at one instant, and since every key about a subject carries the subject's hash tag, a
subject's record, audit stream and markers are always copied together and consistent. Slots
are copied at different instants while the services keep writing: **every write acknowledged
before the snapshot started is in it**; a write acknowledged during the snapshot is in it or
not, depending on whether its slot had been copied yet.

**Rights.** The snapshot needs a login allowed :data:`SNAPSHOT_ACL_RULE` (read only), the
restore one allowed :data:`RESTORE_ACL_RULE`; neither is the services' user.
"""

from __future__ import annotations

__all__ = [
    "RESTORE_ACL_RULE",
    "SNAPSHOT_ACL_RULE",
    "Progress",
    "RestoreReport",
    "backup_client",
    "parse_slots",
    "restore_snapshot",
    "take_snapshot",
]

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path
from typing import Any, TypeVar

import hiredis

from codeengine.code.model import CITIES
from codeengine.ops.backupformat import (
    BackupError,
    Manifest,
    Record,
    ShardFile,
    ShardWriter,
    check_snapshot,
    make_snapshot_dir,
    read_records,
    write_manifest,
)
from codeengine.store.cluster import SLOT_COUNT, FastCluster, tag_slot
from codeengine.store.keyspace import fence_keys
from codeengine.store.security import StoreSecurity

SNAPSHOT_ACL_RULE = (
    "resetchannels ~* -@all +ping +asking +info +time +multi +exec +dump +pttl "
    "+cluster|slots +cluster|countkeysinslot +cluster|getkeysinslot"
)
"""What a snapshot sends: it reads every key and changes nothing."""
RESTORE_ACL_RULE = (
    "resetchannels ~* -@all +ping +asking +dbsize +restore +incrby +wait +cluster|slots "
    "+cluster|info +cluster|countkeysinslot"
)
"""What a restore sends: it writes keys with ``RESTORE`` (never replacing one), raises the
cities' epoch counters it restored (``INCRBY``) and waits for the replicas."""

EPOCH_RAISE = 1000
"""How far a restore raises each city's write-lease epoch counter (codeengine.store.fence).

Slots are copied one after another, so a subject's record may hold an epoch later than the
counter's value in the snapshot; a lease granted from the restored counter would then be
refused by that record. Epochs only have to grow, so a raise far above the leases a snapshot's
few seconds can see is harmless."""
_EPOCH_KEYS = frozenset(fence_keys(int(city))[1].encode() for city in CITIES)

KEYS_PER_BATCH = 2000
"""About this many keys of one primary are listed, then dumped, in one round trip."""
COUNTS_PER_CALL = 2048
"""Slots whose keys are counted in one round trip."""
KEYS_PER_RESTORE = 500
"""``RESTORE`` commands sent in one round trip."""
MAX_KEYS_PER_SLOT = 100_000
"""More keys than this in one slot is not this engine's keyspace (a province's subjects put a
few thousand in each): the snapshot refuses rather than hold them in one transaction."""
MAX_IN_FLIGHT = 2 * MAX_KEYS_PER_SLOT + 64
"""Commands one connection may have in flight: a whole slot's transaction (a DUMP and a PTTL a
key) must fit."""
CONNECT_TIMEOUT_S = 5.0
SLOT_RETRIES = 5
BATCH_DEADLINE_S = 60.0
"""One round trip of a batch, which may carry many large values."""
WAIT_TIMEOUT_MS = 10_000

_ReplyError = hiredis.ReplyError
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a snapshot or restore is: ``done`` of ``total`` slots (snapshot) or keys
    (restore; ``total`` 0 when only some slots are restored: unknown), and the keys copied so
    far."""

    phase: str
    done: int
    total: int
    keys: int


ProgressHook = Callable[[Progress], Awaitable[None]]
"""Awaited after each batch: a progress line, or a drill that holds the snapshot until the
load has written during it."""


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore wrote."""

    keys: int
    """Keys restored; one whose expiry passed before the restore is counted, and Redis
    answers its ``RESTORE ... ABSTTL`` without creating it."""
    files: int
    epochs_raised: int
    """Cities' epoch counters restored and raised by :data:`EPOCH_RAISE`."""
    replicas_acked: dict[str, int]
    """Per target primary (``host:port``), the replicas that confirmed every restored key."""
    seconds: float


def backup_client(nodes: Sequence[tuple[str, int]], security: StoreSecurity) -> FastCluster:
    """A cluster client for a snapshot or a restore: patient, and room for a slot's keys."""
    return FastCluster(
        nodes,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        deadline_s=CONNECT_TIMEOUT_S,
        max_in_flight=MAX_IN_FLIGHT,
        security=security,
    )


@functools.cache
def _slot_routes() -> tuple[str, ...]:
    """A key that hashes to each slot, to address a slot's primary (a hash tag of digits)."""
    routes: list[str | None] = [None] * SLOT_COUNT
    missing = SLOT_COUNT
    for n in count():
        slot = tag_slot(str(n))
        if routes[slot] is None:
            routes[slot] = f"{{{n}}}"
            missing -= 1
            if not missing:
                break
    return tuple(r for r in routes if r is not None)


def _batches(items: Sequence[T] | Iterator[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _addr(host: bytes, port: int) -> str:
    return f"{host.decode() if host and host != b'?' else '?'}:{int(port)}"


def _checked(reply: Any, what: str) -> Any:
    if type(reply) is _ReplyError:
        # Only the prefix: the rest of an error reply may quote a key (a pseudonym).
        prefix = str(reply).split(" ", 1)[0]
        raise BackupError(f"{what} refused: {prefix}")
    return reply


async def _primaries(fast: FastCluster) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
    """Each primary's ``host:port`` and slot ranges, by first slot; every slot served."""
    reply = _checked(await fast.execute_at_slot(0, "CLUSTER", "SLOTS", deadline_s=10), "SLOTS")
    ranges: dict[str, list[tuple[int, int]]] = {}
    for first, last, primary, *_replicas in reply:
        ranges.setdefault(_addr(primary[0], primary[1]), []).append((int(first), int(last)))
    served = sum(last - first + 1 for spans in ranges.values() for first, last in spans)
    if served != SLOT_COUNT:
        raise BackupError(f"the cluster serves {served} of {SLOT_COUNT} slots: heal it first")
    ordered = sorted(ranges.items(), key=lambda item: min(item[1]))
    return [(addr, tuple(sorted(spans))) for addr, spans in ordered]


async def _redis_version(fast: FastCluster) -> str:
    info = _checked(await fast.execute_at_slot(0, "INFO", "server", deadline_s=10), "INFO")
    for line in bytes(info).decode().splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _dump_block(slot: int, keys: list[bytes]) -> list[tuple[str, tuple[Any, ...]]]:
    """One slot's transaction: the node's clock, the slot's keys again, each DUMP and PTTL."""
    route = _slot_routes()[slot]
    block: list[tuple[str, tuple[Any, ...]]] = [
        (route, ("MULTI",)),
        (route, ("TIME",)),
        (route, ("CLUSTER", "GETKEYSINSLOT", slot, MAX_KEYS_PER_SLOT)),
    ]
    block += [(route, ("DUMP", key)) for key in keys]
    block += [(route, ("PTTL", key)) for key in keys]
    block.append((route, ("EXEC",)))
    return block


def _records(slot: int, keys: list[bytes], result: list[Any]) -> list[Record]:
    """The records of one slot's ``EXEC`` result (its keys were those listed)."""
    seconds, micros = result[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    dumps, ttls = result[2 : 2 + len(keys)], result[2 + len(keys) :]
    records = []
    for key, payload, ttl in zip(keys, dumps, ttls, strict=True):
        if payload is None or int(ttl) == -2:
            continue  # expired between the listing and the dump: not there at that instant
        records.append((slot, key, now_ms + int(ttl) if int(ttl) >= 0 else 0, bytes(payload)))
    return records


async def _listed(fast: FastCluster, slots: list[int]) -> dict[int, list[bytes]]:
    """The keys of each slot that has some."""
    routes = _slot_routes()
    commands = [(routes[s], ("CLUSTER", "GETKEYSINSLOT", s, MAX_KEYS_PER_SLOT)) for s in slots]
    replies = await fast.bulk(commands, deadline_s=BATCH_DEADLINE_S)
    listed = {}
    for slot, reply in zip(slots, replies, strict=True):
        keys = [bytes(k) for k in _checked(reply, "CLUSTER GETKEYSINSLOT")]
        if len(keys) >= MAX_KEYS_PER_SLOT:
            raise BackupError(f"slot {slot} holds {MAX_KEYS_PER_SLOT:,} keys or more")
        if keys:
            listed[slot] = keys
    return listed


async def _dump_slots(
    fast: FastCluster, pending: dict[int, list[bytes]]
) -> tuple[list[Record], int]:
    """Every key of the ``pending`` slots, each slot at one instant; and how many slots were
    read again because their keys changed in between."""
    records: list[Record] = []
    retried = 0
    for _ in range(SLOT_RETRIES):
        if not pending:
            return records, retried
        commands = [c for slot, keys in pending.items() for c in _dump_block(slot, keys)]
        replies = await fast.bulk(commands, deadline_s=BATCH_DEADLINE_S)
        again: dict[int, list[bytes]] = {}
        at = 0
        for slot, keys in pending.items():
            result = _checked(replies[at + 3 + 2 * len(keys)], "EXEC")
            at += 4 + 2 * len(keys)
            if result is None:
                raise BackupError(f"slot {slot}: the transaction was aborted; run it again")
            for part in result:
                _checked(part, "DUMP")
            now_keys = [bytes(k) for k in result[1]]
            if sorted(now_keys) != sorted(keys):
                again[slot] = now_keys
                continue
            records += _records(slot, keys, result)
        retried += len(again)
        pending = {slot: keys for slot, keys in again.items() if keys}
    if pending:
        raise BackupError(f"{len(pending)} slots kept changing during the snapshot; run it again")
    return records, retried


async def _side_by_side(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run these together; the first failure cancels the others and is raised as it is."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Tally:
    """What the snapshot's primaries, copied side by side, have done so far."""

    slots: int = 0
    keys: int = 0
    retried: int = 0


async def _key_counts(fast: FastCluster, slots: list[int]) -> list[tuple[int, int]]:
    """Each slot and how many keys it holds now."""
    routes = _slot_routes()
    counts = []
    for chunk in _batches(slots, COUNTS_PER_CALL):
        replies = await fast.bulk(
            [(routes[s], ("CLUSTER", "COUNTKEYSINSLOT", s)) for s in chunk],
            deadline_s=BATCH_DEADLINE_S,
        )
        for slot, reply in zip(chunk, replies, strict=True):
            counts.append((slot, int(_checked(reply, "CLUSTER COUNTKEYSINSLOT"))))
    return counts


def _by_size(counts: list[tuple[int, int]], keys_per_batch: int) -> Iterator[list[int]]:
    """The slots that hold keys, in batches of about ``keys_per_batch`` keys (a larger slot
    alone: a slot is always copied in one transaction)."""
    batch: list[int] = []
    size = 0
    for slot, keys in counts:
        if not keys:
            continue
        if batch and size + keys > keys_per_batch:
            yield batch
            batch, size = [], 0
        batch.append(slot)
        size += keys
    if batch:
        yield batch


async def _copy_primary(
    fast: FastCluster,
    writer: ShardWriter,
    keys_per_batch: int,
    tally: _Tally,
    progress: ProgressHook | None,
) -> None:
    """Copy one primary's slots into its shard file."""
    slots = [s for first, last in writer.slots for s in range(first, last + 1)]
    counts = await _key_counts(fast, slots)
    tally.slots += sum(1 for _, keys in counts if not keys)
    for batch in _by_size(counts, keys_per_batch):
        records, again = await _dump_slots(fast, await _listed(fast, batch))
        for record in records:
            writer.add(record)
        tally.slots += len(batch)
        tally.keys += len(records)
        tally.retried += again
        if progress is not None:
            await progress(Progress("snapshot", tally.slots, SLOT_COUNT, tally.keys))


async def take_snapshot(
    fast: FastCluster,
    out: Path,
    now: int,
    progress: ProgressHook | None = None,
    keys_per_batch: int = KEYS_PER_BATCH,
) -> Manifest:
    """Copy every key of the cluster into the new folder ``out``; the manifest written last.

    The primaries are copied side by side, each into its own file. ``now`` (s since the
    epoch) is recorded as the snapshot's start. ``fast`` must log in with the rights of
    :data:`SNAPSHOT_ACL_RULE`.
    """
    make_snapshot_dir(out)
    primaries = await _primaries(fast)
    version = await _redis_version(fast)
    writers = [ShardWriter(out, i, addr, spans) for i, (addr, spans) in enumerate(primaries)]
    tally = _Tally()
    try:
        await _side_by_side(
            [_copy_primary(fast, w, keys_per_batch, tally, progress) for w in writers]
        )
    finally:
        files = tuple(writer.close() for writer in writers)
    if progress is not None:
        await progress(Progress("snapshot", SLOT_COUNT, SLOT_COUNT, tally.keys))
    manifest = Manifest(now, version, tally.keys, files, tally.retried)
    write_manifest(out, manifest)
    return manifest


async def _targets(fast: FastCluster) -> list[tuple[str, int]]:
    """Each target primary (``host:port``, a slot it serves); BackupError unless the cluster
    serves every slot."""
    info = bytes(_checked(await fast.execute_at_slot(0, "CLUSTER", "INFO"), "CLUSTER INFO"))
    fields = {k: v for k, _, v in (line.partition(":") for line in info.decode().split())}
    if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_assigned") != "16384":
        raise BackupError("the target cluster is not whole (cluster_state not ok): heal it first")
    return [(addr, spans[0][0]) for addr, spans in await _primaries(fast)]


async def _require_empty(fast: FastCluster, targets: list[tuple[str, int]]) -> None:
    """BackupError unless the target holds no key at all."""
    for addr, slot in targets:
        size = int(_checked(await fast.execute_at_slot(slot, "DBSIZE"), "DBSIZE"))
        if size:
            raise BackupError(
                f"the target cluster is not empty ({size} keys on {addr}): "
                "restore only into a new, empty cluster (or only lost slots: --slots)"
            )


async def _require_empty_slots(fast: FastCluster, slots: frozenset[int]) -> None:
    """BackupError unless every one of ``slots`` holds no key in the target."""
    for slot, keys in await _key_counts(fast, sorted(slots)):
        if keys:
            raise BackupError(
                f"slot {slot} holds {keys} keys in the target: restore a slot only where it "
                "is empty"
            )


def parse_slots(text: str) -> frozenset[int]:
    """``--slots``: ranges and single slots, ``0-5460,10923,12000-12010``."""
    slots: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise BackupError(f"--slots: {part.strip()!r} is not a slot or a range FIRST-LAST")
        low, high = int(first), int(last or first)
        if not 0 <= low <= high < SLOT_COUNT:
            raise BackupError(f"--slots: {part.strip()!r} is not within 0-{SLOT_COUNT - 1}")
        slots.update(range(low, high + 1))
    return frozenset(slots)


def _restore_command(record: Record) -> tuple[bytes, tuple[Any, ...]]:
    _slot, key, expire_at, payload = record
    if expire_at:
        return key, ("RESTORE", key, expire_at, payload, "ABSTTL")
    return key, ("RESTORE", key, 0, payload)


async def restore_snapshot(
    fast: FastCluster,
    folder: Path,
    progress: ProgressHook | None = None,
    replicas: int = 1,
    slots: frozenset[int] | None = None,
) -> RestoreReport:
    """Write every key of the snapshot in ``folder`` into the empty cluster of ``fast``; or,
    with ``slots``, only the keys of those slots, which must be empty in the target (a shard
    whose data was lost, under slots another master now serves empty).

    The snapshot is checked whole first (:func:`check_snapshot`), so a partial or corrupt one
    writes nothing. Keys are written with ``RESTORE`` without ``REPLACE``: nothing present
    is ever overwritten. At the end each primary waits for ``replicas`` replicas to confirm
    every restored key. ``fast`` must log in with the rights of :data:`RESTORE_ACL_RULE`.
    """
    started = time.monotonic()
    manifest = check_snapshot(folder)
    targets = await _targets(fast)
    if slots is None:
        await _require_empty(fast, targets)
    else:
        await _require_empty_slots(fast, slots)
    total = manifest.keys if slots is None else None
    tally = _Tally()

    def wanted(shard: ShardFile) -> Iterator[Record]:
        records = read_records(folder, shard)
        if slots is None:
            return records
        return (r for r in records if r[0] in slots)

    epochs: list[bytes] = []

    async def restore_file(shard: ShardFile) -> None:
        for batch in _batches(wanted(shard), KEYS_PER_RESTORE):
            replies = await fast.bulk(
                [_restore_command(r) for r in batch], deadline_s=BATCH_DEADLINE_S
            )
            for reply in replies:
                _checked(reply, "RESTORE")
            epochs.extend(r[1] for r in batch if r[1] in _EPOCH_KEYS)
            tally.keys += len(batch)
            if progress is not None:
                await progress(Progress("restore", tally.keys, total or 0, tally.keys))

    await _side_by_side([restore_file(shard) for shard in manifest.files])
    written = tally.keys
    if total is not None and written != total:
        raise BackupError(f"restored {written} keys, the manifest lists {total}")
    if epochs:
        # Before the WAIT below, so that the replicas confirm the raised counters too.
        raised = await fast.bulk(
            [(k, ("INCRBY", k, EPOCH_RAISE)) for k in epochs], deadline_s=BATCH_DEADLINE_S
        )
        for reply in raised:
            _checked(reply, "INCRBY")
    acked = {}
    for addr, slot in targets:
        # WAIT counts the writes of its own connection: the one the RESTOREs went on.
        reply = await fast.execute_at_slot(
            slot, "WAIT", replicas, WAIT_TIMEOUT_MS, deadline_s=WAIT_TIMEOUT_MS / 1000 + 5
        )
        acked[addr] = int(_checked(reply, "WAIT"))
    return RestoreReport(
        written, len(manifest.files), len(epochs), acked, time.monotonic() - started
    )
