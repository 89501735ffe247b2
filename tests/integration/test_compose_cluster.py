"""The evaluation stack's Redis Cluster, run for real from its own files.

Six redis-server processes start from ``deploy/compose/redis/node.conf`` (only its container
paths, port and bind address moved to this machine's loopback) with the material the compose
init job makes (``codeengine.ops.evalkit``): the cluster forms over TLS as the admin user, every
replica follows its master with the replicas' login, and a service logs in with the verifier's
own files at the paths ``deploy/compose/engine.toml`` names, and may not run what its ACL rule
leaves out.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from codeengine.ops.devcluster import find_free_base_port, redis_server_path
from codeengine.ops.evalkit import make_material
from codeengine.ops.harness import die_with_parent
from codeengine.settings import Settings, load_settings
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import store_settings

pytestmark = pytest.mark.cluster

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
NODES = 6
SECRETS_MOUNT = "/run/secrets/codeengine"
REDIS_MOUNT = "/run/secrets/redis"
GUARD_S = 60.0
"""Against a hang only: forming a cluster takes a few seconds."""


@dataclass
class Stack:
    """The running nodes, the material folder and the first port."""

    out: Path
    base: int
    procs: list[subprocess.Popen[bytes]]

    def cli(self, user: str, port: int, *args: str) -> str:
        """One redis-cli command over TLS as ``user`` (the admin: the nodes' own material)."""
        redis = self.out / "redis"
        if user == "admin":
            password = (redis / "admin.password").read_text()
        else:
            password = (self.out / "verifier" / "redis" / f"{user}.password").read_text()
        argv = [
            shutil.which("redis-cli") or "redis-cli",
            "--tls",
            "--cacert",
            str(redis / "ca.crt"),
        ]
        argv += ["--cert", str(redis / "client.crt"), "--key", str(redis / "client.key")]
        argv += ["--user", user, "-h", "127.0.0.1", "-p", str(port), *args]
        done = subprocess.run(
            argv,
            env=dict(os.environ, REDISCLI_AUTH=password.strip()),
            capture_output=True,
            text=True,
            timeout=GUARD_S,
            check=False,
        )
        return done.stdout + done.stderr

    def wait(self, what: str, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; fail at once if a node exits."""
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            for proc in self.procs:
                assert proc.poll() is None, "a node exited: its config or material is refused"
            if ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


def _node_config(out: Path, node_dir: Path, port: int) -> str:
    """node.conf with its container paths, port and address moved here; each move must find
    what it moves, so a changed node.conf fails here rather than silently."""
    text = (COMPOSE / "redis" / "node.conf").read_text()
    moves = {
        f"{REDIS_MOUNT}/": f"{out / 'redis'}/",
        "cluster-config-file /data/": f"cluster-config-file {node_dir}/",
        "dir /data\n": f"dir {node_dir}\n",
        "tls-port 6379\n": f"tls-port {port}\n",
        "bind * -::*\n": "bind 127.0.0.1\n",
    }
    for old, new in moves.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def _compose_settings() -> Settings:
    return load_settings(COMPOSE / "engine.toml", env={})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose")
    out = root / "out"
    make_material(_compose_settings(), out, SECRETS_MOUNT)
    base = find_free_base_port()
    procs = []
    try:
        for index in range(NODES):
            node_dir = root / f"node-{index}"
            node_dir.mkdir()
            conf = node_dir / "redis.conf"
            conf.write_text(_node_config(out, node_dir, base + index))
            procs.append(
                subprocess.Popen(
                    [redis_server_path(), str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            )
        stack = Stack(out, base, procs)
        ports = [base + i for i in range(NODES)]
        stack.wait("the nodes", lambda: all("PONG" in stack.cli("admin", p, "PING") for p in ports))
        created = stack.cli(
            "admin",
            base,
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        )
        assert "All 16384 slots covered" in created, created[-2000:]
        yield stack
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def test_replicas_follow_their_masters_with_the_replicas_login(stack: Stack) -> None:
    ports = [stack.base + i for i in range(NODES)]

    def replicas_up() -> bool:
        roles = [stack.cli("admin", p, "INFO", "replication") for p in ports]
        return sum("master_link_status:up" in r for r in roles) == NODES // 2

    stack.wait("every replica's link", replicas_up)
    assert all("cluster_state:ok" in stack.cli("admin", p, "CLUSTER", "INFO") for p in ports)


def test_the_verifier_logs_in_with_its_own_files_and_its_rule_only(stack: Stack) -> None:
    settings = _compose_settings()
    cluster = settings.cluster

    def here(path: str) -> str:
        return str(stack.out / "verifier" / PurePosixPath(path).relative_to(SECRETS_MOUNT))

    nodes = ",".join(f"127.0.0.1:{stack.base + i}" for i in range(NODES))
    moved = load_settings(
        COMPOSE / "engine.toml",
        env={
            "CODEENGINE_CLUSTER_NODES": nodes,
            "CODEENGINE_CLUSTER_PASSWORD_FILE": here(cluster.password_file),
            "CODEENGINE_CLUSTER_CA_FILE": here(cluster.ca_file),
            "CODEENGINE_CLUSTER_CERT_FILE": here(cluster.cert_file),
            "CODEENGINE_CLUSTER_KEY_FILE": here(cluster.key_file),
        },
    )

    async def ping() -> None:
        store = RedisStore(store_settings(moved))
        try:
            async with asyncio.timeout(GUARD_S):
                await store.ping()
        finally:
            await store.close()

    asyncio.run(ping())
    assert "NOPERM" in stack.cli(cluster.username, stack.base, "CONFIG", "GET", "maxmemory")
    assert "NOPERM" in stack.cli(cluster.username, stack.base, "FLUSHALL")
    assert "PONG" in stack.cli(cluster.username, stack.base, "PING")
