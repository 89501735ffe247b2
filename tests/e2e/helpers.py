"""Starting real processes for end-to-end tests, and finding what they left behind."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

from codeengine.web.runtime import HOT_METRICS_FLUSH_S

T = TypeVar("T")
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
