"""The services reach Redis through one client, codeengine.store.cluster: redis-py never loads.

Checked in a fresh interpreter, since this test session loads redis-py itself for its oracles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeengine.ops.devcluster import DevCluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]

# Both apps built, started and asked /readyz (every primary pinged, the keyring read), one
# store write acknowledged by WAIT; then the names of the redis-py modules that were loaded.
_PROGRAM = """
import asyncio, json, sys
from pathlib import Path
from aiohttp.test_utils import TestClient, TestServer
from codeengine.code.macs import MACAlgorithm
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.status import SubjectRecord
from codeengine.settings import load_settings
from codeengine.keyfiles import load_mac_keyset
from codeengine.store.adapters._sealed import StoreKeys
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import store_settings
from issuer.app import create_app as create_issuer
from verifier.app import create_app as create_verifier

async def main() -> list[int]:
    settings = load_settings()
    statuses = []
    for create in (create_issuer, create_verifier):
        async with TestClient(TestServer(create(settings))) as client:
            statuses.append((await client.get("/readyz")).status)
    store = RedisStore(store_settings(settings))
    mac = MACAlgorithm.HMAC_SHA256
    store.keys = StoreKeys(load_mac_keyset(Path(settings.keys.record_mac_file), mac),
                           load_mac_keyset(Path(settings.keys.audit_mac_file), mac))
    try:
        subject = SubjectId("one-client-" + sys.argv[1])
        record = SubjectRecord(subject, CodeKind.HEALTH, 320100, Colour.GREEN, 1, 0)
        _, created = await store.create_subject(record, "test")
        stored = await store.get_subject(subject)
        assert created and stored is not None and stored.subject == subject
    finally:
        await store.close()
    return statuses

statuses = asyncio.run(main())
loaded = sorted(m for m in sys.modules if m == "redis" or m.startswith("redis."))
print(json.dumps({"statuses": statuses, "redis": loaded}))
"""


def test_the_services_never_load_redis_py(cluster: DevCluster, key_files: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEENGINE_")}
    env |= {f"CODEENGINE_{k.upper()}": v for k, v in key_files.items()}
    env |= {
        "CODEENGINE_CLUSTER_NODES": cluster.nodes_spec,
        "CODEENGINE_SERVICE_WORKERS": "1",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, os.urandom(6).hex()],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["statuses"] == [200, 200], "both apps reached the store"
    assert outcome["redis"] == []
