"""The session's cluster is secure: TLS only, and the services' ACL user may do only its work.

Each refusal must come at once, as a StoreRefused that names the setting to fix: never a
hang, never a generic "no node answered". The guards below (asyncio.timeout) only stop a
broken build from hanging the suite; what is asserted is the error's kind and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.errors import StoreUnavailable
from codeengine.ops.devcluster import DevCluster
from codeengine.ops.devtls import ensure_cluster_material
from codeengine.ops.harness import die_with_parent
from codeengine.store.cluster import FastCluster
from codeengine.store.security import PLAIN, StoreRefused, StoreSecurity, load_security

pytestmark = pytest.mark.cluster

HANG_GUARD_S = 30.0
"""Far past any honest answer: a refusal takes one round trip."""


def services_security(cluster: DevCluster, **changed: Any) -> StoreSecurity:
    """The services' login on the session cluster, with some settings changed."""
    m = cluster.material
    options: dict[str, Any] = {
        "username": "codeengine",
        "password_file": str(m.password_file("codeengine")),
        "tls": True,
        "ca_file": str(m.ca_file),
        "cert_file": str(m.client_cert),
        "key_file": str(m.client_key),
        "server_name": "localhost",
    }
    return load_security(**(options | changed))


async def refusal(
    nodes: list[tuple[str, int]],
    security: StoreSecurity,
    kind: type[StoreUnavailable] = StoreRefused,
    connect_timeout_s: float = 5.0,
) -> StoreUnavailable:
    """The error (a StoreRefused unless told) that starting a client with ``security`` raises."""
    client = FastCluster(nodes, security=security, connect_timeout_s=connect_timeout_s)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(kind) as caught:
                await client.start()
    finally:
        await client.aclose()
    return caught.value


def test_a_wrong_password_is_refused_naming_the_settings(
    cluster: DevCluster, tmp_path: Path, run: Any
) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    security = services_security(cluster, password_file=str(wrong))
    error = run(refusal(cluster.startup_nodes, security))
    assert "refused the login of 'codeengine'" in str(error)
    assert "cluster.username" in str(error) and "cluster.password_file" in str(error)
    assert "not-the-password" not in str(error), "the password never reaches a message"


def test_an_unknown_user_is_refused_like_a_wrong_password(cluster: DevCluster, run: Any) -> None:
    security = services_security(cluster, username="nobody")
    error = run(refusal(cluster.startup_nodes, security))
    assert "'nobody'" in str(error) and "cluster.password_file" in str(error)


def test_plain_text_against_the_tls_port_is_refused_naming_cluster_tls(
    cluster: DevCluster, run: Any
) -> None:
    # Plain text, with the right login even: the node hangs up on bytes that are not TLS.
    security = services_security(cluster, tls=False)
    assert security.ssl_context is None
    error = run(refusal(cluster.startup_nodes, security))
    assert "cluster.tls" in str(error)
    # And without a login, the connection's first PING meets the same end.
    assert "cluster.tls" in str(run(refusal(cluster.startup_nodes, PLAIN)))


def test_a_certificate_from_an_unknown_ca_is_refused_naming_cluster_ca_file(
    cluster: DevCluster, tmp_path: Path, run: Any
) -> None:
    other = ensure_cluster_material(tmp_path / "other")  # a CA of its own
    security = services_security(cluster, ca_file=str(other.ca_file))
    error = run(refusal(cluster.startup_nodes, security))
    assert "not trusted" in str(error) and "cluster.ca_file" in str(error)


def test_a_certificate_for_another_name_is_refused_naming_cluster_server_name(
    cluster: DevCluster, run: Any
) -> None:
    security = services_security(cluster, server_name="store.example.org")
    error = run(refusal(cluster.startup_nodes, security))
    assert "'store.example.org'" in str(error) and "cluster.server_name" in str(error)


def test_without_a_client_certificate_the_nodes_hang_up(cluster: DevCluster, run: Any) -> None:
    # The nodes require one (tls-auth-clients yes): mutual TLS is not optional on them.
    security = services_security(cluster, cert_file="", key_file="")
    error = run(refusal(cluster.startup_nodes, security))
    assert "cluster.cert_file" in str(error)


