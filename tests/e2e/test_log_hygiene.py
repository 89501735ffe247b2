"""What real worker processes leave under ``var/`` when clients misbehave: no key or resident
ID in any file, JSON lines with the documented fields, owner-only files that rotate, and a
flood of malformed requests collapsed to a few lines.

The workers run as ``make run`` runs them: each with its own log file under ``var/log`` and its
metrics under ``var/metrics``, against the session's cluster.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from codeengine.ops.devcluster import DevCluster
from tests.e2e.helpers import Workers, dev_keys, eventually, service_workers

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

HANG_GUARD_S = 30.0
"""A deadline only against a hang: each wait ends as soon as what it waits for is so."""
RESIDENT_ID = "110101199003074258"
DOCUMENTED = {"time", "level", "service", "worker", "logger", "message"}
MALFORMED = b"GET / HTTP/1.1\nHost: x\n\n"
"""24 bytes of bare-LF HTTP, as the red team sent them."""
FLOOD = 10_000
FLOOD_LOG_BYTES = 4096
"""What a flood of malformed requests may add to the logs of all the workers together."""


@contextmanager
def verifiers(
    var: Path, cluster: DevCluster, key_files: dict[str, str], count: int, **settings: str
) -> Iterator[Workers]:
    """``count`` verifier workers, ready, and the issuer that publishes the trust list they
    read; every worker's log under ``var/log`` and metrics under ``var/metrics``."""
    common = {"cluster_nodes": cluster.nodes_spec, **key_files, **settings}
    keys = dev_keys(key_files)

    def started(service: str, workers: int, ready: str) -> Any:
        metrics = var / "metrics" / service
        metrics.mkdir(parents=True)
        env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        return service_workers(
            Workers, service, workers, var / "log", keys, common, env, ready=ready
        )

    with started("issuer", 1, "/healthz"), started("verifier", count, "/readyz") as verifier:
        yield verifier


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def log_lines(var: Path) -> list[dict[str, Any]]:
    """Every line of every log file under ``var/log`` (rotated ones too), decoded."""
    lines = []
    for path in sorted((var / "log").iterdir()):
        for text in path.read_text().splitlines():
            lines.append(json.loads(text))  # every line is one JSON object
    return lines


