"""The store on a sharded Redis Cluster, through the project's own cluster client.

Every command goes through :class:`codeengine.store.cluster.FastCluster`: one pipelined
connection per primary, its slot map refreshed on failures, scripts reloaded on a node that
lost them. Every call runs under a deadline and every failure reaches the caller as
:class:`StoreUnavailable` (docs/architecture.md, pitfalls).
"""

from __future__ import annotations

__all__ = ["RedisStore", "StoreSettings"]

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack

from codeengine.code.display import DisplayedCode
from codeengine.code.errors import (
    AppealDecided,
    BatchConflict,
    CodeEngineError,
    NotWriter,
    Reason,
    StoreUnavailable,
    UnknownAppeal,
    UnknownBatch,
    UnknownSubject,
    VersionConflict,
    WriteNotReplicated,
)
from codeengine.code.fencing import NO_FENCE, Lease, Role, Switch, WriteFence, WriterToken, role_of
from codeengine.code.model import Colour, SubjectId
from codeengine.code.scans import PackedScan, ScanEntry, ScanWindow
from codeengine.code.status import AuditEntry, StatusChange, SubjectRecord, WriteResult
from codeengine.code.suites import b64url_decode, b64url_encode
from codeengine.code.verification import Revocations
from codeengine.metrics import SCANS_UNREADABLE, STORE_LATENCY, HotHistogram
from codeengine.store import keyspace
from codeengine.store.cluster import Address, FastCluster, Script, tag_slot
from codeengine.store.connection import consume_outcome
from codeengine.store.port import AliasBinding, RiskWrite
from codeengine.store.results import ClaimCode, ReleaseCode, RiskCode, WriteCode, did_write
from codeengine.store.scripts import (
    ALIAS_CLAIM,
    ALIAS_LINK,
    ALIAS_RELEASE,
    APPEND_SCANS,
    APPLY_RISK,
    CREATE_SUBJECT,
    FENCE_HANDOVER,
    FENCE_TICK,
    PUT_KEYRING,
    RESTORE_RISK,
    REVOKE,
    SET_OVERRIDE,
    SET_STATUS,
    SWAP_DISPLAY,
)

T = TypeVar("T")

log = logging.getLogger("codeengine.store.port")
BATCH_SNAPSHOT_TTL_S = 30 * 86400
"""How long a batch can be rolled back: its subjects' snapshots expire after this."""
MAX_BATCH_ERRORS = 100_000
MAX_RECENT_BATCHES = 100
"""How many batch ids the recent list keeps; older batches stay readable by id."""
BULK_ACK_FACTOR = 10
"""A bulk chunk's WAIT may take this many times the replica timeout of a single write."""
SCAN_COUNT = 1000
SCRIPT_ROWS = 250
"""Import rows per script call: each call holds its primary for about this many rows' work."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to reach the cluster and how long to wait for it."""

    nodes: tuple[tuple[str, int], ...]
    read_deadline_ms: int = 250
    write_deadline_ms: int = 1500
    replica_ack_timeout_ms: int = 500
    replicas_to_ack: int = 1
    topology_refresh_min_interval_s: float = 1.0


