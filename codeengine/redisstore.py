"""The store on a sharded Redis Cluster, through redis-py's asyncio cluster client.

Configured against the pitfalls in DESIGN.md: every call runs under a deadline; every failure,
including the ``AttributeError``/``RuntimeError`` that redis-py leaks during topology changes, is
translated to :class:`StoreUnavailable`; ``reinitialize_steps=0`` so that MOVED replies never
close pooled connections under in-flight commands, with the topology refreshed here instead.
"""

from __future__ import annotations

__all__ = ["RedisStore", "StoreSettings"]

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from codeengine import keys
from codeengine._scripts import (
    APPEND_SCANS,
    CREATE_SUBJECT,
    PUT_KEYRING,
    REVOKE,
    SET_STATUS,
    SWAP_DISPLAY,
)
from codeengine.display import DisplayedCode
from codeengine.errors import (
    StoreUnavailable,
    UnknownSubject,
    VersionConflict,
    WriteNotReplicated,
)
from codeengine.fastredis import FastCluster, consume_outcome
from codeengine.metrics import STORE_LATENCY
from codeengine.model import Colour, SubjectId
from codeengine.scans import ScanEntry
from codeengine.status import AuditEntry, StatusChange, SubjectRecord, WriteResult
from codeengine.suites import b64url_decode, b64url_encode
from codeengine.verification import Revocations

T = TypeVar("T")

