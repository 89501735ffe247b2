"""``make run``: the whole system on the embedded default, in one foreground process.

Starts a persistent local Redis Cluster under ``var/cluster``, creates dev keys and dev API
credentials under ``var/`` if they are absent, starts the issuer and the verifier (N workers each,
sharing their port with SO_REUSEPORT) and the records service (one process, its embedded store
under ``var/records``), waits until all are ready, prints where everything is,
and on Ctrl-C (or SIGTERM) stops the services first and the cluster last. Every child is told by
the kernel to exit if this process dies, so nothing outlives it.

The terminal gets the few lines a person reads; ``var/log/supervisor.log`` gets the same events
as JSON lines (codeengine.logs). Each worker writes and rotates its own file,
``var/log/<service>-<index>.log``: the supervisor only names it.
"""

from __future__ import annotations

__all__ = ["run_system"]

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from codeengine.code.cities import load_cities
from codeengine.code.fencing import Role
from codeengine.code.model import CityCode
from codeengine.logs import setup_logging
from codeengine.metrics import forget_process
from codeengine.ops.devcluster import DevCluster
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.harness import (
    Child,
    ChildExited,
    NotReady,
    spawn,
    spawn_worker,
    stop,
    wait_ready,
)
from codeengine.ops.topology import CityProcesses
from codeengine.settings import ENV_PREFIX, RecordsSettings, Settings, parse_nodes

log = logging.getLogger("codeengine.supervisor")

READY_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 15.0


def _worker_count(settings: Settings) -> int:
    return settings.service.workers or (os.cpu_count() or 1)


def _spawn(service: str, index: int, env: dict[str, str], log_dir: Path) -> Child:
    return spawn_worker(service, env, log_dir / f"{service}-{index}.log")


def _spawn_records(env: dict[str, str], log_dir: Path) -> Child:
    """The records service: ``codeengine serve records``, logged in as the records user."""
    argv = [sys.executable, "-m", "codeengine", "serve", "records"]
    return spawn("records", argv, env, log_dir / "records.log")


def _restart_exited(
    workers: dict[tuple[str, int], Child], envs: dict[str, dict[str, str]], log_dir: Path
) -> None:
    """Start again every process that exited."""
    for (service, index), worker in workers.items():
        if not worker.exited():
            continue
        code = worker.proc.returncode
        log.warning("%s worker %d exited (%s); restarting it", service, index, code)
        print(f"{service} worker {index} exited; restarting it")
        if service == "records":
            workers[(service, index)] = _spawn_records(envs[service], log_dir)
            continue
        # A crashed worker could not forget its live gauges itself.
        with contextlib.suppress(OSError):
            forget_process(worker.pid, envs[service]["PROMETHEUS_MULTIPROC_DIR"])
        workers[(service, index)] = _spawn(service, index, envs[service], log_dir)


def _metrics_dir(var_dir: Path, service: str) -> Path:
    """A fresh folder where the service's workers write metrics that /metrics (on the
    management port) adds up."""
    directory = var_dir / "metrics" / service
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


class _Stop(Exception):
    """Raised from the signal handler to leave the supervision loop."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _start_cities(
    codes: Sequence[int], env: dict[str, str], log_dir: Path, table_dir: Path
) -> list[CityProcesses]:
    """Start each named city's primary and backup endpoints on the city table's ports."""

    table = load_cities(table_dir)
    cities = []
    for code in codes:
        city = CityProcesses(table[CityCode(code)], env, log_dir / "cities")
        for role in Role:
            city.start(role)
        cities.append(city)
    for city in cities:
        for role in Role:
            city.wait_ready(role, READY_TIMEOUT_S)
    return cities


def _city_summary(cities: Sequence[CityProcesses]) -> dict[str, object]:
    """The started cities' endpoints, for the ready message."""
    if not cities:
        return {}
    return {
        "cities": {
            str(c.city.code): {"primary": c.city.primary.issuer, "backup": c.city.backup.issuer}
            for c in cities
        }
    }


