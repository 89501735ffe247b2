"""``codeengine serve issuer|verifier``: one service in production, and nothing else.

It reads the settings (``--config`` or ``$CODEENGINE_CONFIG``, and ``CODEENGINE_*``), refuses
to start with one line naming the setting when a check of :mod:`codeengine.ops.preflight`
fails, makes the Prometheus multiprocess folder, starts ``service.workers`` workers
(:mod:`codeengine.web.worker`) sharing the service's port, starts again a worker that dies, and
on SIGTERM or SIGINT lets every worker drain, then removes the folder. No dev cluster, no dev
keys, no dev credentials: it serves against what the settings name. A city's primary or backup
endpoint is the same command with ``service.city`` and ``service.role`` set.

Exit codes: :data:`EXIT_OK` after a drained stop, :data:`EXIT_REFUSED` when a check failed,
2 for a wrong command line, :data:`EXIT_WORKERS_FAILED` when the workers kept dying or one had
to be killed at the stop.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_WORKERS_FAILED",
    "MetricsFolder",
    "MetricsFolderBusy",
    "RestartBudget",
    "Server",
    "available_cpus",
    "label",
    "metrics_folder_named",
    "port_problem",
    "serve_command",
]

import collections
import fcntl
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codeengine.logs import setup_logging
from codeengine.metrics import forget_process
from codeengine.ops.harness import Child, answers_ok, die_with_parent, spawn, stop, worker_argv
from codeengine.ops.preflight import SERVICES, Problem, preflight
from codeengine.settings import ENV_PREFIX, Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_WORKERS_FAILED = 3

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
"""More restarts than this within the window: the workers cannot run, and the command exits so
that whatever runs it (systemd, Kubernetes) sees the failure and backs off."""
POLL_S = 0.5
DRAIN_MARGIN_S = 5.0
"""A worker drains within ``service.shutdown_timeout_s``; past that and this, it is killed."""
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")

log = logging.getLogger("codeengine.serve")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 quota (a container's
    CPU limit, which ``os.cpu_count`` does not see); at least 1."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(cpus, 1)


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window_s``: past it the workers cannot run."""

    limit: int = MAX_RESTARTS
    window_s: float = RESTART_WINDOW_S
    _times: collections.deque[float] = field(default_factory=collections.deque)

    def allow_at(self, now: float) -> bool:
        """Count a restart at ``now`` (monotonic seconds); whether it is within the budget."""
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        self._times.append(now)
        return len(self._times) <= self.limit


def _port(service: str, settings: Settings) -> tuple[str, int]:
    """The setting naming ``service``'s API port, and the port."""
    if service == "records":
        return "records.port", settings.records.port
    if service == "issuer":
        return "service.issuer_port", settings.service.issuer_port
    return "service.verifier_port", settings.service.verifier_port


def port_problem(service: str, settings: Settings) -> Problem | None:
    """Whether this service's workers can listen on their port (sharing it with SO_REUSEPORT,
    as they do with each other, or with another serve of the same service being replaced)."""
    host = settings.service.host
    setting, port = _port(service, settings)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the workers' listener (asyncio's create_server): a port whose last connections
        # still wait out TIME_WAIT after a restart is free to them, so it is free here.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Problem(setting, f"cannot listen on {host}:{port}: {exc.strerror}")
    return None


class MetricsFolderBusy(RuntimeError):
    """Another ``codeengine serve`` holds the folder: their workers' files would mix."""