# What redis-py raises beyond its own hierarchy while the topology changes (DESIGN.md).
_CLIENT_FAILURES = (
    RedisError,
    RedisClusterException,
    OSError,
    asyncio.TimeoutError,
    AttributeError,
    RuntimeError,
)
AUDIT_MAX_LEN = 10_000


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to reach the cluster and how long to wait for it."""

    nodes: tuple[tuple[str, int], ...]
    read_deadline_ms: int = 250
    write_deadline_ms: int = 1500
    replica_ack_timeout_ms: int = 500
    replicas_to_ack: int = 1
    max_connections_per_node: int = 64
    topology_refresh_min_interval_s: float = 1.0


class RedisStore:
    """The :class:`codeengine.store.Store` on a Redis Cluster."""

    def __init__(self, settings: StoreSettings) -> None:
        self._settings = settings
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.nodes],
            reinitialize_steps=0,
            require_full_coverage=False,
            max_connections=settings.max_connections_per_node,
            socket_timeout=settings.write_deadline_ms / 1000,
            socket_connect_timeout=settings.read_deadline_ms / 1000,
        )
        self._shas: dict[str, str] = {}
        self._last_refresh = 0.0
        # The hot paths (display, verify, key refresh) go through a pipelined client that
        # costs a tenth of redis-py's CPU per command (bench/store_client.py); writes that need
        # WAIT stay on redis-py.
        self._fast = FastCluster(
            settings.nodes,
            connect_timeout_s=settings.read_deadline_ms / 1000,
            deadline_s=settings.read_deadline_ms / 1000,
        )
        self._fast_started = False
        self._fast_starting: asyncio.Future[None] | None = None
        self._swap_display = self._fast.script(SWAP_DISPLAY)
        self._append_scans = self._fast.script(APPEND_SCANS)
        # Latency series of the hot paths, looked up once.
        self._display_read = {o: STORE_LATENCY.labels("display read", o) for o in ("ok", "error")}

    # Plumbing: deadlines, error translation, scripts.

    async def _bounded(self, work: Callable[[], Awaitable[T]], deadline_ms: int, what: str) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with asyncio.timeout(deadline_ms / 1000):
                result = await work()
            outcome = "ok"
            return result
        except (StoreUnavailable, VersionConflict, UnknownSubject):
            raise
        except _CLIENT_FAILURES as exc:
            self._schedule_refresh()
            raise StoreUnavailable(f"store {what} failed: {type(exc).__name__}") from exc
        finally:
            STORE_LATENCY.labels(what, outcome).observe(time.perf_counter() - started)

    async def _hot(self) -> FastCluster:
        """The pipelined client for hot-path reads, its slot map read on first use.

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

    def _schedule_refresh(self) -> None:
        """Re-read the slot map after a failure, at most once per interval."""
        now = time.monotonic()
        if now - self._last_refresh < self._settings.topology_refresh_min_interval_s:
            return
        self._last_refresh = now
        task = asyncio.get_running_loop().create_task(self.refresh_topology())
        task.add_done_callback(consume_outcome)

    async def refresh_topology(self) -> None:
        """Ask the cluster for its current slot map (after a failover or a resharding)."""
        try:
            async with asyncio.timeout(self._settings.write_deadline_ms / 1000):
                await self._client.nodes_manager.initialize()
        except _CLIENT_FAILURES:
            return

    async def _sha(self, script: str) -> str:
        sha = self._shas.get(script)
        if sha is None:
            sha = str(await self._client.script_load(script))
            self._shas[script] = sha
        return sha

    async def _write_then_wait(
        self,
        script: str,
        key_list: list[str],
        args: list[Any],
        wrote: Callable[[Any], bool] = lambda result: True,
    ) -> Any:
        """Run a write script and WAIT for a replica on the same connection of the same node.

        WAIT counts replicas that have the writes of *its own connection*, so both commands
        must travel together; a cluster pipeline aimed at the key's node does exactly that.
        Redirections are not followed: a redirected script would run alone, without its WAIT,
        so a MOVED or ASK fails the call (the topology is refreshed; a resend is safe).
        ``wrote(result)`` says whether the script changed anything: a refusal (stale version,
        unknown subject) needs no replica and is answered as such even while one lags.
        """
        await self._client.initialize()
        node = self._client.get_node_from_key(key_list[0])
        for attempt in (1, 2):
            pipe = self._client.pipeline()
            sha = await self._sha(script)
            pipe.execute_command("EVALSHA", sha, len(key_list), *key_list, *args, target_nodes=node)
            pipe.execute_command(
                "WAIT",
                self._settings.replicas_to_ack,
                self._settings.replica_ack_timeout_ms,
                target_nodes=node,
            )
            result, acked = await pipe.execute(raise_on_error=False, allow_redirections=False)
            if isinstance(result, NoScriptError) and attempt == 1:
                # A node that restarted or failed over has an empty script cache.
                await self._client.execute_command("SCRIPT", "LOAD", script, target_nodes=node)
                continue
            if isinstance(result, Exception):
                raise result
            if not wrote(result):
                return result
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < self._settings.replicas_to_ack:
                raise WriteNotReplicated("no replica confirmed the write in time")
            return result
        raise StoreUnavailable("script could not be loaded")

    # The Store protocol.

    async def ping(self) -> None:
        """Return when every primary answers PING."""

        async def work() -> None:
            await self._client.ping(target_nodes=RedisCluster.PRIMARIES)

        await self._bounded(work, self._settings.read_deadline_ms, "ping")

    async def get_subject(self, subject: SubjectId) -> SubjectRecord | None:
        """The subject's record, or None."""

        async def work() -> Any:
            return await self._client.get(keys.subject_key(subject))

        raw = await self._bounded(work, self._settings.read_deadline_ms, "read")
        return None if raw is None else SubjectRecord.unpack(subject, raw)

    async def create_subject(self, record: SubjectRecord, actor: str) -> tuple[SubjectRecord, bool]:
        """Create the subject unless it exists (idempotent: a resend finds it created)."""
        subject = record.subject

        async def work() -> Any:
            return await self._write_then_wait(
                CREATE_SUBJECT,
                [keys.subject_key(subject), keys.audit_key(subject)],
                [record.pack(), actor, AUDIT_MAX_LEN],
            )

        created, raw = await self._bounded(work, self._settings.write_deadline_ms, "create")
        return SubjectRecord.unpack(subject, raw), bool(created)

    async def set_status(self, change: StatusChange) -> WriteResult:
        """Versioned compare-and-set of the colour, idempotent by operation id."""

        async def work() -> Any:
            return await self._write_then_wait(
                SET_STATUS,
                list(keys.subject_keys(change.subject, change.op_id)),
                [
                    change.if_version,
                    int(change.colour),
                    change.op_id,
                    change.at,
                    change.actor,
                    change.reason,
                    AUDIT_MAX_LEN,
                ],
                wrote=lambda result: int(result[0]) > 0,
            )

        code, version, colour = await self._bounded(work, self._settings.write_deadline_ms, "write")
        if code == -1:
            raise UnknownSubject("no such subject")
        if code == -2:
            raise VersionConflict(int(version))
        return WriteResult(version=int(version), applied=code == 1, colour=Colour(int(colour)))

    async def audit_trail(self, subject: SubjectId, limit: int = 100) -> list[AuditEntry]:
        """The subject's audit entries, oldest first."""

        async def work() -> Any:
            return await self._client.xrange(keys.audit_key(subject), count=limit)

        rows = await self._bounded(work, self._settings.read_deadline_ms, "audit read")
        return [_parse_audit(fields[b"e"]) for _id, fields in rows]

    async def display_state(
        self, subject: SubjectId
    ) -> tuple[SubjectRecord | None, DisplayedCode | None]:
        """The subject's record and current display token (one MGET in the subject's slot)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            fast = await self._hot()
            keys_ = [keys.subject_key(subject), keys.token_key(subject)]
            record_raw, token_raw = await fast.mget(keys_)
            outcome = "ok"
        finally:
            self._display_read[outcome].observe(time.perf_counter() - started)
        record = None if record_raw is None else SubjectRecord.unpack(subject, record_raw)
        shown = None if token_raw is None else DisplayedCode.unpack(token_raw)
        return record, shown

    async def replace_display(
        self, subject: SubjectId, seen: DisplayedCode | None, new: DisplayedCode, ttl_ms: int
    ) -> DisplayedCode:
        """Store ``new`` unless another process refreshed first; the token now stored."""
        new_raw = new.pack()
        args: list[bytes | int] = [b"" if seen is None else seen.pack(), new_raw, ttl_ms]
        started = time.perf_counter()
        outcome = "error"
        try:
            await self._hot()
            stored = await self._swap_display(
                [keys.token_key(subject)],
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
        raw = await fast.get(keys.KEYRING_KEY)
        return None if raw is None else bytes(raw)

    async def put_keyring(
        self, expected_version: int, sealed: bytes, version: int, trust: bytes
    ) -> None:
        """Compare-and-set the keyring version and its trust list, acknowledged after WAIT."""

        async def work() -> Any:
            return await self._write_then_wait(
                PUT_KEYRING,
                [keys.KEYRING_KEY, keys.TRUST_KEY, keys.KEYRING_VERSION_KEY],
                [expected_version, sealed, version, trust],
                wrote=lambda result: int(result[0]) > 0,
            )

        code, current = await self._bounded(work, self._settings.write_deadline_ms, "keyring")
        if code == -2:
            raise VersionConflict(int(current))

    async def get_trust(self) -> bytes | None:
        """The public trust list JSON, or None."""
        fast = await self._hot()
        raw = await fast.get(keys.TRUST_KEY)
        return None if raw is None else bytes(raw)

    async def _revoke(self, key: str, member: str, score: int, prune_below: int | None) -> None:
        async def work() -> Any:
            prune = "" if prune_below is None else str(prune_below)
            return await self._write_then_wait(REVOKE, [key], [member, score, prune])

        await self._bounded(work, self._settings.write_deadline_ms, "revoke")

    async def revoke_code(self, cti: bytes, expires_at: int, now: int) -> None:
        """Revoke a code id until its expiry; expired entries are pruned on the way."""
        await self._revoke(keys.REVOKED_CODES_KEY, cti.hex(), expires_at, now)

    async def revoke_key(self, kid: bytes, now: int) -> None:
        """Revoke a key id for good."""
        await self._revoke(keys.REVOKED_KEYS_KEY, b64url_encode(kid), now, None)

    async def revocations(self, now: int) -> Revocations:
        """Both revocation sets, read concurrently (pipelined on the keyring's shard)."""
        fast = await self._hot()
        codes, kids = await asyncio.gather(
            fast.execute(
                keys.REVOKED_CODES_KEY, "ZRANGEBYSCORE", keys.REVOKED_CODES_KEY, now, "+inf"
            ),
            fast.execute(keys.REVOKED_KEYS_KEY, "ZRANGE", keys.REVOKED_KEYS_KEY, 0, -1),
        )
        return Revocations(
            codes=frozenset(bytes.fromhex(c.decode()) for c in codes),
            keys=frozenset(b64url_decode(k.decode()) for k in kids),
        )

    async def append_scans(self, entries: list[ScanEntry], max_len: int) -> list[ScanEntry]:
        """Append every entry to its city's stream: one script call per city, pipelined.

        Returns the entries of the cities whose call failed; the others are written once.
        """
        await self._hot()
        by_city: dict[int, list[ScanEntry]] = {}
        for entry in entries:
            by_city.setdefault(entry.city, []).append(entry)
        deadline_s = self._settings.write_deadline_ms / 1000
        outcomes = await asyncio.gather(
            *(
                self._append_scans(
                    [keys.scan_log_key(city)],
                    [max_len, ScanEntry.FIELD_COUNT, *(f for e in group for f in e.to_fields())],
                    deadline_s=deadline_s,
                )
                for city, group in by_city.items()
            ),
            return_exceptions=True,
        )
        failed: list[ScanEntry] = []
        for group, outcome in zip(by_city.values(), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                failed.extend(group)
        return failed

    async def read_scans(
        self, city: int, from_ms: int, to_ms: int, limit: int
    ) -> tuple[list[ScanEntry], bool]:
        """Stream ids are millisecond times, so a time window is an XRANGE."""
        fast = await self._hot()
        key = keys.scan_log_key(city)
        rows = await fast.execute(
            key, "XRANGE", key, from_ms, to_ms, "COUNT", limit + 1,
            deadline_s=self._settings.write_deadline_ms / 1000,
        )  # fmt: skip
        entries = [
            ScanEntry.from_fields(dict(zip(fields[::2], fields[1::2], strict=True)))
            for _id, fields in rows[:limit]
        ]
        return entries, len(rows) > limit

    async def close(self) -> None:
        """Release every pooled connection."""
        await self._fast.aclose()
        await self._client.aclose()


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
    )
