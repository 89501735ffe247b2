"""The hot-path cluster client against the real Redis Cluster the session started."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from codeengine.code.errors import StoreUnavailable
from codeengine.ops.devcluster import DevCluster
from codeengine.store import cluster as cluster_client
from codeengine.store import connection
from codeengine.store.cluster import CommandError, FastCluster, key_slot

pytestmark = pytest.mark.cluster


def tag() -> str:
    """A fresh hash tag, so that no two tests (or loop kinds) share keys."""
    return os.urandom(8).hex()


@asynccontextmanager
async def started(cluster: DevCluster, **options: Any) -> AsyncIterator[FastCluster]:
    # As the admin user: these tests exercise the client with commands the services never
    # send (INCRBY, BLPOP, DEBUG SLEEP), which the services' ACL rule refuses.
    client = FastCluster(
        cluster.startup_nodes, security=cluster.client_security("admin"), **options
    )
    await client.start()
    try:
        yield client
    finally:
        await client.aclose()


def port_of(client: FastCluster, key: str) -> int:
    addr = client.primary_for(key)
    assert addr is not None
    return addr[1]


def test_round_trips_on_every_shard(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            keys = [f"t:{tag()}" for _ in range(60)]
            assert {port_of(client, k) for k in keys} == set(cluster.masters())
            for i, key in enumerate(keys):
                assert await client.execute(key, "SET", key, f"v{i}") == b"OK"
            assert [await client.get(k) for k in keys] == [f"v{i}".encode() for i in range(60)]
            assert await client.get(f"missing:{tag()}") is None
            shared = tag()
            tagged = [f"{{{shared}}}:{i}" for i in range(5)]
            await client.execute(tagged[0], "SET", tagged[0], b"\x00\xff")
            await client.execute(tagged[3], "SET", tagged[3], "三")
            values = await client.mget(tagged)
            assert values == [b"\x00\xff", None, None, "三".encode(), None]
            assert await client.execute(tagged[0], "INCRBY", f"{{{shared}}}:n", 5) == 5

    run(scenario())


def test_concurrent_calls_share_writes_and_each_gets_its_own_reply(
    cluster: DevCluster, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = 0
    original = connection.Connection._flush

    def counting_flush(self: connection.Connection) -> None:
        nonlocal flushes
        flushes += 1
        original(self)

    monkeypatch.setattr(connection.Connection, "_flush", counting_flush)

    async def scenario() -> None:
        nonlocal flushes
        # This is about coalescing, not deadlines: 2,000 commands at once on a machine busy with
        # the rest of the suite can take longer than the default 250 ms.
        async with started(cluster, deadline_s=5.0) as client:
            keys = [f"c:{tag()}" for _ in range(1000)]
            await asyncio.gather(*(client.execute(k, "SET", k, f"value-{k}") for k in keys))
            flushes = 0
            counter = f"{{{tag()}}}:counter"
            gets = [client.get(k) for k in keys]
            incrs = [client.execute(counter, "INCR", counter) for _ in range(1000)]
            # Interleave two kinds of command on one connection: each reply must find its caller.
            replies = await asyncio.gather(
                *(x for pair in zip(gets, incrs, strict=True) for x in pair)
            )
            assert replies[0::2] == [f"value-{k}".encode() for k in keys]
            assert replies[1::2] == list(range(1, 1001)), "INCR replies out of order"
            # One write per node per tick would be 3; a loaded machine can split the tick a few
            # times. Without coalescing it would be 2,000.
            assert flushes <= 12, f"2,000 concurrent commands took {flushes} writes"
            # Answered calls are not held until their deadline (with their replies).
            assert len(client._expiry) == 0

    run(scenario())


def test_bulk_answers_in_order_across_shards_and_holds_no_future_after(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            keys = [f"b:{tag()}" for _ in range(40)]
            assert {port_of(client, k) for k in keys} == set(cluster.masters())
            commands: list[tuple[str | bytes, list[str | bytes | int | float]]] = [
                (k, ["SET", k, f"v{i}"]) for i, k in enumerate(keys)
            ]
            assert await client.bulk(commands, deadline_s=2) == [b"OK"] * len(keys)
            reads = [(k, ["GET", k]) for k in keys] + [(keys[0], ["HGET", keys[0], "f"])]
            replies = await client.bulk(reads, deadline_s=2)
            assert replies[:-1] == [f"v{i}".encode() for i in range(len(keys))]
            # Error replies come back as they are, for the caller to judge.
            with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
                client.reply_or_raise(replies[-1], "HGET")
            # Answered, none of the bulk calls' futures waits for its deadline.
            assert len(client._expiry) == 0

    run(scenario())


def test_hash_tags_route_like_the_server(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            shared = tag()
            keys = [f"{{{shared}}}a", f"x{{{shared}}}y{{z}}", f"{{}}{shared}", "{{x}}", "plain"]
            for key in keys:
                server_slot = await client.execute(key, "CLUSTER", "KEYSLOT", key)
                assert server_slot == key_slot(key), key
            # A key in a slot this client maps to its owner is served without any redirect.
            assert await client.execute(keys[0], "SET", keys[1], "ok") == b"OK"
            with pytest.raises(ValueError, match="share one slot"):
                await client.mget([f"{{{shared}}}a", f"{{{tag()}}}b"])
            with pytest.raises(ValueError, match="at least one key"):
                await client.mget([])
            # An error reply raises, naming its prefix only: GET of a key that holds a hash.
            await client.execute(keys[0], "HSET", keys[0], "f", "v")
            with pytest.raises(StoreUnavailable, match="store GET refused: WRONGTYPE"):
                await client.execute(keys[0], "GET", keys[0])

    run(scenario())


def test_evalsha_reloads_a_flushed_script(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            echo = client.script("return {KEYS[1], ARGV[1], #KEYS}")
            key = f"{{{tag()}}}:s"
            assert await echo([key, f"{key}2"], ["one"]) == [key.encode(), b"one", 2]
            await flush_scripts(cluster)
            exists = await client.execute(key, "SCRIPT", "EXISTS", echo.sha)
            assert exists == [0], "the flush did not reach the key's primary"
            assert await echo([key], ["two"]) == [key.encode(), b"two", 1]
            assert await client.execute(key, "SCRIPT", "EXISTS", echo.sha) == [1]

    run(scenario())


async def flush_scripts(cluster: DevCluster) -> None:
    """SCRIPT FLUSH on every primary: their script caches empty, as after a restart."""
    for port in cluster.masters():
        assert (await asyncio.to_thread(cluster.command, port, "SCRIPT", "FLUSH")).strip()


def test_bulk_reloads_flushed_scripts_and_runs_each_command_once(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            incr = client.script("return redis.call('INCR', KEYS[1])")
            keys = [f"n:{tag()}" for _ in range(30)]
            assert {port_of(client, k) for k in keys} == set(cluster.masters())
            await flush_scripts(cluster)
            commands: list[tuple[str | bytes, list[str | bytes | int | float]]] = [
                (k, ["EVALSHA", incr.sha, 1, k]) for k in keys
            ]
            plain = f"plain:{tag()}"
            commands.insert(7, (plain, ["SET", plain, "x"]))
            replies = await client.bulk(commands, deadline_s=2)
            assert replies == [1] * 7 + [b"OK"] + [1] * (len(keys) - 7)
            # Once each: the refused calls were sent again, the others were not.
            assert await client.bulk([(k, ["GET", k]) for k in keys], deadline_s=2) == [b"1"] * 30
            assert len(client._expiry) == 0

    run(scenario())


def test_bulk_sends_a_wait_again_behind_the_scripts_it_reloaded(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            incr = client.script("return redis.call('INCR', KEYS[1])")
            key, other = f"n:{tag()}", f"n:{tag()}"
            port = port_of(client, key)
            while port_of(client, other) == port:
                other = f"n:{tag()}"
            other_port = port_of(client, other)

            def waits_run() -> dict[int, int]:
                return {
                    p: _calls(cluster.info(p, "commandstats"), "wait") for p in (port, other_port)
                }

            await flush_scripts(cluster)
            before = await asyncio.to_thread(waits_run)
            commands: list[tuple[str | bytes, list[str | bytes | int | float]]] = [
                (key, ["EVALSHA", incr.sha, 1, key]),
                (key, ["WAIT", 1, 1000]),
                (other, ["WAIT", 1, 1000]),
            ]
            # ``other``'s node had nothing refused: its WAIT is not sent again.
            await client.execute(other, "SET", other, "1", deadline_s=2)
            assert await client.bulk(commands, deadline_s=5) == [1, 1, 1]
            after = await asyncio.to_thread(waits_run)
            assert after[port] - before[port] == 2, "the WAIT went again, behind the script"
            assert after[other_port] - before[other_port] == 1

    run(scenario())


def _calls(commandstats: dict[str, str], command: str) -> int:
    """How many times a node ran ``command``, from its INFO commandstats (0 if never)."""
    stat = commandstats.get(f"cmdstat_{command}")
    return 0 if stat is None else int(stat.split("calls=")[1].split(",")[0])


def test_a_write_after_close_is_refused_and_opens_no_connection(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            setter = client.script("redis.call('SET', KEYS[1], ARGV[1]); return 1")
            key = f"w:{tag()}"
            assert await client.evalsha_then_wait(setter, [key], ["v"], 1, 1000, deadline_s=2)
            await client.aclose()
            with pytest.raises(StoreUnavailable, match="closed"):
                await client.evalsha_then_wait(setter, [key], ["w"], 1, 1000, deadline_s=2)
            pools = [node.ack_pool for node in client._nodes.values()]
            assert pools and all(pool.closed and not pool._all for pool in pools)

    run(scenario())


def test_a_script_and_its_wait_leave_together_and_reload_a_flushed_script(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            setter = client.script("redis.call('SET', KEYS[1], ARGV[1]); return 1")
            key = f"w:{tag()}"
            await flush_scripts(cluster)
            reply, acked = await client.evalsha_then_wait(setter, [key], ["v"], 1, 1000,
                                                          deadline_s=2)  # fmt: skip
            assert (reply, acked) == (1, 1), "the replica confirmed the write WAIT followed"
            assert await client.get(key) == b"v"
            (replica,) = cluster.replicas_of(port_of(client, key))
            with cluster.paused(replica):
                reply, acked = await client.evalsha_then_wait(setter, [key], ["w"], 1, 100,
                                                              deadline_s=2)  # fmt: skip
                assert (reply, acked) == (1, 0), "a stalled replica confirms nothing"
                # A WAIT holds its connection on the server: reads of the same primary must not
                # queue behind it.
                waiting = asyncio.ensure_future(
                    client.evalsha_then_wait(setter, [key], ["x"], 1, 5000, deadline_s=8)
                )
                while await client.get(key, deadline_s=2) != b"x":
                    pass
                assert await client.get(key, deadline_s=2) == b"x"
                assert not waiting.done(), "the read was answered while WAIT still waited"
            assert await waiting == (1, 1), "the replica, back, confirmed it"
            failing = client.script("return redis.error_reply('NOPE at 1')")
            with pytest.raises(StoreUnavailable, match="EVALSHA refused: NOPE"):
                await client.evalsha_then_wait(failing, [key], [], 1, 100, deadline_s=2)

    run(scenario())
    cluster.wait_healthy()


def test_ping_reaches_every_primary_and_fails_when_one_stalls(
    cluster: DevCluster, run: Any
) -> None:
    # Without ``every`` a ping fails only when no primary answers (readiness: a down shard
    # is every worker's, so it must not take every worker out of a load balancer).
    async def scenario() -> None:
        async with started(cluster) as client:
            await client.ping()
            ids = await asyncio.gather(
                *(client.execute_at_slot(s, "CLIENT", "ID") for s in client.primary_slots())
            )
            assert len(ids) == len(cluster.masters())
            with cluster.paused(cluster.masters()[0]):
                with pytest.raises(StoreUnavailable, match="timed out"):
                    await client.ping(deadline_s=0.1)
                # Reachable, with one shard silent: how many did not answer.
                assert await client.ping(deadline_s=0.1, every=False) == 1
            first, second, third = cluster.masters()
            with cluster.paused(first), cluster.paused(second), cluster.paused(third):
                with pytest.raises(StoreUnavailable, match="timed out"):
                    await client.ping(deadline_s=0.1, every=False)
            assert await client.ping(deadline_s=2) == 0
            assert await client.ping(deadline_s=2, every=False) == 0

    run(scenario())
    cluster.wait_healthy()


def test_script_errors_are_raised_only_when_expected(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            conflict = client.script("return redis.error_reply('CONFLICT at 7')")
            key = f"{{{tag()}}}:e"
            with pytest.raises(CommandError) as expected:
                await conflict([key], expect_errors={"CONFLICT"})
            assert (expected.value.prefix, str(expected.value)) == ("CONFLICT", "CONFLICT at 7")
            with pytest.raises(StoreUnavailable, match="CONFLICT"):
                await conflict([key])
            await client.execute(key, "SET", key, "text")
            with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
                await client.execute(key, "LPUSH", key, "x")
            with pytest.raises(StoreUnavailable, match="never registered"):
                await client.evalsha("0" * 40, [key])

    run(scenario())


def test_moved_updates_the_slot_and_the_call_succeeds(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            key = f"m:{tag()}"
            await client.execute(key, "SET", key, "here")
            owner = client.primary_for(key)
            wrong = next(("127.0.0.1", p) for p in cluster.masters() if ("127.0.0.1", p) != owner)
            client._slots[key_slot(key)] = client._node(wrong)
            assert client.primary_for(key) == wrong
            assert await client.get(key) == b"here"
            assert client.primary_for(key) == owner, "MOVED did not correct the slot map"

    run(scenario())


def test_a_redirect_refreshes_the_whole_slot_map_in_the_background(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster, refresh_min_interval_s=0.2) as client:
            first, second = f"r:{tag()}", f"r:{tag()}"
            while key_slot(second) == key_slot(first):
                second = f"r:{tag()}"
            owners = client.primary_for(first), client.primary_for(second)
            wrong = next(
                ("127.0.0.1", p) for p in cluster.masters() if ("127.0.0.1", p) not in owners
            )
            for key in (first, second):
                client._slots[key_slot(key)] = client._node(wrong)
            assert await client.get(first) is None
            assert client.primary_for(first) == owners[0]
            # The second key was never used: only the refresh the MOVED scheduled can fix it.
            for _ in range(40):
                if client.primary_for(second) == owners[1]:
                    break
                await asyncio.sleep(0.05)
            assert client.primary_for(second) == owners[1]

    run(scenario())


def test_ask_during_slot_migration(cluster: DevCluster, run: Any) -> None:
    """A key that is not (yet) on a migrating slot's source is read and written on the target."""

    async def scenario() -> None:
        async with started(cluster) as client:
            key = f"a:{tag()}"
            slot = key_slot(key)
            source = port_of(client, key)
            target = next(p for p in cluster.masters() if p != source)

            async def cli(port: int, *args: str) -> str:
                return (await asyncio.to_thread(cluster.command, port, *args)).strip()

            source_id, target_id = (
                await cli(source, "CLUSTER", "MYID"),
                await cli(target, "CLUSTER", "MYID"),
            )
            assert await cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
            assert await cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
            try:
                assert await client.execute(key, "SET", key, "moved-in") == b"OK"
                assert await client.get(key) == b"moved-in"
                # The source answers ASK only for keys it does not hold.
                on_source = await cli(source, "EXISTS", key)
                assert on_source == f"ASK {slot} 127.0.0.1:{target}", "the write stayed"
                assert client.primary_for(key) == ("127.0.0.1", source), "ASK is not MOVED"
                assert await client.execute(key, "DEL", key) == 1
            finally:
                await cli(source, "CLUSTER", "SETSLOT", str(slot), "STABLE")
                await cli(target, "CLUSTER", "SETSLOT", str(slot), "STABLE")

    run(scenario())


