"""A real Redis Cluster (3 masters + 3 replicas) on loopback, from the system's redis-server.

Used by ``make run`` (a persistent cluster under ``var/``), by the test session (a throwaway
cluster in a temporary folder) and by the drills, which kill, pause and fail over its nodes.
Every redis-server is a child of the process that started it and is told by the kernel to exit
when that process dies, so an interrupted test run or a killed ``make run`` leaves nothing behind.
"""

from __future__ import annotations

__all__ = ["ClusterError", "DevCluster", "find_free_base_port", "redis_server_path"]

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codeengine.ops.harness import die_with_parent

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


def find_free_base_port(host: str = "127.0.0.1", count: int = NODE_COUNT) -> int:
    """A base port such that ``count`` ports from it and their cluster-bus ports are all free."""
    # Start from a per-process offset so concurrent sessions rarely probe the same range.
    start = 20000 + (os.getpid() * 37) % 9000
    for base in range(start, start + 9000, count):
        base = 20000 + (base - 20000) % 9000
        ports = [base + i for i in range(count)]
        if all(_port_free(host, p) and _port_free(host, p + BUS_PORT_OFFSET) for p in ports):
            return base
    raise ClusterError("no free loopback port range for the cluster")


@dataclass
class DevCluster:
    """Six redis-server processes on loopback formed into a cluster with one replica per master."""

    directory: Path
    base_port: int
    host: str = "127.0.0.1"
    persistent: bool = False
    _procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

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
            f"port {port}",
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
        return "\n".join(lines) + "\n"

    def _spawn(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        conf = node_dir / "redis.conf"
        conf.write_text(self._config(port))
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
        argv = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create"]
        argv += [f"{self.host}:{p}" for p in self.ports]
        argv += ["--cluster-replicas", str(REPLICAS_PER_MASTER), "--cluster-yes"]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False
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
        """Run one redis-cli command against a node; empty text if it does not answer.

        Binary parts of the reply (packed values) come back with their bytes escaped.
        """
        argv = [shutil.which("redis-cli") or "redis-cli", "-h", self.host, "-p", str(port), *args]
        try:
            result = subprocess.run(
                argv,
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