def test_unreadable_files_fail_at_load_naming_the_setting(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(StoreRefused, match=r"cluster\.password_file"):
        load_security(username="u", password_file=missing, tls=False, ca_file="")
    (tmp_path / "password").write_text("x")
    with pytest.raises(StoreRefused, match=r"cluster\.ca_file"):
        load_security(
            username="u", password_file=str(tmp_path / "password"), tls=True, ca_file=missing
        )


@contextlib.contextmanager
def plain_redis(directory: Path) -> Iterator[int]:
    """One plain-text redis-server (no cluster, no TLS) on a free port; its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = shutil.which("redis-server") or "redis-server"
    argv = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        str(directory),
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    try:
        assert proc.stdout is not None
        # Wait for the server to say it listens (an event, not a sleep).
        for line in proc.stdout:
            if b"Ready to accept connections" in line:
                break
        else:
            raise AssertionError("redis-server exited before it was ready")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_tls_against_a_plain_text_server_is_refused_naming_cluster_tls(
    cluster: DevCluster, tmp_path: Path, run: Any
) -> None:
    # A plain-text server waits for the end of a line that a TLS greeting never sends: the
    # connect times out (one second here), naming the handshake and cluster.tls.
    with plain_redis(tmp_path) as port:
        security = services_security(cluster)
        nodes = [("127.0.0.1", port)]
        error = run(refusal(nodes, security, StoreUnavailable, connect_timeout_s=1.0))
    assert "no TLS handshake within 1 s" in str(error) and "cluster.tls" in str(error)


# The services' user: least privilege.


@contextlib.asynccontextmanager
async def as_services(cluster: DevCluster) -> AsyncIterator[FastCluster]:
    client = FastCluster(cluster.startup_nodes, security=cluster.client_security("codeengine"))
    await client.start()
    try:
        yield client
    finally:
        await client.aclose()


FORBIDDEN = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"),
    ("MONITOR",),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "LIST"),
    ("MODULE", "LIST"),
    ("CLIENT", "LIST"),
    ("EVAL", "return 1", "0"),
    ("SCRIPT", "FLUSH"),
    ("CLUSTER", "FAILOVER"),
    ("INCRBY", "x", "1"),
    ("SUBSCRIBE", "news"),
]


@pytest.mark.parametrize("command", FORBIDDEN, ids=lambda c: " ".join(c[:2]))
def test_the_services_user_may_not_run(
    cluster: DevCluster, command: tuple[str, ...], run: Any
) -> None:
    # The node's own ACL check says so (asked as the admin user)...
    port = cluster.masters()[0]
    verdict = cluster.command(port, "ACL", "DRYRUN", "codeengine", *command)
    assert "no permissions" in verdict, verdict
    allowed = cluster.command(port, "ACL", "DRYRUN", "admin", *command)
    assert allowed.strip() == "OK", "the rule refused it, not the command's existence"

    # ...and so does the node when the services' user sends it.
    async def scenario() -> None:
        async with as_services(cluster) as client:
            slot = client.primary_slots()[0]
            # DEBUG is refused before the ACL check (enable-debug-command no): ERR, not NOPERM.
            refusal = "refused: ERR" if command[0] == "DEBUG" else "refused: NOPERM"
            with pytest.raises(StoreUnavailable, match=refusal):
                await client.execute_at_slot(slot, *command)
            # The refusal is the user's, not the node's: the connection still serves.
            await client.ping()

    run(scenario())


def test_a_script_runs_with_the_callers_rights(cluster: DevCluster, run: Any) -> None:
    # SCRIPT LOAD and EVALSHA are the services' own; the script's FLUSHALL is not.
    async def scenario() -> None:
        async with as_services(cluster) as client:
            script = client.script("return redis.call('FLUSHALL')")
            with pytest.raises(StoreUnavailable, match="refused"):
                await script(["{acl}:probe"])
            reads = client.script("return redis.call('GET', KEYS[1])")
            assert await reads(["{acl}:probe"]) is None

    run(scenario())


def test_the_default_user_is_off(cluster: DevCluster, run: Any) -> None:
    # No login at all over TLS: every command but AUTH and HELLO needs one.
    security = StoreSecurity(
        ssl_context=services_security(cluster).ssl_context, server_name="localhost"
    )
    error = run(refusal(cluster.startup_nodes, security))
    assert "needs a login" in str(error) and "cluster.username" in str(error)
    # Nor can anyone log in as default, whatever the password...
    as_default = services_security(cluster, username="default")
    assert "'default'" in str(run(refusal(cluster.startup_nodes, as_default)))
    # ...yet its rules stay whole: Redis 7.0 checks the MULTI/EXEC it replays from the AOF
    # against them, and a restarted master would otherwise load no script's writes.
    port = cluster.masters()[0]
    assert cluster.command(port, "ACL", "DRYRUN", "default", "SET", "k", "v").strip() == "OK"


def test_only_the_configured_ca_is_trusted(cluster: DevCluster) -> None:
    # The system's public CAs are not: a certificate one of them issued for the server name
    # must not pass for a node's.
    context = services_security(cluster).ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # One CA, the cluster's (a context with the system's would hold some 150).
    assert context.cert_store_stats()["x509_ca"] == 1


RECORDS_MAY = [
    ("XRANGE", "ce:scan:{320500}", "(1-0", "+", "COUNT", "100000"),
    ("XGROUP", "SETID", "ce:chg:{320500}", "records", "1-0"),
    ("XTRIM", "ce:scan:{320500}", "MINID", "~", "1-0"),
    ("SET", "ce:rec:{records}:intent", "x"),
]
RECORDS_MAY_NOT = [
    ("GET", "ce:s:{AAAAAAAAAAAAAAAA}"),  # a subject's record
    ("XRANGE", "ce:a:{AAAAAAAAAAAAAAAA}", "-", "+"),  # a subject's audit trail
    ("XADD", "ce:scan:{320500}", "*", "e", "x"),  # writing scans
    ("DEL", "ce:k:{keyring}"),
    ("EVALSHA", "0" * 40, "0"),
    ("FLUSHALL",),
    ("KEYS", "*"),
]


@pytest.mark.parametrize("command", RECORDS_MAY, ids=lambda c: c[0])
def test_the_records_user_may_read_the_streams_move_its_position_and_trim(
    cluster: DevCluster, command: tuple[str, ...]
) -> None:
    port = cluster.masters()[0]
    assert cluster.command(port, "ACL", "DRYRUN", "records", *command).strip() == "OK"


@pytest.mark.parametrize("command", RECORDS_MAY_NOT, ids=lambda c: " ".join(c[:2]))
def test_the_records_user_may_touch_nothing_else(
    cluster: DevCluster, command: tuple[str, ...]
) -> None:
    port = cluster.masters()[0]
    verdict = cluster.command(port, "ACL", "DRYRUN", "records", *command)
    assert "no permissions" in verdict, verdict
