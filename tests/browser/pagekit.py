"""What the page tests and ``python -m tools.screenshots`` share: the services, the browser.

The services are real worker processes against a real cluster, started as the e2e tests start
them; the browser is Debian's chromium driven by the ``playwright`` package (its own browser
downloads are not used: they cannot be fetched on these machines).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Playwright, ViewportSize

from codeengine.code.identifiers import make_resident_id, make_uscc
from tests.e2e.helpers import HTTPCalls, free_port, service_env, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1440, "height": 900}
SHUTDOWN_TIMEOUT_S = 5


@dataclass
class Service(HTTPCalls):
    """The worker process of one service on one port, with the API keys by scope."""

    name: str
    port: int
    keys: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def ok(self, method: str, path: str, scope: str, body: object = None) -> Any:
        """A call that must answer 2xx; its JSON."""
        answer = self.call(method, path, json_body=body, scope=scope)
        assert 200 <= answer.status < 300, (method, path, answer.status, answer.body)
        return answer.json()


def dev_keys(credentials_file: str) -> dict[str, str]:
    """The dev API keys by scope (one client per scope)."""
    document = json.loads(Path(credentials_file).read_text())
    return {client["scopes"][0]: client["key"] for client in document["clients"]}


@contextmanager
def service(
    name: str,
    logs: Path,
    settings: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Service]:
    """One worker of ``name`` on a fresh port, ready; SIGTERM at the end, which must exit 0."""
    port = free_port()
    env = service_env(
        **{
            f"service_{name}_port": str(port),
            "service_workers": "1",
            "service_shutdown_timeout_s": str(SHUTDOWN_TIMEOUT_S),
            **settings,
        }
    )
    env.update(extra_env or {})
    started = Service(name, port, dev_keys(settings["keys_credentials_file"]))
    log = logs / f"{name}-{port}.log"
    started.logs.append(log)
    argv = [sys.executable, "-m", "codeengine.web.worker", "--service", name]
    with log.open("wb") as out:
        started.procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        wait_for(f"{started.url}/readyz", 200, 30)
        yield started
    finally:
        codes = []
        for proc in started.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append(proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(timeout=5))
    assert codes == [0], f"{name} exits 0 on SIGTERM; log:\n{started.log_text()}"
    assert "unhandled error" not in started.log_text(), started.log_text()


def launch(playwright: Playwright) -> Browser:
    """Headless Debian chromium; every test then opens a fresh context (no shared storage)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def new_person_id() -> str:
    """A valid resident ID no other test of the session uses (random birth date and sequence)."""
    born = date.fromordinal(date(1940, 1, 1).toordinal() + secrets.randbelow(60 * 365))
    return make_resident_id("320106", born, secrets.randbelow(1000))


def new_enterprise_id() -> str:
    """A valid unified social credit code no other test of the session uses."""
    return make_uscc(f"91320100MA1{secrets.randbelow(10**6):06d}")


def generate(issuer: Service, kind: str = "person", city: int = 320100) -> dict[str, Any]:
    """生码 for a new person (or enterprise); the answer (subject, colour, version)."""
    ident = new_person_id() if kind == "person" else new_enterprise_id()
    answer: dict[str, Any] = issuer.ok(
        "POST", "/v1/subjects", "generate", {"kind": kind, "id": ident, "city": city}
    )
    return answer


def convert(issuer: Service, subject: str, colour: str) -> dict[str, Any]:
    """转码 one subject to ``colour`` from whatever version it is at now."""
    history = issuer.ok("GET", f"/v1/subjects/{subject}/history", "convert")
    change = {"colour": colour, "reason": "page test", "if_version": history["version"]}
    answer: dict[str, Any] = issuer.ok("POST", f"/v1/subjects/{subject}/status", "convert", change)
    return answer


def import_batch(issuer: Service, batch_id: str, rows: list[str]) -> None:
    """赋码 in bulk: a CSV batch of ``rows`` (after the header), which must be accepted."""
    body = "identifier,record_type,event_time,source,city\n" + "\n".join(rows) + "\n"
    answer = issuer.call(
        "POST",
        f"/v1/batches?batch_id={batch_id}",
        body=body.encode(),
        headers={"Content-Type": "text/csv"},
        scope="convert",
    )
    assert answer.status == 201, answer.body


def display_fragment(issuer: Service, subject: str, name: str, **extra: str) -> str:
    """The URL fragment an app's web view would open the display page with."""
    fields = {"subject": subject, "key": issuer.keys["display"], "name": name, **extra}
    return "&".join(f"{k}={v}" for k, v in fields.items())


def wait_until(what: str, check: Any, timeout_s: float, interval_s: float = 0.1) -> None:
    """Poll ``check()`` until true, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(interval_s)