class RedisStore:
    """The :class:`codeengine.store.port.Store` on a Redis Cluster."""

    def __init__(self, settings: StoreSettings) -> None:
        self._settings = settings
        # The one client of every command: pipelined, a tenth of redis-py's CPU per command
        # (bench/store_client.py), WAIT-acknowledged writes sent with their WAIT.
        self._fast = FastCluster(
            settings.nodes,
            connect_timeout_s=settings.read_deadline_ms / 1000,
            deadline_s=settings.read_deadline_ms / 1000,
            refresh_min_interval_s=settings.topology_refresh_min_interval_s,
        )
        self._fast_started = False
        self._fast_starting: asyncio.Future[None] | None = None
        # Bulk jobs and ops reads (imports, rollbacks, bindings, audit scans) are not latency
        # bound: a chunk queued behind thousands of writes gets ten write deadlines.
        self._bulk_deadline_s = settings.write_deadline_ms / 1000 * BULK_ACK_FACTOR
        self._swap_display = self._fast.script(SWAP_DISPLAY)
        self._apply_risk = self._fast.script(APPLY_RISK)
        self._restore_risk = self._fast.script(RESTORE_RISK)
        self._alias_claim = self._fast.script(ALIAS_CLAIM)
        self._alias_release = self._fast.script(ALIAS_RELEASE)
        self._alias_link = self._fast.script(ALIAS_LINK)
        self._append_scans = self._fast.script(APPEND_SCANS)
        self._fence_tick = self._fast.script(FENCE_TICK)
        self._fence_handover = self._fast.script(FENCE_HANDOVER)
        # The WAIT-acknowledged writes, by script text.
        self._acked: dict[str, Script] = {
            text: self._fast.script(text)
            for text in (CREATE_SUBJECT, SET_STATUS, PUT_KEYRING, REVOKE, SET_OVERRIDE)
        }
        self.fence: WriteFence = NO_FENCE
        """Asked before every status write; an issuer of a city endpoint sets its keeper here."""
        # Latency series of the hot paths, looked up once.
        self._display_read = {
            o: HotHistogram(STORE_LATENCY.labels("display read", o)) for o in ("ok", "error")
        }

    # Plumbing: deadlines, error translation, scripts.

    async def _bounded(self, work: Callable[[], Awaitable[T]], deadline_ms: int, what: str) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with asyncio.timeout(deadline_ms / 1000):
                result = await work()
            outcome = "ok"
            return result
        except TimeoutError as exc:
            raise StoreUnavailable(f"store {what} failed: timed out") from exc
        finally:
            STORE_LATENCY.labels(what, outcome).observe(time.perf_counter() - started)

    async def _hot(self) -> FastCluster:
        """The cluster client, its slot map read on first use.

        Concurrent first calls share one start, and none waits past the read deadline for it.
        """
        if self._fast_started:
            return self._fast
        if self._fast_starting is None or self._fast_starting.done():
            self._fast_starting = asyncio.ensure_future(self._fast.start())
            self._fast_starting.add_done_callback(consume_outcome)
        try:
            async with asyncio.timeout(self._settings.read_deadline_ms / 1000):
                await asyncio.shield(self._fast_starting)
        except TimeoutError:
            raise StoreUnavailable("store not reachable within the deadline") from None
        self._fast_started = True
        return self._fast

    async def refresh_topology(self) -> None:
        """Ask the cluster for its current slot map (after a failover or a resharding)."""
        await (await self._hot()).refresh()

    async def _write_then_wait(
        self,
        script: str,
        key_list: list[str],
        args: list[Any],
        wrote: Callable[[Any], bool] = lambda result: True,
    ) -> Any:
        """Run a write script and WAIT for ``replicas_to_ack`` replicas on its connection.

        WAIT counts the replicas that have the writes of *its own connection*, so both
        commands leave together (:meth:`FastCluster.evalsha_then_wait`); a MOVED or ASK fails
        the call (a resend is safe). ``wrote(result)`` says whether the script changed
        anything: a refusal (stale version, unknown subject) needs no replica and is answered
        as such even while one lags.
        """
        fast = await self._hot()
        settings = self._settings
        result, acked = await fast.evalsha_then_wait(
            self._acked[script],
            key_list,
            args,
            settings.replicas_to_ack,
            settings.replica_ack_timeout_ms,
            deadline_s=settings.write_deadline_ms / 1000,
        )
        if not wrote(result):
            return result
        if int(fast.reply_or_raise(acked, "WAIT")) < settings.replicas_to_ack:
            raise WriteNotReplicated("no replica confirmed the write in time")
        return result

    # The Store protocol.

    async def ping(self) -> None:
        """Return when every primary answers PING."""

        async def work() -> None:
            await (await self._hot()).ping()

        await self._bounded(work, self._settings.read_deadline_ms, "ping")

    async def get_subject(self, subject: SubjectId) -> SubjectRecord | None:
        """The subject's record, or None."""

        async def work() -> bytes | None:
            return await (await self._hot()).get(keyspace.subject_key(subject))

        raw = await self._bounded(work, self._settings.read_deadline_ms, "read")
        return None if raw is None else SubjectRecord.unpack(subject, raw)

    async def create_subject(self, record: SubjectRecord, actor: str) -> tuple[SubjectRecord, bool]:
        """Create the subject unless it exists (idempotent: a resend finds it created)."""
        subject = record.subject
        token = await self.fence.writer()

        async def work() -> Any:
            return await self._write_then_wait(
                CREATE_SUBJECT,
                [keyspace.subject_key(subject), keyspace.audit_key(subject)],
                [record.pack(), actor, *token],
            )

        created, raw = await self._bounded(work, self._settings.write_deadline_ms, "create")
        return SubjectRecord.unpack(subject, raw), bool(created)

    async def set_status(self, change: StatusChange) -> WriteResult:
        """Versioned compare-and-set of the colour, idempotent by operation id."""
        token = await self.fence.writer()

        async def work() -> Any:
            return await self._write_then_wait(
                SET_STATUS,
                list(keyspace.subject_keys(change.subject, change.op_id)),
                [
                    change.if_version,
                    int(change.colour),
                    change.op_id,
                    change.at,
                    change.actor,
                    change.reason,
                    *token,
                ],
                wrote=did_write,
            )

        code, version, colour = await self._bounded(work, self._settings.write_deadline_ms, "write")
        if code == WriteCode.UNKNOWN_SUBJECT:
            raise UnknownSubject("no such subject")
        if code == WriteCode.STALE:
            raise VersionConflict(int(version))
        if code == WriteCode.FENCED:
            raise _fenced_off(token)
        return WriteResult(
            version=int(version), applied=code == WriteCode.APPLIED, colour=Colour(int(colour))
        )

    async def audit_trail(self, subject: SubjectId, limit: int = 100) -> list[AuditEntry]:
        """The subject's audit entries, oldest first."""
        return [entry for _ms, entry in await self.audit_trail_timed(subject, limit)]

    async def audit_trail_timed(
        self, subject: SubjectId, limit: int = 100
    ) -> list[tuple[int, AuditEntry]]:
        """The subject's audit entries with the store's time of each (ms, from its stream id)."""

        async def work() -> Any:
            key = keyspace.audit_key(subject)
            return await (await self._hot()).execute(key, "XRANGE", key, "-", "+", "COUNT", limit)

        rows = await self._bounded(work, self._settings.read_deadline_ms, "audit read")
        return [(int(i.split(b"-", 1)[0]), _parse_audit(_fields(flat)[b"e"])) for i, flat in rows]

    async def display_state(
        self, subject: SubjectId, kind: int | None = None
    ) -> tuple[SubjectRecord | None, DisplayedCode | None]:
        """The subject's record and current display token of ``kind`` (one MGET, one slot)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            # Started once: skip the coroutine that would only say so.
            fast = self._fast if self._fast_started else await self._hot()
            keys_ = [keyspace.subject_key(subject), keyspace.token_key(subject, kind)]
            # Both keys carry the subject's hash tag: its slot is theirs.
            record_raw, token_raw = await fast.mget(keys_, slot=tag_slot(subject))
            outcome = "ok"
        finally:
            self._display_read[outcome].observe(time.perf_counter() - started)
        record = None if record_raw is None else SubjectRecord.unpack(subject, record_raw)
        shown = None if token_raw is None else DisplayedCode.unpack(token_raw)
        return record, shown

    async def replace_display(
        self,
        subject: SubjectId,
        seen: DisplayedCode | None,
        new: DisplayedCode,
        ttl_ms: int,
        kind: int | None = None,
    ) -> DisplayedCode:
        """Store ``new`` unless another process refreshed first; the token now stored."""
        new_raw = new.pack()
        args: list[bytes | int] = [b"" if seen is None else seen.pack(), new_raw, ttl_ms]
        started = time.perf_counter()
        outcome = "error"
        try:
            await self._hot()
            stored = await self._swap_display(
                [keyspace.token_key(subject, kind)],
                args,
                deadline_s=self._settings.write_deadline_ms / 1000,
            )
            outcome = "ok"
        finally:
            STORE_LATENCY.labels("display write", outcome).observe(time.perf_counter() - started)
        return new if stored == new_raw else DisplayedCode.unpack(stored)

    async def get_keyring(self) -> bytes | None:
        """The sealed keyring, or None."""
        fast = await self._hot()
        raw = await fast.get(keyspace.KEYRING_KEY)
        return None if raw is None else bytes(raw)

    async def put_keyring(
        self, expected_version: int, sealed: bytes, version: int, trust: bytes
    ) -> None:
        """Compare-and-set the keyring version and its trust list, acknowledged after WAIT."""

        async def work() -> Any:
            return await self._write_then_wait(
                PUT_KEYRING,
                [keyspace.KEYRING_KEY, keyspace.TRUST_KEY, keyspace.KEYRING_VERSION_KEY],
                [expected_version, sealed, version, trust],
                wrote=did_write,
            )

        code, current = await self._bounded(work, self._settings.write_deadline_ms, "keyring")
        if code == WriteCode.STALE:
            raise VersionConflict(int(current))

    async def get_trust(self) -> bytes | None:
        """The public trust list JSON, or None."""
        fast = await self._hot()
        raw = await fast.get(keyspace.TRUST_KEY)
        return None if raw is None else bytes(raw)

    async def _revoke(self, key: str, member: str, score: int, prune_below: int | None) -> None:
        async def work() -> Any:
            prune = "" if prune_below is None else str(prune_below)
            return await self._write_then_wait(REVOKE, [key], [member, score, prune])

        await self._bounded(work, self._settings.write_deadline_ms, "revoke")

    async def revoke_code(self, cti: bytes, expires_at: int, now: int) -> None:
        """Revoke a code id until its expiry; expired entries are pruned on the way."""
        await self._revoke(keyspace.REVOKED_CODES_KEY, cti.hex(), expires_at, now)

    async def revoke_key(self, kid: bytes, now: int) -> None:
        """Revoke a key id for good."""
        await self._revoke(keyspace.REVOKED_KEYS_KEY, b64url_encode(kid), now, None)

    async def revocations(self, now: int) -> Revocations:
        """Both revocation sets, read concurrently (pipelined on the keyring's shard)."""
        fast = await self._hot()
        codes, kids = await asyncio.gather(
            fast.execute(
                keyspace.REVOKED_CODES_KEY, "ZRANGEBYSCORE", keyspace.REVOKED_CODES_KEY, now, "+inf"
            ),
            fast.execute(keyspace.REVOKED_KEYS_KEY, "ZRANGE", keyspace.REVOKED_KEYS_KEY, 0, -1),
        )
        return Revocations(
            codes=frozenset(bytes.fromhex(c.decode()) for c in codes),
            keys=frozenset(b64url_decode(k.decode()) for k in kids),
        )

    async def append_scans(
        self, entries: list[PackedScan], max_len: int, token: str
    ) -> list[PackedScan]:
        """Append every entry to its city's stream: one script call per city, pipelined.

        Returns the entries of the cities whose call failed; the others are written once.
        A city's script skips a batch whose ``token`` it has written already (a resend).
        """
        await self._hot()
        # Each city's script arguments, gathered as they are sent: the limit, then the entries.
        by_city: defaultdict[int, list[int | bytes]] = defaultdict(lambda: [max_len])
        for city, packed in entries:
            by_city[city].append(packed)
        deadline_s = self._settings.write_deadline_ms / 1000
        outcomes = await asyncio.gather(
            *(
                self._append_scans(
                    [keyspace.scan_log_key(city), keyspace.scan_batch_key(city, token)],
                    args,
                    deadline_s=deadline_s,
                )
                for city, args in by_city.items()
            ),
            return_exceptions=True,
        )
        failed_cities = set()
        for city, outcome in zip(by_city, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                failed_cities.add(city)
        return [entry for entry in entries if entry[0] in failed_cities] if failed_cities else []

    async def read_scans(self, city: int, from_ms: int, to_ms: int, limit: int) -> ScanWindow:
        """Stream ids are millisecond times, so a time window is an XRANGE."""
        fast = await self._hot()
        key = keyspace.scan_log_key(city)
        rows = await fast.execute(
            key, "XRANGE", key, from_ms, to_ms, "COUNT", limit + 1,
            deadline_s=self._settings.write_deadline_ms / 1000,
        )  # fmt: skip
        entries = []
        unreadable = 0
        for _id, fields in rows[:limit]:
            try:
                entries.append(
                    ScanEntry.from_fields(dict(zip(fields[::2], fields[1::2], strict=True)))
                )
            except (CodeEngineError, ValueError):
                unreadable += 1
        if unreadable:
            # Only how many and where: an entry that is not the engine's may hold anything.
            log.warning(
                "scan log of city %d: %d unreadable entries skipped in %d..%d",
                city, unreadable, from_ms, to_ms,
            )  # fmt: skip
            SCANS_UNREADABLE.inc(unreadable)
        return ScanWindow(entries, len(rows) > limit, unreadable)

    # Bulk conversion, appeals, audit chains.

    async def get_subjects(self, subjects: Sequence[SubjectId]) -> list[SubjectRecord | None]:
        """Several subjects' records (pipelined GETs, one per subject's slot)."""
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        raws = await asyncio.gather(
            *(fast.get(keyspace.subject_key(s), deadline_s=deadline_s) for s in subjects)
        )
        return [
            None if raw is None else SubjectRecord.unpack(s, raw)
            for s, raw in zip(subjects, raws, strict=True)
        ]

    async def begin_batch(
        self, batch_id: str, rules_version: int, now: int
    ) -> dict[str, str] | None:
        """Register the batch, or find it done (returned), rolled back (refused) or resumable."""
        await self.fence.writer()
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        # apply_risk sends its scripts by hash alone, without awaiting anything first, so
        # that chunks in flight together reach each primary in file order.
        created = await fast.execute(
            key, "HSETNX", key, "state", "running", deadline_s=self._bulk_deadline_s
        )
        if int(created):
            fields: list[str | int] = [
                "rules_version",
                rules_version,
                "created_at",
                now,
                "updated_at",
                now,
            ]
            await fast.execute(key, "HSET", key, *fields, deadline_s=self._bulk_deadline_s)
            recent = keyspace.RECENT_BATCHES_KEY
            await fast.execute(
                recent, "ZADD", recent, now, batch_id, deadline_s=self._bulk_deadline_s
            )
            await fast.execute(
                recent,
                "ZREMRANGEBYRANK",
                recent,
                0,
                -MAX_RECENT_BATCHES - 1,
                deadline_s=self._bulk_deadline_s,
            )
            return None
        meta = await self._batch_meta(batch_id)
        if meta.get("state") == "rolled_back":
            raise BatchConflict(
                "this batch was rolled back: import it again under a new id",
                reason=Reason.BATCH_ROLLED_BACK,
            )
        if meta.get("state") == "done":
            return meta
        return None

    async def _batch_meta(self, batch_id: str) -> dict[str, str]:
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        flat = await fast.execute(key, "HGETALL", key, deadline_s=self._bulk_deadline_s)
        return _text_fields(flat)

    async def apply_risk(
        self, batch_id: str, writes: Sequence[RiskWrite], now: int, actor: str
    ) -> list[tuple[int, int]]:
        """Apply a chunk of risk records (a few script calls and a WAIT per primary)."""
        if not writes:
            return []
        fast = await self._hot()
        token = await self.fence.writer()
        started = time.perf_counter()
        outcome = "error"
        try:
            codes = await self._apply_risk_rows(fast, batch_id, writes, now, actor, token)
            # Code 3 too: a subject this batch changed in a run that stopped before listing it.
            listed = [
                w.subject
                for w, code in zip(writes, codes, strict=True)
                if code > RiskCode.UNCHANGED
            ]
            if listed:
                set_key = keyspace.batch_subjects_key(batch_id)
                await fast.execute(
                    set_key, "SADD", set_key, *listed, deadline_s=self._bulk_deadline_s
                )
            # Refused rows raise only now: the rows that did change are replicated and listed
            # for a rollback first, and the batch resumes at the endpoint that holds the lease.
            if RiskCode.FENCED in codes:
                raise _fenced_off(token)
            outcome = "ok"
        finally:
            STORE_LATENCY.labels("batch write", outcome).observe(time.perf_counter() - started)
        changed = (RiskCode.CHANGED, RiskCode.CREATED)
        return [(int(code in changed), int(code == RiskCode.CREATED)) for code in codes]

    async def _apply_risk_rows(
        self,
        fast: FastCluster,
        batch_id: str,
        writes: Sequence[RiskWrite],
        now: int,
        actor: str,
        token: WriterToken,
    ) -> list[int]:
        """The import script's code for each write, once a replica has what it changed.

        Rows are grouped by primary, in file order, a few hundred to a script call, and each
        primary's calls are followed by a WAIT in the same pipeline. WAIT counts the writes of
        its own connection, so it covers those calls and nothing sent after them: the next
        chunk's calls, already queued behind it, do not lengthen it.
        """
        by_primary: dict[Address | None, list[int]] = {}
        for index, write in enumerate(writes):
            primary = fast.primary_for(keyspace.subject_key(write.subject))
            by_primary.setdefault(primary, []).append(index)
        snapshot = _key_template(keyspace.batch_snapshot_key(_MARK, batch_id))
        head = (now, actor, batch_id, BATCH_SNAPSHOT_TTL_S, *token,
                *_RECORD_KEY, *snapshot, *_AUDIT_KEY)  # fmt: skip
        # A bulk chunk is thousands of writes: its replica gets longer to catch up than one.
        wait = ("WAIT", self._settings.replicas_to_ack,
                self._settings.replica_ack_timeout_ms * BULK_ACK_FACTOR)  # fmt: skip
        calls: list[list[int]] = []
        commands: list[tuple[str, tuple[Any, ...]]] = []
        for indices in by_primary.values():
            routing = keyspace.subject_key(writes[indices[0]].subject)
            for first in range(0, len(indices), SCRIPT_ROWS):
                part = indices[first : first + SCRIPT_ROWS]
                rows: list[Any] = []
                for index in part:
                    w = writes[index]
                    rows += (w.subject, int(w.colour), w.until, _colour_list(w.clears), w.reason,
                             int(w.kind), w.city, int(w.no_data))  # fmt: skip
                key = keyspace.subject_key(writes[part[0]].subject)
                calls.append(part)
                commands.append((key, ("EVALSHA", self._apply_risk.sha, 1, key, *head, *rows)))
            calls.append([])
            commands.append((routing, wait))
        replies = await fast.bulk(commands, deadline_s=self._bulk_deadline_s)
        codes = [0] * len(writes)
        wrote = False
        for part, reply in zip(calls, replies, strict=True):
            answer = fast.reply_or_raise(reply, "EVALSHA" if part else "WAIT")
            if part:
                for index, code in zip(part, answer, strict=True):
                    codes[index] = code
                wrote = wrote or RiskCode.CHANGED in answer or RiskCode.CREATED in answer
                continue
            # A primary's WAIT, after its calls: a refusal or a repeat needs no replica.
            if wrote and int(answer) < self._settings.replicas_to_ack:
                raise WriteNotReplicated("no replica confirmed the batch's writes in time")
            wrote = False
        return codes

    async def _replicated(self, fast: FastCluster, written: list[str], bulk: bool = False) -> None:
        # A bulk chunk is thousands of writes: its replica gets longer to catch up than one.
        timeout_ms = self._settings.replica_ack_timeout_ms * (BULK_ACK_FACTOR if bulk else 1)
        acked = await fast.wait_for_keys(written, self._settings.replicas_to_ack, timeout_ms)
        if acked < self._settings.replicas_to_ack:
            raise WriteNotReplicated("no replica confirmed the batch's writes in time")

    async def record_batch_progress(
        self, batch_id: str, counters: dict[str, int], errors: list[tuple[int, str]], now: int
    ) -> None:
        """Counters so far (any API caller sees the progress) and the refused rows."""
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        fields = [x for name, value in counters.items() for x in (name, value)]
        await fast.execute(
            key, "HSET", key, *fields, "updated_at", now, deadline_s=self._bulk_deadline_s
        )
        if errors:
            errors_key = keyspace.batch_errors_key(batch_id)
            rows = [f"{line}:{reason}" for line, reason in errors]
            await fast.execute(
                errors_key, "RPUSH", errors_key, *rows, deadline_s=self._bulk_deadline_s
            )
            await fast.execute(
                errors_key,
                "LTRIM",
                errors_key,
                0,
                MAX_BATCH_ERRORS - 1,
                deadline_s=self._bulk_deadline_s,
            )

    async def finish_batch(
        self, batch_id: str, state: str, counters: dict[str, int], now: int
    ) -> None:
        """The final state and counters."""
        await self.record_batch_progress(batch_id, counters, [], now)
        fast = await self._hot()
        key = keyspace.batch_key(batch_id)
        await fast.execute(
            key, "HSET", key, "state", state, "finished_at", now, deadline_s=self._bulk_deadline_s
        )

    async def batch_info(
        self, batch_id: str, max_errors: int
    ) -> tuple[dict[str, str], list[tuple[int, str]]]:
        """State, counters and the first ``max_errors`` refused rows."""
        meta = await self._batch_meta(batch_id)
        if not meta:
            raise UnknownBatch("no batch with this id")
        fast = await self._hot()
        errors_key = keyspace.batch_errors_key(batch_id)
        raw = await fast.execute(
            errors_key, "LRANGE", errors_key, 0, max_errors - 1, deadline_s=self._bulk_deadline_s
        )
        errors = []
        for item in raw:
            line, _, reason = item.decode().partition(":")
            errors.append((int(line), reason))
        return meta, errors

    async def recent_batches(self, limit: int) -> list[tuple[str, dict[str, str]]]:
        """The newest ``limit`` batch ids and their metadata (one slot each, read together)."""
        fast = await self._hot()
        recent = keyspace.RECENT_BATCHES_KEY
        ids = await fast.execute(
            recent, "ZREVRANGE", recent, 0, limit - 1, deadline_s=self._bulk_deadline_s
        )
        names = [raw.decode() for raw in ids]
        metas = await asyncio.gather(*(self._batch_meta(name) for name in names))
        # A batch whose hash is gone (it never is today) is left out rather than shown empty.
        return [(name, meta) for name, meta in zip(names, metas, strict=True) if meta]

    async def rollback_batch(self, batch_id: str, now: int, actor: str) -> dict[str, int]:
        """Restore the batch's subjects in pipelined chunks, each acknowledged after WAIT."""
        meta = await self._batch_meta(batch_id)
        if not meta:
            raise UnknownBatch("no batch with this id")
        if meta.get("state") == "running":
            raise BatchConflict("the batch is being imported: wait until it is done")
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        set_key = keyspace.batch_subjects_key(batch_id)
        counts = {"restored": 0, "unchanged": 0, "changed_since": 0}
        cursor = "0"
        while True:
            cursor_raw, members = await fast.execute(
                set_key,
                "SSCAN",
                set_key,
                cursor,
                "COUNT",
                SCAN_COUNT,
                deadline_s=self._bulk_deadline_s,
            )
            subjects = [SubjectId(m.decode()) for m in members]
            # Asked again for every chunk: a rollback can outlast this endpoint's lease.
            token = await self.fence.writer()
            results = await asyncio.gather(
                *(
                    self._restore_risk(
                        [keyspace.subject_key(s), keyspace.batch_snapshot_key(s, batch_id),
                         keyspace.audit_key(s)],
                        [now, actor, batch_id, *token],
                        deadline_s=deadline_s,
                    )
                    for s in subjects
                )
            )  # fmt: skip
            restored = [
                s for s, r in zip(subjects, results, strict=True) if int(r[0]) == WriteCode.APPLIED
            ]
            if restored:
                await self._replicated(fast, [keyspace.subject_key(s) for s in restored], bulk=True)
            if any(int(r[0]) == WriteCode.FENCED for r in results):
                raise _fenced_off(token)
            for result in results:
                counts[_ROLLBACK_COUNTS.get(int(result[0]), "unchanged")] += 1
            cursor = cursor_raw.decode()
            if cursor == "0":
                break
        key = keyspace.batch_key(batch_id)
        fields = [x for name, value in counts.items() for x in (f"rollback_{name}", value)]
        await fast.execute(
            key,
            "HSET",
            key,
            "state",
            "rolled_back",
            "rolled_back_at",
            now,
            *fields,
            deadline_s=self._bulk_deadline_s,
        )
        return counts

    async def create_appeal(self, appeal_id: str, fields: dict[str, str]) -> None:
        """Store the appeal (a hash in its own slot), acknowledged after WAIT."""
        await self.fence.writer()
        fast = await self._hot()
        key = keyspace.appeal_key(appeal_id)
        await fast.execute(key, "HSET", key, *(x for item in fields.items() for x in item))
        await self._replicated(fast, [key])

    async def get_appeal(self, appeal_id: str) -> dict[str, str]:
        """The appeal's fields, or UnknownAppeal."""
        fast = await self._hot()
        key = keyspace.appeal_key(appeal_id)
        flat = await fast.execute(key, "HGETALL", key, deadline_s=self._bulk_deadline_s)
        if not flat:
            raise UnknownAppeal("no appeal with this id")
        return _text_fields(flat)

    async def decide_appeal(
        self,
        appeal_id: str,
        subject: SubjectId,
        decision: dict[str, str],
        override: tuple[Colour, int] | None,
        actor: str,
        now: int,
    ) -> int:
        """Record the decision once, then apply an upheld one's override, exactly once.

        A repeat of the same decision is a no-op, except that it finishes a decision whose
        override had not been applied yet (a store failure in between): then it applies the
        colour and expiry recorded the first time.
        """
        fast = await self._hot()
        token = await self.fence.writer()
        key = keyspace.appeal_key(appeal_id)
        first = int(
            await fast.execute(
                key,
                "HSETNX",
                key,
                "decision",
                decision["decision"],
                deadline_s=self._bulk_deadline_s,
            )
        )
        if first:
            await fast.execute(key, "HSET", key, *(x for item in decision.items() for x in item))
            await self._replicated(fast, [key])
        else:
            stored = await self.get_appeal(appeal_id)
            if stored.get("decision") != decision["decision"]:
                raise AppealDecided("this appeal has been decided already")
            if stored.get("applied") == "1" or override is None:
                record = await self.get_subject(subject)
                return 0 if record is None else record.version
            override = (Colour[stored["colour"].upper()], int(stored["until"]))
            decision = stored
        if override is None:
            await fast.execute(key, "HSET", key, "applied", "1", deadline_s=self._bulk_deadline_s)
            record = await self.get_subject(subject)
            return 0 if record is None else record.version
        applied = override

        async def work() -> Any:
            return await self._write_then_wait(
                SET_OVERRIDE,
                [keyspace.subject_key(subject), keyspace.appeal_marker_key(subject, appeal_id),
                 keyspace.audit_key(subject)],
                [int(applied[0]), applied[1], now, actor, decision.get("decision_reason", ""),
                 appeal_id, *token],
                wrote=did_write,
            )  # fmt: skip

        code, version = await self._bounded(work, self._settings.write_deadline_ms, "write")
        if int(code) == WriteCode.UNKNOWN_SUBJECT:
            raise UnknownSubject("no such subject")
        if int(code) == WriteCode.FENCED:
            raise _fenced_off(token)
        await fast.execute(key, "HSET", key, "applied", "1", deadline_s=self._bulk_deadline_s)
        return int(version)

    async def audit_chain(
        self, subject: SubjectId
    ) -> tuple[SubjectRecord | None, list[tuple[bytes, str]]]:
        """The record and every audit entry (packed entry, hash), oldest first."""
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        audit = keyspace.audit_key(subject)
        record_raw, rows = await asyncio.gather(
            fast.get(keyspace.subject_key(subject), deadline_s=deadline_s),
            fast.execute(audit, "XRANGE", audit, "-", "+", deadline_s=deadline_s),
        )
        record = None if record_raw is None else SubjectRecord.unpack(subject, record_raw)
        entries = []
        for _id, flat in rows:
            fields = _fields(flat)
            entries.append((bytes(fields.get(b"e", b"")), bytes(fields.get(b"h", b"")).decode()))
        return record, entries

    async def audited_subjects(self) -> AsyncIterator[SubjectId]:
        """SCAN every primary for audit streams; each subject once per primary."""
        fast = await self._hot()
        pattern = keyspace.audit_key(SubjectId("*"))
        prefix, suffix = pattern.split("*")
        for slot in fast.primary_slots():
            cursor = "0"
            while True:
                cursor_raw, names = await fast.execute_at_slot(
                    slot,
                    "SCAN",
                    cursor,
                    "MATCH",
                    pattern,
                    "COUNT",
                    SCAN_COUNT,
                    "TYPE",
                    "stream",
                    deadline_s=self._bulk_deadline_s,
                )
                for name in names:
                    text = name.decode()
                    if text.startswith(prefix) and text.endswith(suffix):
                        yield SubjectId(text[len(prefix) : len(text) - len(suffix)])
                cursor = cursor_raw.decode()
                if cursor == "0":
                    break

    # Card-code fusion.

    async def bind_aliases(
        self, bindings: Sequence[AliasBinding], actor: str, now: int
    ) -> list[str]:
        """Claim every alias key, list the claimed ones on their subjects, WAIT once per node."""
        if not bindings:
            return []
        await self.fence.writer()
        fast = await self._hot()
        deadline_s = self._bulk_deadline_s
        claims = await fast.bulk(
            [(k := keyspace.alias_key(b.alias), ("EVALSHA", self._alias_claim.sha, 1, k, b.subject))
             for b in bindings],
            deadline_s=deadline_s,
        )  # fmt: skip
        claimed = [int(fast.reply_or_raise(r, "EVALSHA")[0]) for r in claims]
        results = ["taken" if c == ClaimCode.TAKEN else "" for c in claimed]
        mine = [i for i, c in enumerate(claimed) if c != ClaimCode.TAKEN]
        links = await fast.bulk(
            [
                (keyspace.subject_key(b.subject),
                 ("EVALSHA", self._alias_link.sha, 3, keyspace.subject_key(b.subject),
                  keyspace.subject_aliases_key(b.subject), keyspace.audit_key(b.subject), "bind",
                  b.alias, b.listed, actor, now))
                for b in (bindings[i] for i in mine)
            ],
            deadline_s=deadline_s,
        )  # fmt: skip
        release = []
        for i, reply in zip(mine, links, strict=True):
            code = int(fast.reply_or_raise(reply, "EVALSHA")[0])
            if code == WriteCode.UNKNOWN_SUBJECT:
                results[i] = "unknown_subject"
                if claimed[i] == ClaimCode.CLAIMED:
                    release.append(bindings[i])
            else:
                claimed_now = claimed[i] == ClaimCode.CLAIMED
                results[i] = "bound" if claimed_now or code == WriteCode.APPLIED else "unchanged"
        if release:
            await fast.bulk(
                [(k := keyspace.alias_key(b.alias), ("EVALSHA", self._alias_release.sha, 1, k,
                                                b.subject)) for b in release],
                deadline_s=deadline_s,
            )  # fmt: skip
        written = [keyspace.alias_key(b.alias) for b in bindings] + [
            keyspace.subject_key(b.subject) for b in bindings
        ]
        await self._replicated(fast, written, bulk=True)
        return results

    async def unbind_alias(self, subject: SubjectId, alias: str, actor: str, now: int) -> bool:
        """Take the alias off the subject's list (audited), then free the alias key."""
        await self.fence.writer()
        fast = await self._hot()
        code, _ = await self._alias_link(
            [
                keyspace.subject_key(subject),
                keyspace.subject_aliases_key(subject),
                keyspace.audit_key(subject),
            ],
            ["unbind", alias, "", actor, now],
            deadline_s=self._bulk_deadline_s,
        )
        (released,) = await self._alias_release(
            [keyspace.alias_key(alias)], [subject], deadline_s=self._bulk_deadline_s
        )
        await self._replicated(fast, [keyspace.alias_key(alias), keyspace.subject_key(subject)])
        return int(code) == WriteCode.APPLIED or int(released) == ReleaseCode.RELEASED

    async def subject_for_alias(self, alias: str) -> SubjectId | None:
        """One GET of the alias key, within the read deadline (a scan waits on it)."""
        fast = await self._hot()
        raw = await fast.get(keyspace.alias_key(alias))
        return None if raw is None else SubjectId(raw.decode())

    async def list_aliases(self, subject: SubjectId) -> list[tuple[str, str]]:
        """The subject's alias hash, as (alias, ``type:masked``) pairs."""
        fast = await self._hot()
        key = keyspace.subject_aliases_key(subject)
        flat = await fast.execute(key, "HGETALL", key, deadline_s=self._bulk_deadline_s)
        return sorted(_text_fields(flat).items())

    async def link_licence(self, subject: SubjectId, licence: str, listed: str) -> bool:
        """HSET the licence on the subject, acknowledged after WAIT."""
        await self.fence.writer()
        fast = await self._hot()
        key = keyspace.licences_key(subject)
        added = await fast.execute(
            key, "HSET", key, licence, listed, deadline_s=self._bulk_deadline_s
        )
        await self._replicated(fast, [key])
        return bool(int(added))

    async def licences(self, subject: SubjectId) -> list[str]:
        """The values of the subject's licence hash."""
        fast = await self._hot()
        key = keyspace.licences_key(subject)
        # Within the read deadline: a service-hall scan waits on it.
        return sorted(v.decode() for v in await fast.execute(key, "HVALS", key))

    # Per-city write leases (codeengine.store.fence).

    async def fence_tick(
        self, city: int, role: Role, lease_ms: int, handback_ms: int, may_take: bool = True
    ) -> Lease:
        """One beat of an endpoint of ``city``: renew, take or hand back its write lease.

        ``may_take`` false keeps a backup from taking a free lease (early after its start).
        """
        await self._hot()
        reply = await self._fence_tick(
            list(keyspace.fence_keys(city)),
            [role.value, lease_ms, handback_ms, "1" if may_take else "0"],
        )
        return _lease(reply)

    async def fence_replicated(self, city: int) -> bool:
        """Whether a replica has this process's writes of the city's lease (WAIT after a grant)."""
        fast = await self._hot()
        lease_key = keyspace.fence_keys(city)[0]
        settings = self._settings
        try:
            acked = await fast.wait_for_keys(
                [lease_key], settings.replicas_to_ack, settings.replica_ack_timeout_ms
            )
        except StoreUnavailable:
            return False
        return acked >= settings.replicas_to_ack

    async def fence_handover(self, city: int, to: Role, hold_ms: int, lease_ms: int) -> Lease:
        """Move the lease to ``to`` and hold it there for ``hold_ms`` (0: lift the hold)."""
        await self._hot()
        reply = await self._fence_handover(
            list(keyspace.fence_keys(city)), [to.value, hold_ms, lease_ms],
            deadline_s=self._bulk_deadline_s,
        )  # fmt: skip
        return _lease(reply)

    async def fence_state(self, city: int, switches: int = 20) -> tuple[Lease, list[Switch]]:
        """The city's lease and its latest switches, newest first (for ops and drills)."""
        fast = await self._hot()
        lease_key, _, log_key, _, hold_key, _ = keyspace.fence_keys(city)
        deadline_s = self._bulk_deadline_s
        (owner, epoch), ttl, hold, rows = await asyncio.gather(
            fast.execute(lease_key, "HMGET", lease_key, "owner", "epoch", deadline_s=deadline_s),
            fast.execute(lease_key, "PTTL", lease_key, deadline_s=deadline_s),
            fast.execute(lease_key, "GET", hold_key, deadline_s=deadline_s),
            fast.execute(lease_key, "XREVRANGE", log_key, "+", "-", "COUNT", switches,
                         deadline_s=deadline_s),
        )  # fmt: skip
        lease = _lease([owner or b"", int(epoch or 0), ttl, hold or b""])
        log = []
        for _id, flat in rows:
            fields = _text_fields(flat)
            to = role_of(fields.get("to", ""))
            if to is None:
                continue
            log.append(
                Switch(int(fields["at"]) / 1000, role_of(fields.get("from", "")), to,
                       int(fields["epoch"]), fields.get("why", ""))
            )  # fmt: skip
        return lease, log

    async def close(self) -> None:
        """Close every connection, failing the calls still waiting."""
        await self._fast.aclose()


_MARK = SubjectId("\x00")

# A rollback's counter for each code of the restore script; any other counts as unchanged.
_ROLLBACK_COUNTS: dict[int, str] = {WriteCode.APPLIED: "restored", WriteCode.STALE: "changed_since"}


def _key_template(key: str) -> tuple[str, str]:
    """A subject key's text before and after the subject (the import script fills it in)."""
    before, _, after = key.partition(_MARK)
    return before, after


_RECORD_KEY = _key_template(keyspace.subject_key(_MARK))
_AUDIT_KEY = _key_template(keyspace.audit_key(_MARK))


@functools.lru_cache(maxsize=64)
def _colour_list(colours: tuple[Colour, ...]) -> str:
    """Colours as the import script reads them: "2,3"."""
    return ",".join(str(int(c)) for c in colours)


def _parse_audit(raw: bytes) -> AuditEntry:
    fields: dict[str, Any] = msgpack.unpackb(raw)
    old = fields.get("old")
    return AuditEntry(
        op=str(fields["op"]),
        actor=str(fields["actor"]),
        reason=str(fields["reason"]),
        old_colour=None if old is None else Colour(old),
        new_colour=Colour(fields["new"]),
        version=int(fields["v"]),
        at=int(fields["at"]),
        op_id=str(fields.get("op_id", "")),
        writer=str(fields.get("by", "")),
        epoch=int(fields.get("ep", 0)),
    )


def _fields(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat field-value reply (HGETALL, a stream entry's fields) as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _text_fields(flat: Sequence[bytes]) -> dict[str, str]:
    """A flat field-value reply (HGETALL, a stream entry's fields) as text."""
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def _lease(reply: Any) -> Lease:
    owner, epoch, ttl, hold = reply
    return Lease(role_of(owner), int(epoch), max(0, int(ttl)), role_of(hold))


def _fenced_off(token: WriterToken) -> NotWriter:
    return NotWriter(
        f"a newer writer of city {token.city} wrote this subject: this endpoint's epoch "
        f"{token.epoch} is fenced off"
    )
