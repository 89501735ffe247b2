"""``POST /v1/scans/offline`` through the verifier's app factory against the real cluster: what a
flood of scans costs a client, and which scans are claimed in the store.

The terminals here are clients of their own (a credentials file made per test), so that their
rate buckets and claimed ids are theirs alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.errors import StoreUnavailable
from codeengine.code.token import decode
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.store import keyspace
from codeengine.store.redisstore import RedisStore, StoreSettings
from codeengine.web.runtime import STORE
from tests.integration.apps import Client, Clock, issuer, new_code, verifier
from verifier import offlinescans
from verifier.verify import SCAN_LOG

pytestmark = pytest.mark.cluster

CITY = 320100


def with_terminals(settings: Settings, tmp_path: Path, **rates: float) -> Settings:
    """``settings`` with a credentials file that adds a ``verify`` client per name, each with
    its rate; its key is its name."""
    document = json.loads(Path(settings.keys.credentials_file).read_text())
    for name, rate in rates.items():
        document["clients"].append(
            {"client": name, "key": name, "scopes": ["verify"], "rate_per_s": rate}
        )
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(document))
    return dataclasses.replace(
        settings, keys=dataclasses.replace(settings.keys, credentials_file=str(path))
    )


def item(code: str, at_ms: int, terminal: str = "t-offline") -> dict[str, Any]:
    return {
        "id": secrets.token_urlsafe(16),
        "code": code,
        "terminal": terminal,
        "city": CITY,
        "at_ms": at_ms,
    }


async def send(client: Client, key: str, scans: list[dict[str, Any]]) -> tuple[int, Any]:
    response = await client.post(
        "/v1/scans/offline", json={"scans": scans}, headers={"Authorization": f"Bearer {key}"}
    )
    return response.status, await response.json()


def claimed_ids(cluster: DevCluster, client: str, scans: list[dict[str, Any]]) -> set[str]:
    """The ids of ``scans`` that ``client`` holds a claim on in the store."""
    found = set()
    for scan in scans:
        key = keyspace.offline_scan_key(client, scan["id"])
        if any(cluster.command(p, "EXISTS", key).strip() == "1" for p in cluster.masters()):
            found.add(scan["id"])
    return found


def test_a_batch_is_charged_by_its_scans_and_junk_is_never_claimed(
    settings: Settings, cluster: DevCluster, tmp_path: Path, run: Any
) -> None:
    terminal = f"slow-{secrets.token_hex(4)}"
    limited = with_terminals(settings, tmp_path, **{terminal: 50.0})

    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(limited, Clock()) as ver:
            _, code = await new_code(iss, settings)
            at_ms = decode(code).claims.iat * 1000
            # The limit of scans a request is its own setting, far below the batch verify's.
            status, problem = await send(ver, terminal, [item(code, at_ms)] * 101)
            assert (status, problem["reason"]) == (400, "INVALID_FIELD")
            assert "1 to 100 scans" in problem["detail"]
            # Sixty scans are sixty tokens: more than the 50 the client's bucket holds.
            status, problem = await send(ver, terminal, [item(code, at_ms) for _ in range(60)])
            assert (status, problem["reason"]) == (429, "RATE_LIMITED")
            # Texts that are not the engine's code are answered one by one, and cost no claim.
            junk = [item(text, at_ms) for text in ("HC1:NCFOXN%TS3DH3", "SSC:3201", "CE1:%%")]
            good = item(code, at_ms)
            status, answer = await send(ver, terminal, [*junk, good])
            assert status == 200, answer
            assert [(r["id"], r["logged"], r["reason"]) for r in answer["results"]] == [
                *((j["id"], False, "MALFORMED") for j in junk),
                (good["id"], True, "VALID"),
            ]
            assert claimed_ids(cluster, terminal, [*junk, good]) == {good["id"]}

    run(scenario())


def store_for(cluster: DevCluster) -> RedisStore:
    return RedisStore(
        StoreSettings(nodes=tuple(cluster.startup_nodes), security=cluster.client_security())
    )


def test_a_request_gives_back_only_its_own_claims(cluster: DevCluster) -> None:
    async def scenario() -> None:
        store = store_for(cluster)
        try:
            ids = [secrets.token_urlsafe(16) for _ in range(8)]
            assert (
                await store.claim_offline_scans("t", [(i, 60) for i in ids], "mine") == [True] * 8
            )
            # Another request's token frees nothing: its sender's claims are not its own.
            assert await store.release_offline_scans("t", ids, "theirs") == 0
            assert (
                await store.claim_offline_scans("t", [(i, 60) for i in ids], "theirs")
                == [False] * 8
            )
            assert await store.release_offline_scans("t", ids, "mine") == 8
            assert (
                await store.claim_offline_scans("t", [(i, 60) for i in ids], "again") == [True] * 8
            )
            # Another client's claims on the same ids are its own: none of these is held for it.
            assert await store.claim_offline_scans("u", [(i, 60) for i in ids], "x") == [True] * 8
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_claim_that_fails_on_one_shard_leaves_none_held_on_the_others(
    cluster: DevCluster,
) -> None:
    async def scenario() -> None:
        store = store_for(cluster)
        try:
            fast = await store._hot()
            by_shard: dict[Any, list[str]] = {}
            while len(by_shard) < 3 or min(len(v) for v in by_shard.values()) < 2:
                scan_id = secrets.token_urlsafe(16)
                shard = fast.primary_for(keyspace.offline_scan_key("t", scan_id))
                by_shard.setdefault(shard, []).append(scan_id)
            down, *healthy = sorted(by_shard, key=str)
            assert down is not None
            ids = [i for v in by_shard.values() for i in v]
            with cluster.paused(down[1]):
                with pytest.raises(StoreUnavailable):
                    await store.claim_offline_scans("t", [(i, 60) for i in ids], "failed")
        finally:
            await store.close()
        # Read once the cluster is whole again (a paused primary can take the cluster down).
        cluster.wait_healthy()
        # The healthy shards' claims were given back before the 503: a resend of these scans
        # is logged, not refused as a duplicate. (The paused shard's may land when it wakes,
        # after its release was refused: docs/api.md says so.)
        for shard in healthy:
            for scan_id in by_shard[shard]:
                key = keyspace.offline_scan_key("t", scan_id)
                assert cluster.command(shard[1], "EXISTS", key).strip() == "0"

    asyncio.run(scenario())


def test_a_request_that_fails_after_claiming_lets_the_resend_log_its_scans(
    settings: Settings, cluster: DevCluster, monkeypatch: pytest.MonkeyPatch, run: Any
) -> None:
    key = json.loads(Path(settings.keys.credentials_file).read_text())
    verify_key = next(c["key"] for c in key["clients"] if "verify" in c["scopes"])
    real = offlinescans._outcomes
    failures = iter([RuntimeError("the log step failed")])

    def failing_once(*args: Any) -> Any:
        # The seam: the step between the claims and the scan log, failing once.
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args)

    monkeypatch.setattr(offlinescans, "_outcomes", failing_once)

    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(settings, Clock()) as ver:
            _, code = await new_code(iss, settings)
            at_ms = decode(code).claims.iat * 1000
            terminal = f"resend-{secrets.token_hex(4)}"
            scans = [item(code, at_ms, terminal) for _ in range(5)]
            started_ms = int(time.time() * 1000) - 1000
            status, problem = await send(ver, verify_key, scans)
            assert (status, problem["reason"]) == (500, "INTERNAL")
            status, answer = await send(ver, verify_key, scans)
            assert status == 200, answer
            assert [(r["logged"], r["reason"]) for r in answer["results"]] == [(True, "VALID")] * 5
            status, answer = await send(ver, verify_key, scans)
            assert [r["reason"] for r in answer["results"]] == ["DUPLICATE"] * 5
            store = ver.app[STORE]
            assert isinstance(store, RedisStore)

            async def logged() -> int:
                window = await store.read_scans(CITY, started_ms, 2**62, 100_000)
                return sum(e.terminal == terminal for e in window.entries)

            # The writer flushes in the background: wait for the five, then see no more come.
            async with asyncio.timeout(30):
                while True:
                    if await logged() >= 5:
                        break
                    await asyncio.sleep(0.05)
            await ver.app[SCAN_LOG].flush()
            assert await logged() == 5

    run(scenario())


def test_a_terminal_cannot_claim_another_terminals_scan_ids_ahead_of_it(
    settings: Settings, tmp_path: Path, run: Any
) -> None:
    first, second = f"a-{secrets.token_hex(4)}", f"b-{secrets.token_hex(4)}"
    both = with_terminals(settings, tmp_path, **{first: 5000.0, second: 5000.0})

    async def scenario() -> None:
        async with issuer(settings) as iss, verifier(both, Clock()) as ver:
            _, code = await new_code(iss, settings)
            scans = [item(code, decode(code).claims.iat * 1000) for _ in range(3)]
            # A key holder that learnt the ids sends them first: under its own name only.
            status, answer = await send(ver, second, scans)
            assert [r["logged"] for r in answer["results"]] == [True] * 3
            status, answer = await send(ver, first, scans)
            assert status == 200, answer
            assert [r["reason"] for r in answer["results"]] == ["VALID"] * 3
            status, answer = await send(ver, first, scans)
            assert [r["reason"] for r in answer["results"]] == ["DUPLICATE"] * 3

    run(scenario())
