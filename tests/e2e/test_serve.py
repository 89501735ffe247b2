"""``codeengine serve`` as a real process against the session cluster: it starts the workers,
starts again one that dies, refuses a second serve on its metrics folder and a port another
program holds, drains on SIGTERM and exits 0 leaving nothing behind; when its workers keep
dying it gives up with exit 3."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from codeengine.ops.devcluster import DevCluster
from codeengine.ops.harness import Child, answers_ok, group, spawn, wait_ready, wait_until
from tests.e2e.helpers import alive, descendants, free_port, service_env

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

HANG_GUARD_S = 60.0
"""A deadline only against a hang: each wait ends as soon as what it waits for is so."""
SHUTDOWN_TIMEOUT_S = 5
SERVE = [sys.executable, "-m", "codeengine", "serve"]


def serve_env(cluster: DevCluster, key_files: dict[str, str], **settings: str) -> dict[str, str]:
    """The environment of a serve: the session's keys and cluster login, and ``settings``."""
    env = service_env(**key_files, **cluster.client_settings(), **settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def workers_of(serve: Child) -> set[int]:
    return descendants(serve.pid)


def test_serve_restarts_a_dead_worker_and_drains_on_sigterm(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    port, management = free_port(), free_port()
    metrics = tmp_path / "metrics"
    env = serve_env(
        cluster,
        key_files,
        service_issuer_port=str(port),
        service_issuer_management_port=str(management),
        service_workers="2",
        service_shutdown_timeout_s=str(SHUTDOWN_TIMEOUT_S),
        service_metrics_dir=str(metrics),
    )
    ready = f"http://127.0.0.1:{port}/readyz"
    logs = tmp_path / "logs"
    log = logs / "issuer-serve.log"
    argv = [*SERVE, "issuer", "--log-dir", str(logs)]
    with group(SHUTDOWN_TIMEOUT_S + 10) as started:
        serve = started.add(spawn("serve", argv, env, tmp_path / "out.log", cwd=tmp_path))
        wait_ready([serve], [ready], HANG_GUARD_S)
        wait_until([serve], lambda: len(workers_of(serve)) == 2, HANG_GUARD_S, "two workers")
        first = workers_of(serve)
        assert metrics.is_dir() and any(metrics.glob("*.db"))

        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = workers_of(serve)
            return len(now) == 2 and victim not in now and answers_ok(ready)

        wait_until([serve], replaced, HANG_GUARD_S, "a worker in place of the killed one")
        assert "exited (-9); restarting it" in log.read_text()
        # Each process keeps its own owner-only file; a restarted worker appends to its own.
        files = sorted(p.name for p in logs.iterdir())
        assert files == ["issuer-0.log", "issuer-1.log", "issuer-serve.log"]
        assert all(p.stat().st_mode & 0o077 == 0 for p in logs.iterdir())

        # A second serve of the same folder would delete the first one's metric files.
        second = subprocess.run(
            [*SERVE, "issuer"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            check=False,
        )
        busy = f"service.metrics_dir: {metrics} is in use by another codeengine serve"
        assert (second.returncode, second.stderr.splitlines()) == (1, [f"codeengine serve: {busy}"])
        with urllib.request.urlopen(f"http://127.0.0.1:{management}/metrics") as response:
            assert b"codeengine_" in response.read()

        running = workers_of(serve)
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10) == 0
    assert not [pid for pid in running if alive(pid)]
    # The folder was made by serve, so serve removed it.
    assert not metrics.exists()
    assert "stopped (exit 0)" in log.read_text()


def test_serve_refuses_a_port_another_program_holds(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = serve_env(cluster, key_files, service_verifier_port=str(port))
        done = subprocess.run(
            [*SERVE, "verifier"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"codeengine serve: service.verifier_port: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    ]


def test_serve_gives_up_with_exit_3_when_its_workers_keep_dying(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    """Each worker is killed as soon as it appears; the sixth death in a minute ends serve."""
    env = serve_env(
        cluster,
        key_files,
        service_issuer_port=str(free_port()),
        service_issuer_management_port="0",
        service_workers="1",
    )
    killed: set[int] = set()
    with group(SHUTDOWN_TIMEOUT_S + 10) as started:
        serve = started.add(
            spawn("serve", [*SERVE, "issuer"], env, tmp_path / "serve.log", cwd=tmp_path)
        )

        def kill_each_new_worker() -> bool:
            if serve.exited():
                return True
            for pid in workers_of(serve) - killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            return False

        wait_until([], kill_each_new_worker, HANG_GUARD_S, "serve to give up")
        assert serve.proc.wait(timeout=HANG_GUARD_S) == 3
    assert len(killed) == 6
    assert "more than 5 restarts in 60 s; giving up" in (tmp_path / "serve.log").read_text()
