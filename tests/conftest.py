"""Session fixtures: a real Redis Cluster on loopback, and running coroutines on each loop kind."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.devtls import ensure_cluster_material
from codeengine.settings import Settings, load_settings

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(scope="session")
def cluster() -> Iterator[DevCluster]:
    """A throwaway 3-master, 3-replica cluster for the whole session, stopped even on failure.

    ``CE_TEST_CLUSTER_DIR`` keeps its folder somewhere known (the Makefile uses it to
    clean up after an interrupted run); otherwise a temporary folder.
    """
    base = os.environ.get("CE_TEST_CLUSTER_DIR")
    directory = Path(tempfile.mkdtemp(prefix="cluster-", dir=base))
    (directory / "owner").write_text(str(os.getpid()))
    dev = DevCluster(directory=directory, base_port=find_free_base_port())
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    """Run a coroutine to completion on a fresh loop of each kind the services use."""

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        if request.param == "uvloop":
            return uvloop.run(coro)
        return asyncio.run(coro)

    return runner


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One set of dev key material for the session, as ``CODEENGINE_*``-style setting names.

    The session's services share one cluster and so one stored keyring: they must share the
    key-encryption key that seals it, as the processes of one deployment do.
    """
    var = tmp_path_factory.mktemp("keys")
    files = {
        "keys_keyring_file": str(var / "keyring.json"),
        "keys_kek_file": str(var / "kek"),
        "keys_pepper_file": str(var / "pepper"),
        "keys_alias_key_file": str(var / "alias-key"),
        "keys_record_mac_file": str(var / "record-mac.json"),
        "keys_audit_mac_file": str(var / "audit-mac.json"),
        "keys_checkpoint_key_file": str(var / "checkpoint-ed25519.pem"),
        "keys_trust_anchor_file": str(var / "trust-anchor.json"),
        "keys_credentials_file": str(var / "credentials.json"),
    }
    ensure_dev_material(load_settings(env={f"CODEENGINE_{k.upper()}": v for k, v in files.items()}))
    # The cluster settings' defaults name the dev cluster's TLS material under var/redis: a
    # worker started with them finds it even in a session that started no cluster.
    ensure_cluster_material()
    return files


@pytest.fixture(scope="session")
def settings(cluster: DevCluster, key_files: dict[str, str]) -> Settings:
    """Service settings for the session cluster and key material (one worker)."""
    env = {f"CODEENGINE_{k.upper()}": v for k, v in key_files.items()}
    env |= cluster.client_env()
    env["CODEENGINE_SERVICE_WORKERS"] = "1"
    return load_settings(env=env)
