"""What the page tests and ``python -m tools.screenshots`` share: the services, the browser.

The services are real worker processes against a real cluster, started as the e2e tests start
them; the browser is Debian's chromium driven by the ``playwright`` package (its own browser
downloads are not used: they cannot be fetched on these machines).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Playwright, ViewportSize

from codeengine.code.identifiers import make_resident_id, make_uscc
from tests.e2e.helpers import Workers, dev_keys, service_workers

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


Service = Workers
"""The worker process of one service on one port, with the API keys by scope."""


@contextmanager
def service(
    name: str,
    logs: Path,
    settings: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Service]:
    """One worker of ``name`` on a fresh port, ready; SIGTERM at the end, which must exit 0."""
    with service_workers(Workers, name, 1, logs, dev_keys(settings), settings, extra_env) as up:
        yield up


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
