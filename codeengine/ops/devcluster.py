"""A real Redis Cluster (3 masters + 3 replicas) on loopback, from the system's redis-server.

Used by ``make run`` (a persistent cluster under ``var/``), by the test session (a throwaway
cluster in a temporary folder) and by the drills, which kill, pause and fail over its nodes.
Every redis-server is a child of the process that started it and is told by the kernel to exit
when that process dies, so an interrupted test run or a killed ``make run`` leaves nothing behind.

By default the cluster is secure, as a production one is: TLS only (``port 0``, mutual TLS
between clients and nodes, on the cluster bus and for replication) and ACL users instead of
the ``default`` one (:mod:`codeengine.ops.devtls` makes the material). ``secure=False`` gives
the plain cluster (plain text, no login) that the benchmarks compare against.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "DevCluster",
    "RedisPyOptions",
    "acl_users",
    "find_free_base_port",
    "redis_server_path",
]

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from codeengine.ops.devtls import (
    DEFAULT_MATERIAL_DIR,
    SERVER_NAME,
    ClusterMaterial,
    ensure_cluster_material,
)
from codeengine.ops.harness import die_with_parent
from codeengine.store.acl import RECORDS_ACL_RULE, SERVICE_ACL_RULE
from codeengine.store.security import PLAIN, StoreSecurity, load_security

NODE_COUNT = 6
REPLICAS_PER_MASTER = 1
BUS_PORT_OFFSET = 10000
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# A short node timeout makes a killed master fail over in about two seconds, which the drills need.
NODE_TIMEOUT_MS = 2000


class ClusterError(RuntimeError):
    """The cluster could not be started, formed or stopped."""


def redis_server_path() -> str:
    """The system's redis-server, or a ClusterError that says how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise ClusterError("redis-server not found: `make test`/`make run` install it with apt")
    return path


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Ports handed out for outgoing connections (Linux's default ip_local_port_range starts at 32768):
# a node restarted by a drill must find its ports and its bus port (+10000) still free, and an
# outgoing connection may take any free port of that range meanwhile. So every port of a test
# cluster, bus ports included, lies below it.
_EPHEMERAL_START = 32768
_BASE_LOW = 12000
_BASE_SPAN = _EPHEMERAL_START - BUS_PORT_OFFSET - _BASE_LOW


def find_free_base_port(host: str = "127.0.0.1", count: int = NODE_COUNT) -> int:
    """A base port such that ``count`` ports from it and their cluster-bus ports are all free,
    all below the ports the kernel hands out to outgoing connections."""
    span = _BASE_SPAN - count
    # Start from a per-process offset so concurrent sessions rarely probe the same range.
    start = (os.getpid() * 37) % span
    for step in range(0, span, count):
        base = _BASE_LOW + (start + step) % span
        ports = [base + i for i in range(count)]
        if all(_port_free(host, p) and _port_free(host, p + BUS_PORT_OFFSET) for p in ports):
            return base
    raise ClusterError("no free loopback port range for the cluster")


def acl_users(material: ClusterMaterial) -> list[str]:
    """The ``user`` lines of a secure cluster (a node's config or an ACL file): the services'
    user with :data:`~codeengine.store.acl.SERVICE_ACL_RULE`, the admin, the replicas' user,
    each with the SHA-256 of its password, never the password."""

    def hashed(user: str) -> str:
        return "#" + hashlib.sha256(material.password(user).encode()).hexdigest()

    return [
        # Off: nobody can log in as default, and a new connection must AUTH. Its rules stay
        # whole all the same: Redis 7.0 replays a MULTI/EXEC from the AOF as the default user
        # and checks each command against its rules, so with -@all a restarted master loaded
        # no script's writes (its shard came back empty; the kill-redis-master drill lost
        # acknowledged changes that way).
        "user default off resetchannels ~* &* +@all",
        f"user admin on {hashed('admin')} ~* &* +@all",
        f"user codeengine on {hashed('codeengine')} {SERVICE_ACL_RULE}",
        f"user records on {hashed('records')} {RECORDS_ACL_RULE}",
        f"user replica on {hashed('replica')} resetchannels -@all +psync +replconf +ping",
    ]


class RedisPyOptions(TypedDict, total=False):
    """TLS and login keyword arguments of a redis-py client (tests and benchmarks)."""

    username: str
    password: str
    ssl: bool
    ssl_ca_certs: str
    ssl_certfile: str
    ssl_keyfile: str


@dataclass
class DevCluster:
    """Six redis-server processes on loopback formed into a cluster with one replica per master."""

    directory: Path
    base_port: int
    host: str = "127.0.0.1"
    persistent: bool = False
    secure: bool = True
    """TLS and ACL users (the default everywhere); off: plain text, no login."""
    material_dir: Path = DEFAULT_MATERIAL_DIR
    """Where the secure cluster's CA, certificates and passwords are made and kept."""
    _procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _material: ClusterMaterial | None = field(default=None, repr=False)

    @property
    def material(self) -> ClusterMaterial:
        """The TLS and ACL files of a secure cluster (made on first use)."""
        if not self.secure:
            raise ClusterError("a plain cluster has no TLS or ACL material")
        if self._material is None:
            self._material = ensure_cluster_material(self.material_dir)
        return self._material

    def client_security(self, user: str = "codeengine") -> StoreSecurity:
        """What the project's cluster client needs to log in as ``user`` (services: codeengine)."""
        if not self.secure:
            return PLAIN
        m = self.material
        return load_security(
            username=user,
            password_file=str(m.password_file(user)),
            tls=True,
            ca_file=str(m.ca_file),
            cert_file=str(m.client_cert),
            key_file=str(m.client_key),
            server_name=SERVER_NAME,
        )

    def client_env(self, user: str = "codeengine") -> dict[str, str]:
        """``CODEENGINE_CLUSTER_*`` settings of a service of this cluster, logged in as ``user``
        (the services: codeengine; the records service: records)."""
        env = {"CODEENGINE_CLUSTER_NODES": self.nodes_spec}
        if not self.secure:
            return env | {
                "CODEENGINE_CLUSTER_TLS": "false",
                "CODEENGINE_CLUSTER_USERNAME": "",
                "CODEENGINE_CLUSTER_PASSWORD_FILE": "",
            }
        m = self.material
        return env | {
            "CODEENGINE_CLUSTER_TLS": "true",
            "CODEENGINE_CLUSTER_USERNAME": user,
            "CODEENGINE_CLUSTER_PASSWORD_FILE": str(m.password_file(user)),
            "CODEENGINE_CLUSTER_CA_FILE": str(m.ca_file),
            "CODEENGINE_CLUSTER_CERT_FILE": str(m.client_cert),
            "CODEENGINE_CLUSTER_KEY_FILE": str(m.client_key),
            "CODEENGINE_CLUSTER_SERVER_NAME": SERVER_NAME,
        }

    def client_settings(self, user: str = "codeengine") -> dict[str, str]:
        """:meth:`client_env` as lower-case setting names (``cluster_nodes``, ...), the form
        the test and tool helpers take."""
        env = self.client_env(user)
        return {k.removeprefix("CODEENGINE_").lower(): v for k, v in env.items()}

    def redis_py_options(self, user: str = "admin") -> RedisPyOptions:
        """Keyword arguments of a redis-py client of this cluster, logged in as ``user``.

        The admin user by default: redis-py's cluster client asks ``COMMAND`` for the key
        positions of every command, which the services' user may not run, and the tests that
        use redis-py are oracles that read, delete or tamper beyond what the services may.
        """
        if not self.secure:
            return RedisPyOptions()
        m = self.material
        return {
            "username": user,
            "password": m.password(user),
            "ssl": True,
            "ssl_ca_certs": str(m.ca_file),
            "ssl_certfile": str(m.client_cert),
            "ssl_keyfile": str(m.client_key),
        }

    def cli_args(self, user: str = "admin") -> list[str]:
        """redis-cli's TLS and login options for ``user`` (its password goes in the
        environment, :meth:`cli_env`, never on the command line)."""
        if not self.secure:
            return []
        m = self.material
        return [
            "--tls",
            "--cacert",
            str(m.ca_file),
            "--cert",
            str(m.client_cert),
            "--key",
            str(m.client_key),
            "--user",
            user,
        ]

    def cli_env(self, user: str = "admin") -> dict[str, str] | None:
        """redis-cli's environment: the password of ``user`` (None: the caller's own)."""
        if not self.secure:
            return None
        return dict(os.environ, REDISCLI_AUTH=self.material.password(user))

    @property
    def ports(self) -> list[int]:
        """The client ports of the six nodes."""
        return [self.base_port + i for i in range(NODE_COUNT)]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, for a cluster client."""
        return [(self.host, p) for p in self.ports]

    @property
    def nodes_spec(self) -> str:
        """The nodes as ``host:port,host:port,...``: the form settings and environment take."""
        return ",".join(f"{self.host}:{p}" for p in self.ports)

    def _config(self, port: int) -> str:
        # redis-server changes into ``dir`` before it opens the log: every path is absolute.
        node_dir = (self.directory / str(port)).resolve()
        lines = [
            f"bind {self.host}",
            "cluster-enabled yes",
            f"cluster-config-file nodes-{port}.conf",
            f"cluster-node-timeout {NODE_TIMEOUT_MS}",
            f'dir "{node_dir}"',
            f'logfile "{node_dir / "redis.log"}"',
            f'pidfile "{node_dir / "redis.pid"}"',
            "daemonize no",
            "protected-mode yes",
            # Every status write is acknowledged only after WAIT; durability on disk is extra.
            f"appendonly {'yes' if self.persistent else 'no'}",
            "appendfsync everysec",
            'save ""',
            "cluster-allow-replica-migration no",
            # A new stream's first node is allocated at this size (4 KB by default), and every
            # subject has an audit stream of a few entries: about 4.7 KB a subject fell to
            # 1.7 KB, and an import's Redis CPU by a seventh (fewer fresh pages, measured with
            # bench.importer). Longer streams (the scan logs) just use more, smaller nodes.
            "stream-node-max-bytes 1024",
        ]
        lines += self._secure_config(port) if self.secure else [f"port {port}"]
        return "\n".join(lines) + "\n"

    def _secure_config(self, port: int) -> list[str]:
        """TLS on every link and the ACL users; the config holds password hashes only, but
        ``masterauth`` (the replica user's password), so it is written owner-only."""
        m = self.material
        return [
            "port 0",
            f"tls-port {port}",
            f'tls-cert-file "{m.server_cert}"',
            f'tls-key-file "{m.server_key}"',
            f'tls-ca-cert-file "{m.ca_file}"',
            "tls-auth-clients yes",
            "tls-cluster yes",
            "tls-replication yes",
            *acl_users(m),
            "masteruser replica",
            f"masterauth {m.password('replica')}",
        ]

    def _spawn(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        conf = node_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            # A config written before the cluster was secure keeps its mode through O_TRUNC.
            os.fchmod(handle.fileno(), 0o600)
            handle.write(self._config(port))
        self._procs[port] = subprocess.Popen(
            [redis_server_path(), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def _already_formed(self) -> bool:
        for port in self.ports:
            conf = self.directory / str(port) / f"nodes-{port}.conf"
            if not conf.exists() or "myself" not in conf.read_text():
                return False
        return True

    def start(self) -> DevCluster:
        """Start the nodes and form the cluster (or rejoin a persistent one); wait until healthy."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.secure:
            _ = self.material
        formed = self.persistent and self._already_formed()
        try:
            for port in self.ports:
                self._spawn(port)
            self._wait(lambda: all(self.ping(p) for p in self.ports), "nodes to answer PING")
            if not formed:
                self._create()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        argv = [shutil.which("redis-cli") or "redis-cli", *self.cli_args(), "--cluster", "create"]
        argv += [f"{self.host}:{p}" for p in self.ports]
        argv += ["--cluster-replicas", str(REPLICAS_PER_MASTER), "--cluster-yes"]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
            env=self.cli_env(),
        )
        if result.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed: {result.stdout[-2000:]}")

    def _wait(
        self, ready: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for port, proc in self._procs.items():
                if proc.poll() is not None:
                    log = self.directory / str(port) / "redis.log"
                    tail = log.read_text()[-1500:] if log.exists() else ""
                    raise ClusterError(f"redis-server on port {port} exited early:\n{tail}")
            if ready():
                return
            time.sleep(0.1)
        raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until every node reports cluster_state:ok and every replica's link is up."""

        def healthy() -> bool:
            masters = replicas_up = 0
            for port in self.ports:
                info = self.info(port, "cluster_info")
                if info.get("cluster_state") != "ok":
                    return False
                repl = self.info(port, "replication")
                if repl.get("role") == "master":
                    masters += 1
                elif repl.get("master_link_status") == "up":
                    replicas_up += 1
            return masters == NODE_COUNT // 2 and replicas_up == NODE_COUNT - masters

        self._wait(healthy, "the cluster to be healthy", timeout_s)

    # Node inspection and fault injection, for health checks and drills.

    def command(self, port: int, *args: str, timeout_s: float = 2.0) -> str:
        """Run one redis-cli command against a node, as the admin user; empty text if it does
        not answer.

        Binary parts of the reply (packed values) come back with their bytes escaped.
        """
        argv = [shutil.which("redis-cli") or "redis-cli", *self.cli_args()]
        argv += ["-h", self.host, "-p", str(port), *args]
        try:
            result = subprocess.run(
                argv,
                env=self.cli_env(),
                capture_output=True,
                text=True,
                errors="backslashreplace",
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ""
        return result.stdout if result.returncode == 0 else ""

    def ping(self, port: int) -> bool:
        """Whether the node answers PING."""
        return self.command(port, "PING").strip() == "PONG"

    def info(self, port: int, section: str) -> dict[str, str]:
        """A node's INFO section (or CLUSTER INFO for ``cluster_info``) as a dict."""
        args = ("CLUSTER", "INFO") if section == "cluster_info" else ("INFO", section)
        out = self.command(port, *args)
        pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def masters(self) -> list[int]:
        """Ports of the nodes that are masters now."""
        return [p for p in self.ports if self.info(p, "replication").get("role") == "master"]

    def replicas_of(self, master_port: int) -> list[int]:
        """Ports of the replicas that follow the given master now."""
        found = []
        for port in self.ports:
            repl = self.info(port, "replication")
            if repl.get("role") == "slave" and repl.get("master_port") == str(master_port):
                found.append(port)
        return found

    def pid(self, port: int) -> int:
        """The process id of a node started by this object."""
        return self._procs[port].pid

    def signal(self, port: int, sig: signal.Signals) -> None:
        """Send a signal to one node (SIGKILL, SIGSTOP, SIGCONT for drills)."""
        self._procs[port].send_signal(sig)

    def restart_node(self, port: int) -> None:
        """Start a node again after it was killed; it rejoins from its nodes.conf."""
        proc = self._procs.get(port)
        if proc is not None and proc.poll() is None:
            raise ClusterError(f"node {port} is still running")
        self._spawn(port)

    @contextlib.contextmanager
    def paused(self, port: int) -> Iterator[None]:
        """SIGSTOP a node for the duration of the block."""
        self.signal(port, signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal(port, signal.SIGCONT)

    def processes(self) -> Sequence[subprocess.Popen[bytes]]:
        """The redis-server processes this object started."""
        return list(self._procs.values())

    def stop(self) -> None:
        """Stop every node: SIGTERM (redis saves and exits), then SIGKILL past the timeout."""
        for proc in self._procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self._procs.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()
