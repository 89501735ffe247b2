"""Starting real processes for end-to-end tests, and finding what they left behind."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

from codeengine.keyfiles import write_private
from codeengine.ops.harness import Group, spawn_worker, wait_ready, wait_until
from codeengine.web.runtime import HOT_METRICS_FLUSH_S

T = TypeVar("T")
SHUTDOWN_TIMEOUT_S = 5
"""The workers' drain deadline: a test's stop waits this, and a little more, for a clean exit."""
READY_TIMEOUT_S = 30
METRICS_LAG_S = 3 * HOT_METRICS_FLUSH_S
"""How long another worker's requests may take to show in /metrics (codeengine.metrics)."""


def free_port() -> int:
    """A loopback TCP port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(
    url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    """GET a URL; the status and the decoded JSON body (HTTP errors included)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def eventually(read: Callable[[], T], done: Callable[[T], bool], within_s: float) -> T:
    """``read()`` until ``done`` says its value is the awaited one, at most ``within_s``; the
    last value either way (the caller's assertion says what was wrong)."""
    deadline = time.monotonic() + within_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def settled(read: Callable[[], T]) -> T:
    """``read()`` once two reads a flush interval apart agree: counts from earlier requests,
    which other workers add to /metrics within a second, have all arrived."""
    value = read()
    while True:
        time.sleep(1.5 * HOT_METRICS_FLUSH_S)
        again = read()
        if again == value:
            return value
        value = again


def wait_for(url: str, status: int, timeout_s: float) -> float:
    """Poll ``url`` until it answers ``status``; the seconds it took, or AssertionError."""
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < timeout_s:
        try:
            code, body = get_json(url, timeout_s=1.0)
            if code == status:
                return time.monotonic() - started
            last = (code, body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s} s; last: {last!r}")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def service_env(**settings: str) -> dict[str, str]:
    """The current environment plus ``CODEENGINE_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEENGINE_")}
    env.update({f"CODEENGINE_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        """The ``reason`` of a problem body or a verdict, or None when the body has none."""
        try:
            document = self.json()
        except ValueError:
            return None
        return document.get("reason") if isinstance(document, dict) else None


class HTTPCalls:
    """Requests to the worker processes of one service on ``port``, with its API ``keys``."""

    port: int
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: object = None,
        headers: Mapping[str, str] | None = None,
        scope: str | None = None,
        timeout_s: float = 5.0,
    ) -> Answer:
        """One request on a fresh connection, so the kernel may pick any worker."""
        sent = dict(headers or {})
        if scope is not None:
            sent.update(self.auth(scope))
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()


@dataclass
class Workers(HTTPCalls):
    """The worker processes of one service on one port, and the API keys to call them with."""

    name: str
    port: int
    keys: dict[str, str]
    group: Group = field(default_factory=Group)
    metrics_dir: Path | None = None
    management_port: int = 0
    """Where the workers serve ``/metrics`` (loopback), never on ``port``."""

    def scrape(self) -> str:
        """The service's Prometheus exposition, from its management port."""
        url = f"http://127.0.0.1:{self.management_port}/metrics"
        with urllib.request.urlopen(url, timeout=5.0) as response:
            return str(response.read().decode())

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return self.group.procs

    def log_text(self) -> str:
        return self.group.log_text()

    def ok(self, method: str, path: str, scope: str, body: object = None) -> Any:
        """A call that must answer 2xx; its JSON."""
        answer = self.call(method, path, json_body=body, scope=scope)
        assert 200 <= answer.status < 300, (method, path, answer.status, answer.body)
        return answer.json()


W = TypeVar("W", bound=Workers)


def dev_keys(key_files: Mapping[str, str]) -> dict[str, str]:
    """The dev API keys by scope (a client per scope, the records client several) of
    ``keys_credentials_file``."""
    document = json.loads(Path(key_files["keys_credentials_file"]).read_text())
    return {scope: client["key"] for client in document["clients"] for scope in client["scopes"]}


def sole_client_settings(
    directory: Path, key_files: Mapping[str, str], nodes: str, client: Mapping[str, object]
) -> dict[str, str]:
    """Settings for the session's keys and cluster ``nodes`` with a credentials file, written to
    ``directory``, that holds ``client`` alone."""
    credentials = directory / "credentials.json"
    write_private(credentials, json.dumps({"clients": [dict(client)]}).encode())
    return dict(key_files, keys_credentials_file=str(credentials), cluster_nodes=nodes)


TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


def sockets_held(pid: int, port: int, state: str) -> int:
    """How many loopback TCP sockets on local ``port`` in ``state`` process ``pid`` holds."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


@contextmanager
def service_workers(
    kind: type[W],
    service: str,
    count: int,
    logs: Path | None,
    keys: dict[str, str],
    settings: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    ready: str = "/readyz",
    checked: bool = True,
) -> Iterator[W]:
    """``count`` workers of ``service`` on one port (a fresh one unless given), each listening
    and ``ready`` answering 200; SIGTERM at the end.

    ``settings`` are ``CODEENGINE_*`` names in lower case without the prefix. Unless not
    ``checked``, every worker must exit 0 and log no unhandled error. ``logs`` None: the
    workers' output is discarded.
    """
    bound = port or free_port()
    management = free_port()
    env = service_env(
        **{
            f"service_{service}_port": str(bound),
            f"service_{service}_management_port": str(management),
            "service_workers": str(count),
            "service_shutdown_timeout_s": str(SHUTDOWN_TIMEOUT_S),
            **settings,
        }
    )
    env.update(extra_env or {})
    started = kind(service, bound, keys)
    started.management_port = management
    children = started.group.children
    try:
        for index in range(count):
            log = None if logs is None else logs / f"{service}-{bound}-{index}.log"
            started.group.add(spawn_worker(service, env, log, append=False))

        def every_one_listens() -> bool:
            return all(sockets_held(c.pid, bound, TCP_LISTEN) for c in children)

        # One worker answering is not enough: each must have joined the port's listeners.
        wait_until(children, every_one_listens, READY_TIMEOUT_S, f"{service} on {bound}")
        wait_ready(children, [started.url + ready], READY_TIMEOUT_S)
        yield started
    finally:
        codes = started.group.stop(SHUTDOWN_TIMEOUT_S + 10)
    if checked:
        assert codes == [0] * count, f"workers exit 0 on SIGTERM; logs:\n{started.log_text()}"
        assert "unhandled error" not in started.log_text(), started.log_text()