def test_unreachable_nodes_fail_within_the_deadline(run: Any) -> None:
    async def scenario() -> None:
        client = FastCluster([("127.0.0.1", 1), ("127.0.0.1", 2)], connect_timeout_s=0.2)
        began = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await client.start()
        with pytest.raises(StoreUnavailable):
            await client.get("k", deadline_s=0.2)
        assert time.monotonic() - began < 1.0
        await client.aclose()

    run(scenario())


def test_a_dead_primary_fails_its_calls_within_the_deadline(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            key = f"d:{tag()}"
            client._slots[key_slot(key)] = client._node(("127.0.0.1", 1))
            began = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await client.get(key, deadline_s=0.2)
            assert time.monotonic() - began < 0.6

    run(scenario())


def test_a_stalled_shard_times_out_without_stalling_the_others(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster, deadline_s=0.2) as client:
            keys = [f"p:{tag()}" for _ in range(30)]
            # Setting up is not under test: a busy machine gets the time it needs.
            await asyncio.gather(*(client.execute(k, "SET", k, k, deadline_s=5) for k in keys))
            stalled = port_of(client, keys[0])
            healthy = [k for k in keys if port_of(client, k) != stalled]
            # Well under the cluster's node timeout, so that no failover starts.
            with cluster.paused(stalled):
                began = time.monotonic()
                with pytest.raises(StoreUnavailable, match="timed out"):
                    await client.get(keys[0])
                assert time.monotonic() - began < 0.6
                assert await asyncio.gather(*(client.get(k) for k in healthy)) == [
                    k.encode() for k in healthy
                ]
            # The replies to the abandoned calls arrive late and must not reach anyone else.
            same_node = [k for k in keys if port_of(client, k) == stalled]
            for _ in range(3):
                assert await client.mget([same_node[-1]], deadline_s=2) == [same_node[-1].encode()]
                assert [await client.get(k, deadline_s=2) for k in same_node] == [
                    k.encode() for k in same_node
                ]
            # Neither the timed-out call nor the answered ones are left waiting for a deadline.
            assert len(client._expiry) == 0

    run(scenario())
    cluster.wait_healthy()


def test_killed_connection_fails_pending_calls_and_reconnects(
    cluster: DevCluster, run: Any
) -> None:
    async def scenario() -> None:
        async with started(cluster) as client:
            shared = tag()
            key, queue = f"{{{shared}}}:k", f"{{{shared}}}:q"
            await client.execute(key, "SET", key, "alive")
            client_id = await client.execute(key, "CLIENT", "ID")
            # BLPOP holds the connection on the server, so the GETs behind it stay pending.
            pending = [asyncio.ensure_future(client.execute(key, "BLPOP", queue, 5, deadline_s=8))]
            pending += [asyncio.ensure_future(client.get(key, deadline_s=8)) for _ in range(20)]
            await asyncio.sleep(0.1)
            assert not any(task.done() for task in pending)
            port = port_of(client, key)
            killed = await asyncio.to_thread(
                cluster.command, port, "CLIENT", "KILL", "ID", str(client_id)
            )
            assert killed.strip() == "1"
            began = time.monotonic()
            results = await asyncio.gather(*pending, return_exceptions=True)
            assert time.monotonic() - began < 1.0
            assert all(isinstance(r, StoreUnavailable) for r in results), results
            assert await client.get(key) == b"alive"
            assert await client.execute(key, "CLIENT", "ID") != client_id

    run(scenario())


def test_in_flight_commands_are_capped(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        async with started(cluster, max_in_flight=10) as client:
            key = f"{{{tag()}}}:cap"
            await client.execute(key, "SET", key, "x")
            results = await asyncio.gather(
                *(client.get(key) for _ in range(50)), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, StoreUnavailable)]
            assert len(refused) == 40 and "in flight" in str(refused[0])
            assert results[:10] == [b"x"] * 10
            assert await client.get(key) == b"x"

    run(scenario())


def test_close_fails_pending_calls(cluster: DevCluster, run: Any) -> None:
    async def scenario() -> None:
        client = FastCluster(cluster.startup_nodes, security=cluster.client_security("admin"))
        await client.start()
        queue = f"{{{tag()}}}:q"
        blocked = asyncio.ensure_future(client.execute(queue, "BLPOP", queue, 5, deadline_s=8))
        await asyncio.sleep(0.05)
        await client.aclose()
        with pytest.raises(StoreUnavailable):
            await blocked
        with pytest.raises(StoreUnavailable, match="closed"):
            await client.get(queue)

    run(scenario())


def test_a_shard_that_keeps_timing_out_fails_fast_until_its_breaker_period_ends(
    cluster: DevCluster, run: Any
) -> None:
    # The breakers' time is the test's: it moves only when the test says (no sleeping for it).
    now = [1000.0]

    async def scenario() -> None:
        async with started(cluster, deadline_s=0.1, clock=lambda: now[0]) as client:
            keys = [f"b:{tag()}" for _ in range(30)]
            await asyncio.gather(*(client.execute(k, "SET", k, k, deadline_s=5) for k in keys))
            stalled = port_of(client, keys[0])
            healthy = next(k for k in keys if port_of(client, k) != stalled)
            with cluster.paused(stalled):
                for _ in range(cluster_client.SHARD_FAILURES_TO_OPEN):
                    with pytest.raises(StoreUnavailable, match="timed out"):
                        await client.get(keys[0])
                # Refused before it is sent: the call ends at its first step, without awaiting
                # anything, however long its deadline.
                call = client.get(keys[0], deadline_s=60)
                with pytest.raises(StoreUnavailable, match="breaker is open"):
                    call.send(None)
                assert await client.get(healthy, deadline_s=2) == healthy.encode()
            now[0] += cluster_client.SHARD_OPEN_S - 0.001
            with pytest.raises(StoreUnavailable, match="breaker is open"):
                await client.get(keys[0], deadline_s=2)
            now[0] += 0.001
            assert await client.get(keys[0], deadline_s=2) == keys[0].encode()
            assert await client.get(keys[0], deadline_s=2) == keys[0].encode()
            node = client._slots[key_slot(keys[0])]
            assert node is not None and node.breaker.calm, "one success closed it"

    run(scenario())
    cluster.wait_healthy()
