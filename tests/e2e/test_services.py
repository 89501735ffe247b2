"""Issuer and verifier worker processes against the session's real cluster: /healthz, /readyz."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from codeengine.ops.devcluster import DevCluster
from tests.e2e.helpers import (
    Workers,
    eventually,
    free_port,
    get_json,
    service_workers,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


@contextmanager
def worker(service: str, port: int, **settings: str) -> Iterator[str]:
    """One worker process of ``service`` on ``port``, up (``/healthz``); yields its base URL.
    It must exit 0 on SIGTERM."""
    with service_workers(
        Workers, service, 1, None, {}, settings, port=port, ready="/healthz"
    ) as up:
        yield up.url


@pytest.mark.parametrize("service", ["issuer", "verifier"])
def test_ready_with_cluster_and_keys(
    service: str, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    # The verifier reads the trust list an issuer publishes: an issuer runs beside it.
    with (
        worker("issuer", free_port(), cluster_nodes=cluster.nodes_spec, **key_files) as issuer,
        worker(service, free_port(), cluster_nodes=cluster.nodes_spec, **key_files) as url,
    ):
        wait_for(f"{issuer}/readyz", 200, 10)
        wait_for(f"{url}/readyz", 200, 10)
        assert get_json(f"{url}/readyz") == (200, {"status": "ready"})


def test_not_ready_without_keys(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    # A KEK that does not open the stored keyring, and no first keyring to seed one with.
    (tmp_path / "kek").write_text("11" * 32)
    files = dict(
        key_files,
        keys_keyring_file=str(tmp_path / "missing.json"),
        keys_kek_file=str(tmp_path / "kek"),
    )
    with worker("issuer", free_port(), cluster_nodes=cluster.nodes_spec, **files) as url:
        status, body = get_json(f"{url}/readyz")
        assert status == 503
        assert body == {"status": "not ready", "failed": {"keys": "KEYRING"}}


def test_not_ready_without_cluster_and_answers_within_deadline(key_files: dict[str, str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with worker("verifier", free_port(), cluster_nodes=dead, **key_files) as url:
        status, body = get_json(f"{url}/readyz", timeout_s=2.0)
        assert status == 503
        assert body["status"] == "not ready"
        assert body["failed"] == {"cluster": "STORE_UNAVAILABLE", "keys": "STORE_UNAVAILABLE"}
        assert get_json(f"{url}/healthz") == (200, {"status": "ok"}), "the process is up"


def test_connections_past_the_cap_are_told_to_come_back(
    cluster: DevCluster, key_files: dict[str, str]
) -> None:
    port = free_port()
    with worker(
        "issuer", port, cluster_nodes=cluster.nodes_spec, service_max_connections="2", **key_files
    ):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", port)) as extra:
                extra.settimeout(5)
                answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503") and b"OVERLOADED" in answer
        finally:
            for sock in held:
                sock.close()
        # Once the held connections are gone, new ones are served again.
        wait_for(f"http://127.0.0.1:{port}/healthz", 200, 5)


def test_one_address_cannot_take_every_place_of_a_worker(
    cluster: DevCluster, key_files: dict[str, str]
) -> None:
    port = free_port()
    caps = {"service_max_connections": "100", "service_max_connections_per_source": "40"}
    with worker("verifier", port, cluster_nodes=cluster.nodes_spec, **caps, **key_files):
        crowd = []
        try:
            # One after another: the worker takes them in this order (the accept queue is FIFO).
            for _ in range(60):
                sock = socket.socket()
                sock.bind(("127.0.0.2", 0))  # all of 127/8 is loopback on Linux
                sock.connect(("127.0.0.1", port))
                crowd.append(sock)
            for sock in crowd[40:]:
                sock.settimeout(5)
                answer = sock.recv(4096)
                assert answer.startswith(b"HTTP/1.1 503") and b"OVERLOADED" in answer
                assert b"Retry-After: 1" in answer
            # Another address is served while the first holds all it may.
            with socket.create_connection(("127.0.0.1", port)) as other:
                other.settimeout(5)
                other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert other.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for sock in crowd:
                sock.close()


def test_a_wrong_cluster_password_fails_readiness_and_logs_the_setting(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    settings = {**key_files, **cluster.client_settings(), "cluster_password_file": str(wrong)}
    with service_workers(Workers, "verifier", 1, tmp_path, {}, settings, ready="/healthz") as up:
        status, body = get_json(f"{up.url}/readyz")
        assert status == 503
        assert body["status"] == "not ready"
        assert body["failed"] == {"cluster": "STORE_UNAVAILABLE", "keys": "STORE_UNAVAILABLE"}

        def logged() -> str:
            return up.log_text()

        # The worker logs the refusal as its connect fails (not necessarily before readyz
        # answers): wait for the line, then read what it says.
        text = eventually(logged, lambda t: "refused the login" in t, 30.0)
        assert "check cluster.username and cluster.password_file" in text
        assert "not-the-password" not in text
        assert get_json(f"{up.url}/healthz") == (200, {"status": "ok"}), "the process is up"
