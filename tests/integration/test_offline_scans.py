"""``POST /v1/scans/offline`` through the verifier's app factory against the real cluster: what a
flood of scans costs a client, and which scans are claimed in the store.

The terminals here are clients of their own (a credentials file made per test), so that their
rate buckets and claimed ids are theirs alone.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.token import decode
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.store import keyspace
from tests.integration.apps import Client, Clock, issuer, new_code, verifier

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


def item(code: str, at_ms: int, scan_id: str | None = None) -> dict[str, Any]:
    return {
        "id": scan_id or secrets.token_urlsafe(16),
        "code": code,
        "terminal": "t-offline",
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
        key = keyspace.offline_scan_key(scan["id"])
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
