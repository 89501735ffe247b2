"""The processes of a city's two environments (接口备用环境): issuer and verifier, each twice.

Used by the drills (their own cluster, free ports) and by ``codeengine run --cities`` (the
shared cluster, the ports of the city table). Each endpoint is started as real worker processes
of ``codeengine.web.worker`` with the city and role in its settings, so the issuers beat for the
city's write lease themselves.
"""

from __future__ import annotations

__all__ = ["CityProcesses", "endpoint_port", "on_free_ports"]

import dataclasses
import os
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from codeengine.code.cities import City, Endpoints
from codeengine.code.fencing import Role
from codeengine.ops.harness import Child, spawn_worker, stop, wait_ready
from codeengine.settings import ENV_PREFIX

SERVICES = ("issuer", "verifier")
STOP_TIMEOUT_S = 10.0


def on_free_ports(city: City, host: str = "127.0.0.1") -> City:
    """``city`` with its four endpoints moved to loopback ports nothing listens on now (for
    drills and tests, which must not meet the table's ports in use by ``make run``)."""
    sockets = [socket.socket() for _ in range(4)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        urls = [f"http://{host}:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return dataclasses.replace(
        city, primary=Endpoints(urls[0], urls[1]), backup=Endpoints(urls[2], urls[3])
    )


def endpoint_port(url: str) -> int:
    """The port of an endpoint's base URL."""
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{url} names no port")
    return port


@dataclass
class CityProcesses:
    """Start, kill and restart the four endpoints of one city; see the module docstring."""

    city: City
    env: dict[str, str]
    """Settings every endpoint shares (cluster nodes, key files), as ``CODEENGINE_*``."""
    log_dir: Path
    workers: int = 1
    procs: dict[tuple[str, Role], list[Child]] = field(default_factory=dict)

    def url(self, service: str, role: Role) -> str:
        primary, backup = self.city.endpoints(service)
        return primary if role is Role.PRIMARY else backup

    def start(self, role: Role, services: tuple[str, ...] = SERVICES) -> None:
        """Start ``role``'s endpoints (not waiting for them to be ready)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in services:
            port = endpoint_port(self.url(service, role))
            metrics = self.log_dir / "metrics" / f"{self.city.code}-{role}-{service}"
            shutil.rmtree(metrics, ignore_errors=True)
            metrics.mkdir(parents=True)
            env = dict(self.env)
            env.update(
                {
                    f"{ENV_PREFIX}SERVICE_{service.upper()}_PORT": str(port),
                    # The city table names no management ports: the services' own defaults
                    # would make every endpoint share one. The city endpoints serve no /metrics.
                    f"{ENV_PREFIX}SERVICE_{service.upper()}_MANAGEMENT_PORT": "0",
                    f"{ENV_PREFIX}SERVICE_CITY": str(self.city.code),
                    f"{ENV_PREFIX}SERVICE_ROLE": role.value,
                    f"{ENV_PREFIX}SERVICE_WORKERS": str(self.workers),
                    "PROMETHEUS_MULTIPROC_DIR": str(metrics),
                }
            )
            log_path = self.log_dir / f"{self.city.code}-{role}-{service}.log"
            self.procs[(service, role)] = [
                spawn_worker(service, env, log_path) for _ in range(self.workers)
            ]

    def wait_ready(self, role: Role, timeout_s: float = 60.0, path: str = "/readyz") -> None:
        """Wait until ``role``'s endpoints answer ``path`` (``/readyz``: ready) with 200; a
        HarnessError (with the log's tail if one exited) if they do not."""
        started = [s for s in SERVICES if (s, role) in self.procs]
        children = [c for s in started for c in self.procs[(s, role)]]
        wait_ready(children, [self.url(s, role) + path for s in started], timeout_s)

    def signal(self, role: Role, sig: signal.Signals, services: tuple[str, ...] = SERVICES) -> None:
        """Send ``sig`` to every worker of ``role``'s endpoints."""
        for service in services:
            for child in self.procs.get((service, role), []):
                if not child.exited():
                    os.kill(child.pid, sig)

    def stop(self, role: Role | None = None) -> None:
        """Stop (SIGTERM, then SIGKILL after a while) ``role``'s endpoints, or all."""
        chosen = [k for k in self.procs if role is None or k[1] is role]
        stop([c for k in chosen for c in self.procs[k]], STOP_TIMEOUT_S)
        for key in chosen:
            del self.procs[key]
