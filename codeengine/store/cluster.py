"""The asyncio Redis Cluster client of the services: every command the issuer and verifier send.

The services talk to Redis only through codeengine.store.cluster; redis-py is used where a
general client is right and speed does not matter: test oracles and the store-client benchmark
(the dev cluster is created with redis-cli). redis-py's asyncio cluster client costs several
times the server's work per command and stalls healthy shards behind its topology lock
(docs/architecture.md, pitfalls).
This client does only what the services need: one connection per primary, automatic
pipelining (every command issued during one loop tick to a node leaves in one ``write()``, and
the replies come back in one read), MOVED/ASK redirects, a slot map refreshed in the
background, scripts reloaded on a node that lost them, a script and its ``WAIT`` sent together
on a connection of their own for acknowledged writes, a breaker per shard, and every failure
turned into :class:`StoreUnavailable` within the caller's deadline.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "FastCluster",
    "Script",
    "key_slot",
    "tag_slot",
]

import asyncio
import contextvars
import hashlib
import logging
import time
from binascii import crc_hqx
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any

import hiredis

from codeengine.code.breaker import Breaker
from codeengine.code.errors import CodeEngineError, Reason, StoreUnavailable
from codeengine.metrics import SHARD_BREAKER_OPENS
from codeengine.store.connection import (
    AckPool,
    Arg,
    Connection,
    Expiry,
    TimedOut,
    consume_outcome,
    open_connection,
    pack_command,
    pack_pair,
)
from codeengine.store.security import PLAIN, StoreRefused, StoreSecurity

SLOT_COUNT = 16384
MAX_REDIRECTS = 2
RECONNECT_FLOOR_S = 1.0
"""The least time a node's shared reconnection may take (TLS handshake and login). Each caller
still waits only until its own deadline; a bulk job's longer one is no longer cut short when a
busy worker's loop (an import's chunks) reads the handshake's replies late, as under the read
deadline (250 ms) it was."""
_ReplyError = hiredis.ReplyError
# Replies that say the cluster cannot serve the slot right now: the caller may retry later.
_UNAVAILABLE_PREFIXES = frozenset(
    {"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "BUSY"}
)
_REDIRECTS = ("MOVED ", "ASK ")
_ASKING = b"*1\r\n$6\r\nASKING\r\n"
_CLUSTER_SLOTS = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n"

_log = logging.getLogger(__name__)

Address = tuple[str, int]


class CommandError(CodeEngineError):
    """An error reply the caller said it expects (``expect_errors``), such as a script's own."""

    # The caller translates it into a domain error; one that reaches an API is the store's fault.
    reason = Reason.STORE_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.prefix = message.split(" ", 1)[0]


def tag_slot(tag: str) -> int:
    """The cluster slot of every key whose hash tag is ``{tag}``."""
    return crc_hqx(tag.encode(), 0) & (SLOT_COUNT - 1)