def run_system(
    settings: Settings,
    var_dir: Path,
    cluster_base_port: int,
    config: Path | None = None,
    cities: Sequence[int] = (),
) -> int:
    """Run cluster, issuer and verifier (and ``cities``' endpoints) until interrupted."""
    var_dir.mkdir(parents=True, exist_ok=True)
    log_dir = var_dir / "log"
    log_dir.mkdir(exist_ok=True)
    setup_logging("supervisor", settings.logging, log_dir / "supervisor.log")
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    # The dev cluster is secure unless the settings say TLS is off; its own material either way.
    cluster = DevCluster(
        var_dir / "cluster",
        cluster_base_port,
        persistent=True,
        secure=settings.cluster.tls,
        material_dir=var_dir / "redis",
    )
    workers: dict[tuple[str, int], Child] = {}
    city_procs: list[CityProcesses] = []
    envs: dict[str, dict[str, str]] = {}
    try:
        print(f"starting Redis Cluster (3 masters + 3 replicas) on ports {cluster.ports} ...")
        cluster.start()
        credentials = ensure_dev_material(settings)
        env = dict(os.environ)
        # Nodes, TLS files and the services' login of the cluster just started.
        env |= cluster.client_env()
        if config is not None:
            # The workers read the same file the supervisor read.
            env[f"{ENV_PREFIX}CONFIG"] = str(config.resolve())
        parse_nodes(cluster.nodes_spec)
        count = _worker_count(settings)
        for service in ("issuer", "verifier"):
            service_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(_metrics_dir(var_dir, service)))
            envs[service] = service_env
            for index in range(count):
                workers[(service, index)] = _spawn(service, index, service_env, log_dir)
        # The records service reads and trims the streams as its own user, and nothing else.
        records_env = env | cluster.client_env("records")
        if settings.records.path == RecordsSettings().path and not settings.records.server_url:
            # Its embedded store lives with the rest of the run's state.
            records_env[f"{ENV_PREFIX}RECORDS_PATH"] = str(var_dir / "records")
        envs["records"] = records_env
        workers[("records", 0)] = _spawn_records(records_env, log_dir)
        host = settings.service.host
        urls = {
            "issuer": f"http://{host}:{settings.service.issuer_port}",
            "verifier": f"http://{host}:{settings.service.verifier_port}",
            "records": f"http://{host}:{settings.records.port}",
        }
        try:
            ready = [f"{u}/readyz" for u in urls.values()]
            wait_ready(list(workers.values()), ready, READY_TIMEOUT_S)
        except ChildExited as exc:
            print(exc, file=sys.stderr)
            return 1
        except NotReady:
            print(f"services not ready after {READY_TIMEOUT_S:.0f} s; see {log_dir}/")
            return 1
        if cities:
            print(f"starting the primary and backup endpoints of {len(cities)} cities ...")
            city_procs = _start_cities(cities, env, log_dir, settings.codes.cities_path())
        management = settings.service.management_host
        summary = {
            "issuer": urls["issuer"],
            "verifier": urls["verifier"],
            "records": urls["records"],
            "metrics": {
                "issuer": f"http://{management}:{settings.service.issuer_management_port}/metrics",
                "verifier": (
                    f"http://{management}:{settings.service.verifier_management_port}/metrics"
                ),
                "records": f"http://{management}:{settings.records.management_port}/metrics",
            },
            "workers_per_service": count,
            "cluster_nodes": cluster.nodes_spec,
            "dev_credentials": str(credentials),
            "logs": str(log_dir),
        }
        summary |= _city_summary(city_procs)
        log.info("ready: %d workers per service", count)
        print("codeengine is ready:")
        print(json.dumps(summary, indent=2))
        print("Ctrl-C stops everything.", flush=True)
        while True:
            _restart_exited(workers, envs, log_dir)
            time.sleep(1.0)
    except _Stop:
        log.info("stopping")
        print("\nstopping services ...", flush=True)
        return 0
    finally:
        # Signals again during shutdown must not interrupt it half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            stop(list(workers.values()), WORKER_STOP_TIMEOUT_S)
        for city in city_procs:
            with contextlib.suppress(Exception):
                city.stop()
        print("stopping Redis Cluster ...", flush=True)
        cluster.stop()
        log.info("stopped")
        print("stopped.", flush=True)