@dataclass
class MetricsFolder:
    """The workers' Prometheus multiprocess folder: emptied at start, held, cleaned at exit.

    A named folder is made if missing and removed at exit only if this process made it; only
    the ``*.db`` files Prometheus writes are ever deleted from it. An unnamed one is a private
    temporary folder. The folder is held with ``flock`` while serving, so a second serve on the
    same folder refuses to start instead of deleting the first one's files.
    """

    path: Path
    owned: bool
    _fd: int

    @classmethod
    def open(cls, named: str, label: str) -> MetricsFolder:
        """Make or take the folder ``named`` ("": a private temporary one)."""
        if named:
            path = Path(named).resolve()
            owned = not path.exists()
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            path, owned = Path(tempfile.mkdtemp(prefix=f"codeengine-{label}-metrics-")), True
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MetricsFolderBusy(f"{path} is in use by another codeengine serve") from None
        folder = cls(path, owned, fd)
        folder.empty()
        return folder

    def empty(self) -> None:
        """Delete the metric files (earlier runs' counts would be added to this run's)."""
        for db in self.path.glob("*.db"):
            db.unlink(missing_ok=True)

    def worker_gone(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its counters stay: they are the service's)."""
        forget_process(pid, str(self.path))

    def close(self) -> None:
        """Clean up and let go of the folder."""
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.empty()
        os.close(self._fd)


class _Stop(Exception):
    """Raised from the signal handler to leave the supervision loop."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _probe_host(host: str) -> str:
    """Where this host reaches a listener bound to ``host`` (a wildcard: loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Server:
    """The workers of one service: started, watched, restarted, drained."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        config: Path | None,
        metrics: MetricsFolder,
        log_dir: Path | None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.metrics = metrics
        self.log_dir = log_dir
        self.count = settings.service.workers or available_cpus()
        self.label = label(service, settings)
        self.env = dict(os.environ)
        # The workers read exactly what this process read ("" stops a worker from falling
        # back to a configs/engine.toml in its working directory).
        self.env[f"{ENV_PREFIX}CONFIG"] = str(config.resolve()) if config is not None else ""
        # Explicit, so that each worker's share of the per-client rate limits is 1/count.
        self.env[f"{ENV_PREFIX}SERVICE_WORKERS"] = str(self.count)
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics.path)
        self.children: dict[int, Child] = {}
        self.restarts = RestartBudget()
        service_settings = settings.service
        port = (
            service_settings.issuer_port if service == "issuer" else service_settings.verifier_port
        )
        self.ready_url = f"http://{_probe_host(service_settings.host)}:{port}/readyz"

    def _spawn(self, index: int) -> Child:
        name = f"{self.label}-{index}"
        log_file = None if self.log_dir is None else self.log_dir / f"{name}.log"
        # -P: a working directory that holds a codeengine/ folder must not shadow the package.
        argv = [sys.executable, "-P", *worker_argv(self.service, log_file)[1:]]
        if log_file is not None:
            return spawn(name, argv, self.env, log_file)
        # No log folder: the workers write to this process's standard error, as it does.
        proc = subprocess.Popen(
            argv, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        return Child(name, proc, None)

    def _supervise(self) -> int:
        """Start the workers and keep them running; returns only when they cannot run."""
        for index in range(self.count):
            self.children[index] = self._spawn(index)
        log.info(
            "%s: %d workers started (pids %s), metrics in %s",
            self.label,
            self.count,
            ", ".join(str(c.pid) for c in self.children.values()),
            self.metrics.path,
        )
        ready = False
        while True:
            for index, child in list(self.children.items()):
                if not child.exited():
                    continue
                self.metrics.worker_gone(child.pid)
                code = child.proc.returncode
                if not self.restarts.allow_at(time.monotonic()):
                    log.error(
                        "%s worker %d exited (%s): more than %d restarts in %.0f s; giving up",
                        self.label, index, code, MAX_RESTARTS, RESTART_WINDOW_S,
                    )  # fmt: skip
                    return EXIT_WORKERS_FAILED
                log.warning("%s worker %d exited (%s); restarting it", self.label, index, code)
                self.children[index] = self._spawn(index)
            if not ready and answers_ok(self.ready_url):
                ready = True
                log.info("%s ready on %s", self.label, self.ready_url.removesuffix("/readyz"))
            time.sleep(POLL_S)

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (then drain), or until the workers cannot run."""
        signal.signal(signal.SIGTERM, _raise_stop)
        signal.signal(signal.SIGINT, _raise_stop)
        outcome = EXIT_OK
        codes: list[int] = []
        try:
            outcome = self._supervise()
        except _Stop:
            log.info("%s: stopping; workers drain for up to %g s", self.label, self._drain_s)
        finally:
            # A second signal must not interrupt the drain half-way.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            codes = stop(list(self.children.values()), self._drain_s)
            self.metrics.close()
        if outcome == EXIT_OK and any(codes):
            log.error("%s: workers exited with %s at the stop", self.label, codes)
            outcome = EXIT_WORKERS_FAILED
        log.info("%s: stopped (exit %d)", self.label, outcome)
        return outcome

    @property
    def _drain_s(self) -> float:
        return self.settings.service.shutdown_timeout_s + DRAIN_MARGIN_S


def label(service: str, settings: Settings) -> str:
    """A name for this serve's workers, logs and metrics: ``issuer``, or ``issuer-320100-backup``
    for a city's endpoint."""
    if not settings.service.city:
        return service
    return f"{service}-{settings.service.city}-{settings.service.role}"


def metrics_folder_named(settings: Settings, environ: Mapping[str, str]) -> tuple[str, str]:
    """Which setting names the metrics folder, and its value ("": a private temporary one):
    ``service.metrics_dir``, else the environment's ``PROMETHEUS_MULTIPROC_DIR``."""
    if settings.service.metrics_dir:
        return "service.metrics_dir", settings.service.metrics_dir
    return "PROMETHEUS_MULTIPROC_DIR", environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _refuse(problems: Sequence[Problem | str]) -> int:
    for problem in problems:
        print(f"codeengine serve: {problem}", file=sys.stderr)
    return EXIT_REFUSED


def serve_command(
    service: str | None,
    config: Path | None,
    *,
    check: bool = False,
    deadline_s: float = 5.0,
    log_dir: Path | None = None,
) -> int:
    """``codeengine serve [issuer|verifier|records] [--check]``; the exit code. Without
    ``service``, ``check`` covers the issuer and the verifier."""
    services = SERVICES if service is None else (service,)
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        return _refuse([f"settings: {exc}"])
    # Until logging is set up, the store client's own lines would reach standard error through
    # Python's last-resort handler, beside the one line that says what is wrong.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    problems = preflight(settings, services, deadline_s)
    if problems:
        return _refuse(problems)
    if check:
        print(f"codeengine serve: {', '.join(services)}: settings, secret files and cluster ok")
        return EXIT_OK
    assert service is not None
    taken = port_problem(service, settings)
    if taken is not None:
        return _refuse([taken])
    if service == "records":
        return _serve_records(settings, log_dir)
    where, named = metrics_folder_named(settings, os.environ)
    try:
        metrics = MetricsFolder.open(named, label(service, settings))
    except (MetricsFolderBusy, OSError) as exc:
        return _refuse([Problem(where, str(exc))])
    try:
        log_file = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_dir / f"{label(service, settings)}-serve.log"
        setup_logging(service, settings.logging, log_file)
        server = Server(service, settings, config, metrics, log_dir)
    except BaseException:
        metrics.close()
        raise
    # The server closes the metrics folder when it stops.
    return server.run()


def _serve_records(settings: Settings, log_dir: Path | None) -> int:
    """The records service: one process (its embedded engine's folder admits one), the consumer
    and the API on one event loop (codeengine.records.service)."""
    import uvloop

    from codeengine.records.service import serve_records

    log_file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / "records-serve.log"
    setup_logging("records", settings.logging, log_file)
    code: int = uvloop.run(serve_records(settings))
    return code