def key_slot(key: str | bytes) -> int:
    """The cluster slot of a key: CRC16/XMODEM of its ``{hash tag}`` if it has one, mod 16384."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc_hqx(data, 0) & (SLOT_COUNT - 1)


class _Node:
    """A primary's address, its one connection, and the connect attempt callers share."""

    __slots__ = ("_cluster", "_connecting", "ack_pool", "addr", "breaker", "conn")

    def __init__(self, cluster: FastCluster, addr: Address) -> None:
        self._cluster = cluster
        self.addr = addr
        self.conn: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        # After SHARD_FAILURES_TO_OPEN failures in a row, calls fail at once for SHARD_OPEN_S
        # instead of each waiting out its deadline; then one trial call at a time goes, and its
        # success closes the breaker again, its failure opens it for another period.
        self.breaker = Breaker(
            failures_to_open=SHARD_FAILURES_TO_OPEN,
            open_for_s=SHARD_OPEN_S,
            successes_to_close=1,
            trial_timeout_s=max(cluster.connect_timeout_s, cluster.deadline_s),
        )
        # Acknowledged writes: a script and its WAIT, off the shared connection.
        self.ack_pool = AckPool(
            addr, cluster.connect_timeout_s, cluster.ack_connections_per_node, cluster.security
        )

    def failed(self) -> None:
        """Count a timed-out call or a lost connection against the shard's breaker."""
        if self.breaker.failure(self._cluster.clock()):
            SHARD_BREAKER_OPENS.labels(f"{self.addr[0]}:{self.addr[1]}").inc()

    def answered(self) -> None:
        """Count an answer (any reply, errors too: the shard is alive) for the breaker."""
        if not self.breaker.calm:
            self.breaker.success(self._cluster.clock())

    async def connect(self) -> Connection:
        """The open connection, connecting first if needed (concurrent callers share one try)."""
        if self.conn is not None and self.conn.open:
            return self.conn
        if self._connecting is None or self._connecting.done():
            # The connection outlives the request that asked for it: neither it nor its
            # transport's callbacks (a lost connection's log line) run in that request's context
            # (its request id, codeengine.logs.REQUEST_CONTEXT).
            self._connecting = asyncio.get_running_loop().create_task(
                self._connect(), context=contextvars.Context()
            )
            self._connecting.add_done_callback(consume_outcome)
        # Shielded: a caller that times out must not cancel the attempt the others wait on.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Connection:
        cluster = self._cluster
        try:
            conn = await open_connection(
                self.addr,
                cluster.security,
                self.lost,
                cluster.max_in_flight,
                max(cluster.connect_timeout_s, RECONNECT_FLOOR_S),
            )
        except StoreUnavailable as exc:
            cluster.connect_failed(exc)
            raise
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None
        self.conn = conn
        cluster.connect_failed_no_more()
        return conn

    def lost(self, conn: Connection, reason: str) -> None:
        if self.conn is conn:
            self.conn = None
            self.failed()
            if not self._cluster.closed:
                _log.info("%s to %s:%d; will reconnect", reason, *self.addr)
                self._cluster.schedule_refresh()

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.conn is not None:
            self.conn.close("store client closed")
        self.ack_pool.close()


_FAILURES = (OSError, hiredis.HiredisError, ValueError, IndexError)
MAX_LOGGED = 64
"""Distinct connect failures logged until a connect succeeds (one per node and cause)."""
SHARD_FAILURES_TO_OPEN = 5
SHARD_OPEN_S = 0.5


class Script:
    """A Lua script registered with :meth:`FastCluster.script`; call it to run EVALSHA."""

    __slots__ = ("_cluster", "sha")

    def __init__(self, cluster: FastCluster, sha: str) -> None:
        self._cluster = cluster
        self.sha = sha

    async def __call__(
        self,
        keys: Sequence[str | bytes],
        args: Sequence[Arg] = (),
        *,
        deadline_s: float | None = None,
        expect_errors: Collection[str] = (),
    ) -> Any:
        """Run the script on the primary that owns its keys' slot."""
        return await self._cluster.evalsha(
            self.sha, keys, args, deadline_s=deadline_s, expect_errors=expect_errors
        )


