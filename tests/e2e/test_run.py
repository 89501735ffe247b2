"""``codeengine run`` (what ``make run`` starts): ready within 60 s, Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from codeengine.ops.devcluster import find_free_base_port
from codeengine.ops.harness import group, spawn, wait_ready, wait_until
from tests.e2e.helpers import (
    alive,
    descendants,
    eventually,
    free_port,
    get_json,
    service_env,
)

pytestmark = pytest.mark.e2e

HANG_GUARD_S = 30.0
"""A deadline only against a hang: each wait ends as soon as what it waits for is so."""


def healthz_count(port: int) -> float:
    """``/healthz`` requests counted in the issuer's ``/metrics`` on its management ``port``
    (any worker: all workers')."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        metrics = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("codeengine_requests_total{") and 'operation="healthz"' in line
    )


RESIDENT_ID = "110101199003074258"


def bare_lf_verify(port: int, key: str) -> bytes:
    """A verify with bare-LF line endings, the key and a resident ID in it; the answer."""
    body = json.dumps({"code": RESIDENT_ID, "terminal": "t-1", "city": 320100}).encode()
    head = f"POST /v1/verify HTTP/1.1\nHost: x\nAuthorization: Bearer {key}\n"
    head += f"Content-Type: application/json\nContent-Length: {len(body)}\n\n"
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


READY_WITHIN_S = 60.0
DOCUMENTED = {"time", "level", "service", "worker", "logger", "message"}


def test_run_serves_ready_then_ctrl_c_stops_everything(tmp_path: Path) -> None:
    issuer_port, verifier_port = free_port(), free_port()
    issuer_metrics, verifier_metrics = free_port(), free_port()
    records_port, records_metrics = free_port(), free_port()
    var = tmp_path / "var"
    env = service_env(
        service_issuer_port=str(issuer_port),
        service_verifier_port=str(verifier_port),
        service_issuer_management_port=str(issuer_metrics),
        service_verifier_management_port=str(verifier_metrics),
        service_workers="2",
        records_port=str(records_port),
        records_management_port=str(records_metrics),
        keys_keyring_file=str(var / "keys" / "keyring.json"),
        keys_pepper_file=str(var / "keys" / "pepper"),
        keys_credentials_file=str(var / "dev-credentials.json"),
    )
    argv = [sys.executable, "-m", "codeengine", "run", "--var", str(var)]
    cluster_port = find_free_base_port()
    argv += ["--cluster-port", str(cluster_port)]
    log = tmp_path / "run.log"
    # Stopped with SIGTERM if the test fails half-way: the run then stops its cluster too.
    with group(40) as run:
        proc = run.add(spawn("codeengine run", argv, env, log)).proc
        ports = (issuer_port, verifier_port, records_port)
        ready = [f"http://127.0.0.1:{port}/readyz" for port in ports]
        wait_ready(run.children, ready, READY_WITHIN_S)

        def printed() -> bool:
            return "Ctrl-C stops everything" in log.read_text()

        wait_until(run.children, printed, HANG_GUARD_S, "the ready summary")
        assert get_json(f"http://127.0.0.1:{issuer_port}/healthz") == (200, {"status": "ok"})
        # Workers share metrics files, so any worker's /metrics counts every worker's requests.
        for _ in range(6):
            get_json(f"http://127.0.0.1:{issuer_port}/healthz")
        healthz = eventually(lambda: healthz_count(issuer_metrics), lambda n: n >= 7, HANG_GUARD_S)
        assert healthz >= 7
        assert get_json(f"http://127.0.0.1:{issuer_port}/metrics")[0] == 404, "not public"
        summary = log.read_text()
        assert f"http://127.0.0.1:{verifier_metrics}/metrics" in summary
        assert f"http://127.0.0.1:{records_port}" in summary
        # The records service keeps its embedded store with the run's state.
        assert (var / "records").is_dir()
        children = descendants(proc.pid)
        redis = [p for p in children if "redis-server" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(redis) == 6, "three masters and three replicas"
        assert len(children) >= 6 + 4, "two workers per service"

        credentials = json.loads((var / "dev-credentials.json").read_text())
        scopes = {scope for client in credentials["clients"] for scope in client["scopes"]}
        assert {"generate", "display", "convert", "admin", "verify"} <= scopes
        assert (var / "keys" / "keyring.json").stat().st_mode & 0o077 == 0, "owner-only"
        key = next(c["key"] for c in credentials["clients"] if "verify" in c["scopes"])
        answer = bare_lf_verify(verifier_port, key)
        assert answer.startswith(b"HTTP/1.0 400") and b'"MALFORMED_REQUEST"' in answer
        # The run's cluster is secure: its TLS keys and passwords were made under --var.
        for name in ("ca.key", "server.key", "client.key", "codeengine.password"):
            assert (var / "redis" / name).stat().st_mode & 0o077 == 0, name
        conf = (var / "cluster" / str(cluster_port) / "redis.conf").read_text()
        assert "port 0\n" in conf and f"tls-port {cluster_port}\n" in conf
        assert (var / "cluster" / str(cluster_port) / "redis.conf").stat().st_mode & 0o077 == 0

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        deadline = time.monotonic() + HANG_GUARD_S
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if alive(p)], "Ctrl-C left processes behind"
    output = log.read_text()
    assert "codeengine is ready" in output and output.endswith("stopped.\n")
    # Neither the key nor the resident ID is in any file the run wrote (but the credentials
    # file, which holds the key on purpose, and Redis's data, where the ID is not either).
    written = [p for p in var.rglob("*") if p.is_file() and p.parent.name != "keys"]
    written = [p for p in written if "cluster" not in p.parts and p.name != "dev-credentials.json"]
    for secret in (key.encode(), RESIDENT_ID.encode()):
        assert [p for p in written if secret in p.read_bytes()] == []
    # Every process's log: owner-only, one JSON object a line with the documented fields.
    logs = sorted((var / "log").glob("*.log"))
    assert [p.name for p in logs] == [
        "issuer-0.log",
        "issuer-1.log",
        "records.log",
        "supervisor.log",
        "verifier-0.log",
        "verifier-1.log",
    ]
    for path in logs:
        assert path.stat().st_mode & 0o777 == 0o600, path
        lines = [json.loads(text) for text in path.read_text().splitlines()]
        assert lines and all(DOCUMENTED <= line.keys() for line in lines), path
        assert {line["service"] for line in lines} == {path.name.split("-")[0].split(".")[0]}
    supervisor_log = (var / "log" / "supervisor.log").read_text().splitlines()
    supervisor = [json.loads(text)["message"] for text in supervisor_log]
    assert supervisor[0].startswith("ready") and supervisor[-2:] == ["stopping", "stopped"]