def files_holding(var: Path, needle: bytes) -> list[str]:
    """The files under ``var`` whose bytes contain ``needle``."""
    return [str(p) for p in var.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("fast_lane", ["true", "false"], ids=["lane", "aiohttp"])
def test_no_key_or_resident_id_reaches_any_file_under_var(
    tmp_path: Path, cluster: DevCluster, key_files: dict[str, str], fast_lane: str
) -> None:
    var = tmp_path / "var"
    key = dev_keys(key_files)["verify"]
    body = json.dumps({"code": RESIDENT_ID, "terminal": "t-1", "city": 320100}).encode()
    head = f"POST /v1/verify HTTP/1.1\nHost: x\nAuthorization: Bearer {key}\n"
    head += f"Content-Type: application/json\nContent-Length: {len(body)}\n\n"
    with verifiers(var, cluster, key_files, 2, service_fast_lane=fast_lane) as verifier:
        for _ in range(4):  # connections spread over both workers
            answer = exchange(verifier.port, head.encode() + body)
            status_line, _, rest = answer.partition(b"\r\n")
            headers, _, problem = rest.partition(b"\r\n\r\n")
            assert status_line.split()[1] == b"400"
            assert b"content-type: application/json" in headers.lower()
            assert json.loads(problem)["reason"] == "MALFORMED_REQUEST"
            assert key.encode() not in answer and RESIDENT_ID.encode() not in answer
        # The same body, well-formed, and not JSON: answered, counted in the metrics files.
        good = verifier.call(
            "POST",
            "/v1/verify",
            body=body,
            scope="verify",
            headers={"Content-Type": "application/json"},
        )
        assert (good.status, good.reason) == (200, "MALFORMED")
        broken = verifier.call(
            "POST",
            "/v1/verify",
            body=body[:-1],
            scope="verify",
            headers={"Content-Type": "application/json"},
        )
        assert (broken.status, broken.reason) == (400, "BAD_JSON")
    assert files_holding(var, key.encode()) == []
    assert files_holding(var, RESIDENT_ID.encode()) == []
    lines = log_lines(var)
    assert all(DOCUMENTED <= line.keys() for line in lines)
    assert {line["service"] for line in lines} == {"issuer", "verifier"}
    refused = [line for line in lines if line["message"] == "malformed request refused"]
    assert refused and all(line["reason"] == "MALFORMED_REQUEST" for line in refused)
    for path in (var / "log").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def flood(port: int, requests: int, connections: int) -> int:
    """Send ``requests`` malformed requests, each on a connection of its own, ``connections``
    at a time; how many were answered 400."""
    refused = 0

    async def one() -> None:
        nonlocal refused
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(MALFORMED)
        answer = await reader.read()  # the server closes after a 400
        writer.close()
        refused += answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")

    async def sender(share: int) -> None:
        for _ in range(share):
            await one()

    shares = [requests // connections + (i < requests % connections) for i in range(connections)]
    async with asyncio.timeout(10 * HANG_GUARD_S):
        await asyncio.gather(*(sender(share) for share in shares))
    return refused


@pytest.mark.parametrize("fast_lane", ["true", "false"], ids=["lane", "aiohttp"])
def test_a_flood_of_malformed_requests_writes_a_few_lines(
    tmp_path: Path, cluster: DevCluster, key_files: dict[str, str], fast_lane: str
) -> None:
    var = tmp_path / "var"
    with verifiers(var, cluster, key_files, 2, service_fast_lane=fast_lane) as verifier:
        logs = list((var / "log").glob("verifier-*"))
        before = sum(p.stat().st_size for p in logs)
        assert asyncio.run(flood(verifier.port, FLOOD, 32)) == FLOOD
    # Measured once the workers have stopped: the last window's count is written at exit.
    grown = sum(p.stat().st_size for p in logs) - before
    assert grown <= FLOOD_LOG_BYTES, f"{grown} bytes of log for {FLOOD} malformed requests"
    refused = [line for line in log_lines(var) if line["message"] == "malformed request refused"]
    # Every request is accounted for: the lines written, and the repeats they stand for.
    assert sum(line.get("repeated", 1) for line in refused) == FLOOD
    print(f"{FLOOD} malformed requests: {grown} bytes of log in {len(refused)} lines")


def test_a_worker_rotates_its_own_log_file_by_size(
    tmp_path: Path, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    var = tmp_path / "var"
    settings = {
        "logging_max_bytes": "4096",
        "logging_backups": "1",
        "logging_repeat_window_s": "0",  # every line written, so that lines add up quickly
    }
    with verifiers(var, cluster, key_files, 1, **settings) as verifier:
        for _ in range(60):  # about 200 bytes of log each
            exchange(verifier.port, MALFORMED)
    files = sorted(p.name for p in (var / "log").glob("verifier-*"))
    assert len(files) == 2 and files[1] == files[0] + ".1", files
    for name in files:
        path = var / "log" / name
        assert path.stat().st_size <= 4096
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = log_lines(var)
    assert all(DOCUMENTED <= line.keys() for line in lines)
    # The newest file ends with the worker's exit; the older one holds refusals.
    assert any(line["message"] == "malformed request refused" for line in lines)


def requests_counted(verifier: Workers) -> dict[str, float]:
    """The verifier's ``verify`` requests in ``/metrics`` (its management port) by reason."""
    text = verifier.scrape()
    counted: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("codeengine_requests_total{") and 'operation="verify"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counted[reason] = counted.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return counted


def test_a_client_gone_mid_body_is_counted_as_client_closed_not_internal(
    tmp_path: Path, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    var = tmp_path / "var"
    key = dev_keys(key_files)["verify"]
    head = f"POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    head += "Content-Type: application/json\r\nContent-Length: 300\r\n\r\n"
    with verifiers(var, cluster, key_files, 1, service_fast_lane="false") as verifier:
        with socket.create_connection(("127.0.0.1", verifier.port)) as sock:
            sock.sendall(head.encode() + b'{"code": "')
            # A reset, not a polite close: the server sees the connection lost mid-body.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        counted = eventually(
            lambda: requests_counted(verifier), lambda c: "CLIENT_CLOSED" in c, HANG_GUARD_S
        )
    assert counted == {"CLIENT_CLOSED": 1.0}
    lines = log_lines(var)
    assert not [line for line in lines if "exc_type" in line or line["level"] == "error"]
