"""Screenshots of the three pages at phone and desktop size, into docs/screenshots/.

``python -m tools.screenshots`` (``make screenshots``) starts what it needs as the page tests
do: a throwaway Redis Cluster, dev keys in a temporary folder, one issuer and one verifier
worker, and Nanjing's primary and backup issuers. It then shows a green, a red and an
elder-mode code, a terminal after a scan and the ops console after some traffic, a small batch
and Nanjing's primary killed (its backup takes the writes), and stops everything again. The PNGs are
reduced to a 64-colour palette, which keeps each one small enough to commit.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from PIL import Image
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from codeengine.code.cities import load_cities
from codeengine.code.fencing import Role
from codeengine.code.model import CityCode
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.ops.topology import CityProcesses, on_free_ports
from codeengine.settings import load_settings
from tests.browser.pagekit import (
    DESKTOP,
    PHONE,
    Service,
    convert,
    display_fragment,
    generate,
    import_batch,
    launch,
    new_person_id,
    service,
)
from tests.e2e.helpers import service_env

OUT = Path("docs/screenshots")
PALETTE_COLOURS = 64


@contextmanager
def stack(work: Path) -> Iterator[tuple[Service, Service]]:
    """Cluster, keys, issuer and verifier, all stopped on the way out."""
    files = {
        "keys_keyring_file": str(work / "keyring.json"),
        "keys_kek_file": str(work / "kek"),
        "keys_pepper_file": str(work / "pepper"),
        "keys_credentials_file": str(work / "credentials.json"),
    }
    ensure_dev_material(load_settings(env={f"CODEENGINE_{k.upper()}": v for k, v in files.items()}))
    cluster = DevCluster(directory=work / "cluster", base_port=find_free_base_port())
    cluster.start()
    try:
        settings = {**files, **cluster.client_settings()}
        metrics_dir = work / "metrics"
        metrics_dir.mkdir()
        with ExitStack() as services:
            issuer = services.enter_context(
                service("issuer", work, settings, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
            )
            verifier = services.enter_context(service("verifier", work, settings))
            nanjing = CityProcesses(
                on_free_ports(load_cities()[NANJING]), service_env(**settings), work
            )
            services.callback(nanjing.stop)
            for role in Role:
                nanjing.start(role, ("issuer",))
                nanjing.wait_ready(role)
            _CITY_DRILL.append(nanjing)
            yield issuer, verifier
    finally:
        cluster.stop()


NANJING = CityCode(320100)
_CITY_DRILL: list[CityProcesses] = []


def _kill_nanjing_primary(issuer: Service) -> None:
    """Kill Nanjing's primary issuer and wait until its backup holds the city's writes."""
    nanjing = _CITY_DRILL[0]
    nanjing.signal(Role.PRIMARY, signal.SIGKILL, ("issuer",))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cities = issuer.ok("GET", "/v1/ops/cities", "admin")["cities"]
        if any(c["code"] == NANJING and c["writer"] == "backup" for c in cities):
            return
        time.sleep(0.2)
    raise RuntimeError("Nanjing's backup did not take over")


def save(page: Page, name: str) -> Path:
    """A full-page screenshot, reduced to a small palette PNG."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(PALETTE_COLOURS)
        small.save(path, optimize=True)
    return path


def shoot(browser: Browser, issuer: Service, verifier: Service) -> list[Path]:
    """Every page at each size; the paths written."""
    green = generate(issuer, city=320100)["subject"]
    red = generate(issuer, city=320500)["subject"]
    convert(issuer, red, "red")
    red_code = issuer.ok("GET", f"/v1/subjects/{red}/code", "display")["token"]
    now = int(time.time())
    rows = [f"{new_person_id()},close_contact,{now - 3600},cdc,320100" for _ in range(40)]
    batch_id = f"cdc-{time.strftime('%Y-%m-%d')}-{secrets.token_hex(2)}"
    import_batch(issuer, batch_id, rows)
    _kill_nanjing_primary(issuer)
    written = []
    sizes: dict[str, ViewportSize] = {"phone": PHONE, "desktop": DESKTOP}
    for size, viewport in sizes.items():
        context = browser.new_context(viewport=viewport, locale="zh-CN")
        page = context.new_page()
        for name, subject, who in (("green", green, "张三"), ("red", red, "李四")):
            page.goto("about:blank")
            page.goto(f"{issuer.url}/pages/display#{display_fragment(issuer, subject, who)}")
            page.wait_for_selector("#card[data-state=ok]")
            written.append(save(page, f"display-{name}-{size}"))
        page.get_by_role("button", name="长辈模式").click()
        written.append(save(page, f"display-elder-{size}"))
        page.get_by_role("button", name="长辈模式").click()

        fragment = f"key={verifier.keys['verify']}&terminal=gate-1&venue=hall-3&city=320500"
        page.goto(f"{verifier.url}/pages/terminal#{fragment}")
        page.keyboard.type(red_code)
        page.keyboard.press("Enter")
        page.wait_for_selector("#result[data-count='1']")
        written.append(save(page, f"terminal-{size}"))

        for _ in range(20):
            issuer.ok("GET", f"/v1/subjects/{green}/code", "display")
        keys = f"admin={issuer.keys['admin']}&convert={issuer.keys['convert']}"
        page.goto(f"{issuer.url}/pages/ops#{keys}")
        page.wait_for_selector(f"#batches tr[data-batch='{batch_id}']")
        for _ in range(20):
            issuer.ok("GET", f"/v1/subjects/{green}/code", "display")
        page.wait_for_timeout(2500)
        written.append(save(page, f"ops-{size}"))
        context.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; print each path."""
    argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__).parse_args(
        argv
    )
    with tempfile.TemporaryDirectory(prefix="screenshots-") as work:
        with stack(Path(work)) as (issuer, verifier), sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                for path in shoot(browser, issuer, verifier):
                    print(path)
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