class FastCluster:
    """Hot-path Redis Cluster client: primaries only, RESP2, one pipelined connection each."""

    def __init__(
        self,
        nodes: Sequence[Address],
        *,
        connect_timeout_s: float = 0.5,
        deadline_s: float = 0.25,
        max_in_flight: int = 10_000,
        refresh_min_interval_s: float = 1.0,
        deadline_resolution_s: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
        ack_connections_per_node: int = 64,
        security: StoreSecurity = PLAIN,
    ) -> None:
        if not nodes:
            raise ValueError("at least one startup node is needed")
        self._seeds = [(host, int(port)) for host, port in nodes]
        self.connect_timeout_s = connect_timeout_s
        self.max_in_flight = max_in_flight
        self.ack_connections_per_node = ack_connections_per_node
        self.security = security
        """TLS and login of every connection, the AckPools' too (:mod:`.security`)."""
        self._connect_failure: StoreUnavailable | None = None
        self._logged_failures: set[str] = set()
        self.deadline_s = deadline_s
        self.clock = clock
        """The shard breakers' clock (a test hands in its own to move time on)."""
        self._refresh_min_interval_s = refresh_min_interval_s
        self._nodes: dict[Address, _Node] = {}
        self._slots: list[_Node | None] = [None] * SLOT_COUNT
        self._scripts: dict[str, bytes] = {}
        self._expiry = Expiry(deadline_resolution_s)
        self._refresh_task: asyncio.Task[bool] | None = None
        self._last_refresh = -1e9
        self._loop_time: Callable[[], float] | None = None
        self.closed = False

    # Life cycle and topology.

    async def start(self) -> None:
        """Read the slot map from the first startup node that answers ``CLUSTER SLOTS``."""
        self._last_refresh = time.monotonic()
        if not await self.refresh():
            failure = self._connect_failure
            if isinstance(failure, StoreRefused):
                # A wrong setting, not an outage: say which, rather than "no node answered".
                raise failure
            detail = f": {failure}" if failure is not None else ""
            raise StoreUnavailable(f"no startup node returned the cluster's slot map{detail}")

    def connect_failed_no_more(self) -> None:
        """A connect succeeded: the next failure is news again."""
        self._connect_failure = None
        self._logged_failures.clear()

    def connect_failed(self, exc: StoreUnavailable) -> None:
        """Keep a failed connect for :meth:`start` to name; log each distinct refusal once.

        A refusal (:class:`StoreRefused`) names the setting to fix: that log line is what an
        operator sees of a wrong password or certificate at start-up. A connect that timed out
        (a stalled node, or a plain-text port while TLS is on) is a warning, once until a
        connect succeeds again (a readiness probe that retries every few seconds must not
        repeat the same lines each time).
        """
        message = str(exc)
        if message not in self._logged_failures and len(self._logged_failures) < MAX_LOGGED:
            self._logged_failures.add(message)
            _log.log(logging.ERROR if isinstance(exc, StoreRefused) else logging.WARNING, "%s", exc)
        self._connect_failure = exc

    async def aclose(self) -> None:
        """Cancel the background refresh and close every connection, failing pending calls."""
        self.closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.wait([self._refresh_task])
        for node in self._nodes.values():
            node.close()

    def primary_for(self, key: str | bytes) -> Address | None:
        """The primary that the current slot map says owns the key (for drills and tests)."""
        node = self._slots[key_slot(key)]
        return None if node is None else node.addr

    def _node(self, addr: Address) -> _Node:
        node = self._nodes.get(addr)
        if node is None:
            node = self._nodes[addr] = _Node(self, addr)
        return node

    def schedule_refresh(self) -> None:
        """Re-read the slot map in the background, at most once per interval; never waited on."""
        if self.closed or (self._refresh_task is not None and not self._refresh_task.done()):
            return
        delay = self._last_refresh + self._refresh_min_interval_s - time.monotonic()
        # Anyone's refresh, not the request's that noticed (see connect).
        self._refresh_task = asyncio.get_running_loop().create_task(
            self._refresh_after(delay), context=contextvars.Context()
        )
        self._refresh_task.add_done_callback(consume_outcome)

    async def _refresh_after(self, delay_s: float) -> bool:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        self._last_refresh = time.monotonic()
        return await self.refresh()

    async def refresh(self) -> bool:
        """Ask known primaries, then the startup nodes, for the slot map; whether one answered."""
        if self.closed:
            return False
        candidates = dict.fromkeys([*(n.addr for n in self._slots if n), *self._seeds])
        for addr in candidates:
            node = self._node(addr)
            try:
                # The connect bounds itself (and says what it waited for when it times out).
                conn = await node.connect()
                async with asyncio.timeout(self.connect_timeout_s):
                    reply = await conn.send(_CLUSTER_SLOTS)
                if isinstance(reply, _ReplyError):
                    continue
                self._apply_slot_map(reply, addr[0])
            except (StoreUnavailable, *_FAILURES, TypeError):
                continue
            return True
        return False

    def _apply_slot_map(self, ranges: list[Any], default_host: str) -> None:
        slots: list[_Node | None] = [None] * SLOT_COUNT
        for first, last, primary, *_replicas in ranges:
            host = primary[0].decode() if primary[0] and primary[0] != b"?" else default_host
            node = self._node((host, int(primary[1])))
            slots[first : last + 1] = [node] * (last + 1 - first)
        self._slots = slots

    # Commands.

    def _deadline(self, deadline_s: float | None) -> float:
        # The loop's clock, kept from the first command: on Python 3.11 every
        # asyncio.get_running_loop() makes a getpid() system call (its fork check), measured
        # at 5 µs a display under load.
        clock = self._loop_time
        if clock is None:
            clock = self._loop_time = asyncio.get_running_loop().time
        timeout_s = self.deadline_s if deadline_s is None else deadline_s
        return clock() + timeout_s

    async def _call(
        self,
        slot: int,
        packed: bytes,
        deadline: float,
        command: Arg,
        prelude: bytes = b"",
        *,
        raw: bool = False,
        expect_errors: Collection[str] = (),
    ) -> Any:
        """Send a command to the slot's primary, following redirects.

        The reply, or (unless ``raw``) StoreUnavailable for an error reply, CommandError for one
        whose prefix is in ``expect_errors``. The public commands return this coroutine itself
        rather than await it in one of their own: one coroutine a call fewer (about 0.3 µs).
        """
        found = self._slots[slot]
        try:
            node = self._usable(found)
            asking = False
            for _ in range(MAX_REDIRECTS + 1):
                conn = node.conn
                if conn is None or not conn.open:
                    conn = await self._connect(node, deadline)
                if prelude:
                    conn.send(prelude, discard=True)
                if asking:
                    conn.send(_ASKING, discard=True)
                waiter = conn.send(packed)
                pending = self._expiry.add(waiter, deadline)
                try:
                    reply = await waiter
                finally:
                    pending.discard(waiter)
                if not node.breaker.calm:
                    node.answered()
                if type(reply) is not _ReplyError or not str(reply).startswith(_REDIRECTS):
                    break
                node, asking = self._redirected(node, reply)
            else:
                raise StoreUnavailable("store redirected too many times")
        except StoreUnavailable as exc:
            self._failed(found, exc)
            raise
        except _FAILURES as exc:
            raise self._failed(found, exc, command) from exc
        if raw or type(reply) is not _ReplyError:
            return reply
        return self._reply(reply, command, expect_errors)

    def _usable(self, node: _Node | None) -> _Node:
        """The slot's primary, unless the slot is uncovered or the primary's breaker refuses."""
        if node is None:
            raise StoreUnavailable("store slot not covered")
        breaker = node.breaker
        if not breaker.calm and not breaker.allow(self.clock()):
            raise StoreUnavailable("store shard unavailable: its breaker is open")
        return node

    async def _connect(self, node: _Node, deadline: float) -> Connection:
        """The node's connection, opened within ``deadline`` (a loop time)."""
        if self.closed:
            raise StoreUnavailable("store client closed")
        async with asyncio.timeout_at(deadline):
            return await node.connect()

    def _failed(self, node: _Node | None, exc: Exception, command: Arg = "") -> StoreUnavailable:
        """Account for a failed call; the StoreUnavailable to raise for ``exc``.

        A stalled or lost primary may have been failed over: look for its successor. Each
        timed-out call counts against the shard's breaker; a lost connection counts once
        (:meth:`_Node.lost`), and a StoreUnavailable of another kind (a refusal) not at all.
        """
        if node is not None and (
            isinstance(exc, TimedOut) or not isinstance(exc, StoreUnavailable)
        ):
            node.failed()
        self.schedule_refresh()
        if isinstance(exc, StoreUnavailable):
            return exc
        what = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return StoreUnavailable(f"store {_name(command)} failed: {what}")

    def _redirected(self, node: _Node, reply: Any) -> tuple[_Node, bool]:
        """Where a MOVED or ASK reply sends the command, and whether it was ASK (a MOVED also
        updates the slot map)."""
        kind, slot_text, target = str(reply).split(" ", 2)
        host, _, port = target.rpartition(":")
        node = self._node((host or node.addr[0], int(port)))
        asking = kind == "ASK"
        if not asking:
            self._slots[int(slot_text)] = node
            self.schedule_refresh()
        return node, asking

    def reply_or_raise(self, reply: Any, command: Arg) -> Any:
        """A raw reply of :meth:`bulk`, or StoreUnavailable if it is an error."""
        return self._reply(reply, command, ())

    def _reply(self, reply: Any, command: Arg, expect_errors: Collection[str]) -> Any:
        if type(reply) is not _ReplyError:
            return reply
        message = str(reply)
        prefix = message.split(" ", 1)[0]
        if prefix in expect_errors:
            raise CommandError(message)
        if prefix in ("CLUSTERDOWN", "READONLY", "MASTERDOWN"):
            self.schedule_refresh()
        # Only the prefix: the rest of a reply may quote arguments, which may be personal data.
        kind = "unavailable" if prefix in _UNAVAILABLE_PREFIXES else "refused"
        raise StoreUnavailable(f"store {_name(command)} {kind}: {prefix}")

    def execute(
        self,
        key_for_slot: str | bytes,
        *args: Arg,
        deadline_s: float | None = None,
        expect_errors: Collection[str] = (),
    ) -> Coroutine[Any, Any, Any]:
        """Run one command on the primary owning ``key_for_slot``; the reply, bytes for strings.

        Raises :class:`StoreUnavailable` on every failure, or :class:`CommandError` for an
        error reply whose prefix is in ``expect_errors``.
        """
        slot, deadline = key_slot(key_for_slot), self._deadline(deadline_s)
        packed = pack_command(args)
        return self._call(slot, packed, deadline, args[0], expect_errors=expect_errors)

    async def bulk(
        self, commands: Sequence[tuple[str | bytes, Sequence[Arg]]], *, deadline_s: float
    ) -> list[Any]:
        """Many independent commands (routing key, arguments), all sent at once; raw replies.

        For bulk jobs: no task per command and no redirect handling. A reply that is a
        redirect, or any failure, raises StoreUnavailable (after asking for the slot map
        again); such jobs are idempotent and resume. An EVALSHA a node answers NOSCRIPT (its
        script cache was emptied) is sent again after loading the script there, and so is
        every WAIT that followed it on that node: the first WAIT answered before the script
        ran, so only one sent behind it says whether a replica has its writes. Other error
        replies are returned as they are.
        """
        deadline = self._deadline(deadline_s)
        replies = await self._bulk_at(commands, deadline)
        missing = [i for i, reply in enumerate(replies) if _is_noscript(reply)]
        if missing:
            # The scripts first, on the node of the commands that need them, then those again
            # in their first order, each node's later WAITs among them.
            loads: dict[tuple[_Node | None, str], str | bytes] = {}
            first: dict[_Node | None, int] = {}
            for i in missing:
                key, args = commands[i]
                node = self._slots[key_slot(key)]
                loads.setdefault((node, _name(args[1])), key)
                first.setdefault(node, i)
            waits = [
                i
                for i, (key, args) in enumerate(commands)
                if _name(args[0]).upper() == "WAIT"
                and i > first.get(self._slots[key_slot(key)], len(commands))
            ]
            resent = sorted(missing + waits)
            again = await self._bulk_at(
                [(key, ("SCRIPT", "LOAD", self._body(sha))) for (_, sha), key in loads.items()]
                + [commands[i] for i in resent],
                deadline,
            )
            for i, reply in zip(resent, again[len(loads) :], strict=True):
                replies[i] = reply
        return replies

    async def _bulk_at(
        self, commands: Sequence[tuple[str | bytes, Sequence[Arg]]], deadline: float
    ) -> list[Any]:
        """:meth:`bulk` without script reloading, within ``deadline`` (a loop time)."""
        by_node = self._by_node(commands)
        pending: list[tuple[set[asyncio.Future[Any]], asyncio.Future[Any]]] = []
        try:
            for node, (_, packed) in by_node.items():
                conn = node.conn
                if conn is None or not conn.open:
                    conn = await self._connect(node, deadline)
                future = conn.send_many(packed)
                pending.append((self._expiry.add(future, deadline), future))
            per_node = await asyncio.gather(*(future for _, future in pending))
        except StoreUnavailable:
            self.schedule_refresh()
            raise
        except _FAILURES as exc:
            self.schedule_refresh()
            raise StoreUnavailable(f"store bulk write failed: {type(exc).__name__}") from exc
        finally:
            # Answered or failed, none waits for its deadline any more (nor keeps its replies).
            for bucket, future in pending:
                bucket.discard(future)
        replies: list[Any] = [None] * len(commands)
        for (indices, _), node_replies in zip(by_node.values(), per_node, strict=True):
            for index, reply in zip(indices, node_replies, strict=True):
                replies[index] = reply
        for reply in replies:
            if type(reply) is _ReplyError and str(reply).startswith(_REDIRECTS):
                self.schedule_refresh()
                raise StoreUnavailable("store slot moved while it was written")
        return replies

    def _by_node(
        self, commands: Sequence[tuple[str | bytes, Sequence[Arg]]]
    ) -> dict[_Node, tuple[list[int], list[bytes]]]:
        """Each primary's share of ``commands``: their indices and the commands packed."""
        by_node: dict[_Node, tuple[list[int], list[bytes]]] = {}
        slots = self._slots
        for index, (key, args) in enumerate(commands):
            node = slots[key_slot(key)]
            if node is None:
                self.schedule_refresh()
                raise StoreUnavailable("store slot not covered")
            found = by_node.get(node)
            if found is None:
                found = by_node[node] = ([], [])
            found[0].append(index)
            found[1].append(pack_command(args))
        return by_node

    def primary_slots(self) -> list[int]:
        """One slot owned by each primary of the current slot map (to address a whole node)."""
        first: dict[Address, int] = {}
        for slot, node in enumerate(self._slots):
            if node is not None and node.addr not in first:
                first[node.addr] = slot
        return sorted(first.values())

    def execute_at_slot(
        self, slot: int, *args: Arg, deadline_s: float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Run one command on the primary owning ``slot`` (SCAN, WAIT: commands of a node)."""
        return self._call(slot, pack_command(args), self._deadline(deadline_s), args[0])

    async def wait_for_keys(
        self, keys: Sequence[str | bytes], replicas: int, timeout_ms: int
    ) -> int:
        """WAIT on every primary that owns one of ``keys``; the fewest replicas any confirmed.

        WAIT counts the writes of its own connection, and this client has one connection per
        primary, so it covers every write this process sent that primary before.
        """
        slots = {self._slots[slot]: slot for slot in map(key_slot, keys)}
        acks = await asyncio.gather(
            *(
                self.execute_at_slot(slot, "WAIT", replicas, timeout_ms,
                                     deadline_s=timeout_ms / 1000 + self.deadline_s)
                for slot in slots.values()
            )
        )  # fmt: skip
        return min((int(a) for a in acks), default=replicas)

    async def get(self, key: str | bytes, *, deadline_s: float | None = None) -> bytes | None:
        """GET: the value, or None."""
        value: bytes | None = await self.execute(key, "GET", key, deadline_s=deadline_s)
        return value

    def mget(
        self,
        keys: Sequence[str | bytes],
        *,
        deadline_s: float | None = None,
        slot: int | None = None,
    ) -> Coroutine[Any, Any, list[bytes | None]]:
        """MGET of one or more keys that share one slot (one hash tag); values in key order.

        A caller that built the keys around one hash tag may pass its ``slot`` (``tag_slot``)
        instead of having every key's worked out.
        """
        if not keys:
            raise ValueError("MGET needs at least one key")
        if slot is None:
            slot = key_slot(keys[0])
            for key in keys[1:]:
                if key_slot(key) != slot:
                    raise ValueError("MGET keys must share one slot: give them one hash tag")
        packed = pack_pair(b"MGET", *keys) if len(keys) == 2 else pack_command(("MGET", *keys))
        return self._call(slot, packed, self._deadline(deadline_s), "MGET")

    def script(self, text: str) -> Script:
        """Register a Lua script; the returned :class:`Script` runs it by SHA1."""
        body = text.encode()
        sha = hashlib.sha1(body, usedforsecurity=False).hexdigest()
        self._scripts[sha] = body
        return Script(self, sha)

    async def evalsha(
        self,
        sha: str,
        keys: Sequence[str | bytes],
        args: Sequence[Arg] = (),
        *,
        deadline_s: float | None = None,
        expect_errors: Collection[str] = (),
    ) -> Any:
        """EVALSHA on the keys' primary, loading a registered script first if the node lost it."""
        slot = _script_slot(keys)
        packed = pack_command(("EVALSHA", sha, len(keys), *keys, *args))
        deadline = self._deadline(deadline_s)
        reply = await self._call(slot, packed, deadline, "EVALSHA", raw=True)
        if _is_noscript(reply):
            # A restarted or promoted node has an empty script cache: load and retry in one
            # round trip, on the same connection, so that the two stay in order.
            load = pack_command(("SCRIPT", "LOAD", self._body(sha)))
            reply = await self._call(slot, packed, deadline, "EVALSHA", load, raw=True)
        return self._reply(reply, "EVALSHA", expect_errors)

    async def evalsha_then_wait(
        self,
        script: Script,
        keys: Sequence[str | bytes],
        args: Sequence[Arg],
        replicas: int,
        timeout_ms: int,
        *,
        deadline_s: float,
    ) -> tuple[Any, Any]:
        """Run a script, then ``WAIT replicas timeout_ms`` behind it on the same connection.

        WAIT counts the replicas that have every write of *its own connection*, so both leave
        in one write to the keys' primary, on a connection of the node's :class:`AckPool` (a
        WAIT blocks its connection: on the shared one it would hold up the reads). Redirects
        are not followed: a script sent on elsewhere would run without its WAIT, so MOVED or
        ASK fail the call (the slot map is read again; a resend is safe). The script's reply
        (StoreUnavailable for an error) and WAIT's raw reply: the replicas, or an error.
        """
        node = self._slots[_script_slot(keys)]
        if node is None:
            self.schedule_refresh()
            raise StoreUnavailable("store slot not covered")
        # The same breaker as the shard's reads: a stalled primary refuses writes at once too.
        self._usable(node)
        evalsha = pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        wait = pack_command(("WAIT", replicas, timeout_ms))
        deadline = self._deadline(deadline_s)
        try:
            reply, acked = await node.ack_pool.call((evalsha, wait), deadline, self._expiry)
            if _is_noscript(reply):
                load = pack_command(("SCRIPT", "LOAD", self._body(script.sha)))
                calls = (load, evalsha, wait)
                _, reply, acked = await node.ack_pool.call(calls, deadline, self._expiry)
        except StoreUnavailable as exc:
            self._failed(node, exc)
            raise
        except _FAILURES as exc:
            raise self._failed(node, exc, "EVALSHA") from exc
        node.answered()
        if type(reply) is _ReplyError and str(reply).startswith(_REDIRECTS):
            self.schedule_refresh()
            raise StoreUnavailable("store slot moved while it was written")
        return self._reply(reply, "EVALSHA", ()), acked

    async def ping(self, *, deadline_s: float | None = None, every: bool = True) -> int:
        """PING every primary of the slot map; how many did not answer.

        With ``every`` one silent primary raises StoreUnavailable. Without it only a store none
        of whose primaries answers does: the store is reachable, though a shard may be down.
        """
        slots = self.primary_slots()
        if not slots:
            raise StoreUnavailable("store slot map is empty")
        calls = [self.execute_at_slot(s, "PING", deadline_s=deadline_s) for s in slots]
        if every:
            await asyncio.gather(*calls)
            return 0
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        for exc in failed:
            if not isinstance(exc, StoreUnavailable):
                raise exc
        if len(failed) == len(outcomes):
            raise failed[0]
        return len(failed)

    def _body(self, sha: str) -> bytes:
        """A registered script's text, to load it on a node that lost it."""
        body = self._scripts.get(sha)
        if body is None:
            raise StoreUnavailable("store script was never registered")
        return body


def _script_slot(keys: Sequence[str | bytes]) -> int:
    """The one slot of a script's keys (they must share a hash tag)."""
    if not keys:
        raise ValueError("a script needs a key to route by")
    slot = key_slot(keys[0])
    if any(key_slot(key) != slot for key in keys[1:]):
        raise ValueError("script keys must share one slot: give them one hash tag")
    return slot


def _is_noscript(reply: Any) -> bool:
    """Whether a raw reply says the node does not have the script (its cache was emptied)."""
    return type(reply) is _ReplyError and str(reply).startswith("NOSCRIPT")


def _name(command: Arg) -> str:
    return command.decode() if isinstance(command, bytes) else str(command)
