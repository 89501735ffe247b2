"""The three pages as people use them, in headless chromium against real service processes.

The display page must show a QR that scans to a code the verifier accepts, follow a convert,
refresh before its code expires and go grey with a reason when it cannot vouch for a colour.
The terminal page must answer scan after scan without reloading. The ops console must show
the service's own live metrics, the recent batches and the city state (or say it has none).
"""

from __future__ import annotations

import io
import re
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Page
from redis.cluster import RedisCluster

from codeengine.code.cities import load_cities
from codeengine.code.fencing import Role
from codeengine.code.model import CityCode
from codeengine.code.token import decode
from codeengine.ops.devcluster import DevCluster
from codeengine.ops.topology import CityProcesses, on_free_ports
from codeengine.store.keyspace import fence_keys
from tests.browser.conftest import DISPLAY_TTL_S
from tests.browser.pagekit import (
    Service,
    convert,
    display_fragment,
    generate,
    import_batch,
    new_person_id,
    wait_until,
)
from tests.e2e.helpers import dev_keys, eventually, service_env
from tests.e2e.test_verifier_e2e import with_signature_flipped

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.cluster]

CITY = 320100
MARKER = "window.__loadedOnce = 'page-test-marker'"
"""Set once after load: still there after every later step means the page never reloaded."""


def scanned_token(page: Page) -> str:
    """What a scanner reads off the QR the page shows (a screenshot of it, decoded)."""
    png = page.locator("#qr").screenshot()
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, "exactly one QR code on screen"
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    return str(found[0].text)


def verify(verifier: Service, code: str) -> dict[str, Any]:
    item = {"code": code, "terminal": "page-test", "city": CITY}
    verdict: dict[str, Any] = verifier.ok("POST", "/v1/verify", "verify", item)
    return verdict


def assert_page_headers(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-type"].startswith("text/html")


def open_display(page: Page, issuer: Service, subject: str, name: str = "张三") -> None:
    # From elsewhere: a new fragment on the page already shown would not load it again.
    page.goto("about:blank")
    response = page.goto(f"{issuer.url}/pages/display#{display_fragment(issuer, subject, name)}")
    assert response is not None and response.status == 200
    assert_page_headers(response.headers)
    page.evaluate(MARKER)


def marker_survived(page: Page) -> bool:
    return bool(page.evaluate("window.__loadedOnce === 'page-test-marker'"))


# Display (亮码) ---------------------------------------------------------------------------------


def test_display_shows_a_qr_that_verifies_and_follows_a_convert(
    page: Page, issuer: Service, verifier: Service, script_errors: list[str]
) -> None:
    subject = generate(issuer, city=CITY)["subject"]
    open_display(page, issuer, subject)
    card = page.locator("#card")
    page.wait_for_selector("#card[data-state=ok][data-colour=green]")
    # The key and subject handed over in the fragment are gone from the address at once.
    assert page.url == f"{issuer.url}/pages/display"
    assert page.locator("#word").inner_text() == "绿码"
    assert page.locator("#city").inner_text() == "南京"
    shown = card.inner_text()
    assert "*三" in shown and "张三" not in shown, "only the masked name is shown"
    assert re.search(r"有效期剩余 \d+ 秒", shown), shown
    green = scanned_token(page)
    verdict = verify(verifier, green)
    assert (verdict["valid"], verdict["colour"]) == (True, "green"), verdict

    convert(issuer, subject, "red")
    # The page asks again at the code's half-life, and the new code carries the new colour.
    page.wait_for_selector("#card[data-colour=red]", timeout=(DISPLAY_TTL_S / 2 + 3) * 1000)
    assert page.locator("#word").inner_text() == "红码"
    red = scanned_token(page)
    assert red != green
    assert decode(red).claims.colour.label == "red"
    assert (verify(verifier, red)["valid"], verify(verifier, red)["colour"]) == (True, "red")
    assert marker_survived(page), "the page refreshed its code without reloading"
    assert script_errors == []


def test_display_refreshes_its_code_before_the_code_expires(
    page: Page, issuer: Service, verifier: Service, script_errors: list[str]
) -> None:
    subject = generate(issuer, city=CITY)["subject"]
    open_display(page, issuer, subject)
    page.wait_for_selector("#card[data-state=ok]")
    first = scanned_token(page)
    first_claims = decode(first).claims
    assert first_claims.exp - first_claims.iat == DISPLAY_TTL_S, "the test issuer's short TTL"
    issued = page.locator("#card").get_attribute("data-issued-at")
    # (wait_for_function would evaluate a string, which the page's CSP rightly forbids.)
    page.wait_for_selector(
        f"#card[data-issued-at]:not([data-issued-at='{issued}'])", timeout=DISPLAY_TTL_S * 1000
    )
    second = scanned_token(page)
    second_iat = decode(second).claims.iat
    assert second != first and second_iat > first_claims.iat
    # The engine's issue time of the new code, not the moment this test saw it (which a busy
    # machine delays): the page asked for it at the half-life, while the first was valid.
    assert second_iat < first_claims.exp, "refreshed while the first code was still valid"
    assert verify(verifier, second)["valid"] is True
    assert page.locator("#card").get_attribute("data-state") == "ok"
    assert marker_survived(page)
    assert script_errors == []


def test_display_goes_grey_with_the_reason_when_it_cannot_vouch(
    page: Page, issuer: Service, script_errors: list[str]
) -> None:
    # A well-formed pseudonym that no subject has: the engine answers UNKNOWN_SUBJECT.
    unknown = secrets.token_urlsafe(12)
    open_display(page, issuer, unknown)
    page.wait_for_selector("#card[data-state=error]")
    assert page.locator("#card").get_attribute("data-colour") == "grey"
    assert page.locator("#word").inner_text() == "无法确认"
    assert page.locator("#why").inner_text() == "未找到此码，请重新申领"
    assert page.locator("#qr").is_hidden(), "no QR the engine does not stand behind"

    subject = generate(issuer, city=320500)["subject"]
    convert(issuer, subject, "grey")
    open_display(page, issuer, subject, name="李四")
    page.wait_for_selector("#card[data-state=grey]")
    assert page.locator("#word").inner_text() == "灰码"
    assert page.locator("#why").inner_text() == "暂无可确认的健康状态"
    assert page.locator("#city").inner_text() == "苏州"

    # 长辈模式: larger word and QR; English on request.
    small = page.locator("#qr").bounding_box()
    word_px = page.locator("#word").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    page.get_by_role("button", name="长辈模式").click()
    assert page.locator("#elder").get_attribute("aria-pressed") == "true"
    large = page.locator("#qr").bounding_box()
    assert small is not None and large is not None and large["width"] > small["width"] * 1.2
    bigger = page.locator("#word").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert bigger > word_px
    page.get_by_role("button", name="English").click()
    assert page.locator("#word").inner_text() == "GREY"
    assert page.locator("#city").inner_text() == "Suzhou"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert script_errors == []


# Terminal (扫码核验) -----------------------------------------------------------------------------


def scan(page: Page, code: str) -> None:
    """What a keyboard-wedge scanner does: type the code, then Enter, into the focused field."""
    page.keyboard.type(code)
    page.keyboard.press("Enter")


def current_code(issuer: Service, subject: str) -> str:
    return str(issuer.ok("GET", f"/v1/subjects/{subject}/code", "display")["token"])


def test_terminal_answers_green_red_and_tampered_scans_without_reloading(
    page: Page, issuer: Service, verifier: Service, script_errors: list[str]
) -> None:
    green_subject = generate(issuer, city=CITY)["subject"]
    red_subject = generate(issuer, city=CITY)["subject"]
    convert(issuer, red_subject, "red")
    green, red = current_code(issuer, green_subject), current_code(issuer, red_subject)
    fragment = f"key={verifier.keys['verify']}&terminal=gate-7&venue=hall-1&city={CITY}"
    response = page.goto(f"{verifier.url}/pages/terminal#{fragment}")
    assert response is not None and response.status == 200
    assert_page_headers(response.headers)
    page.evaluate(MARKER)
    page.evaluate(
        "window.__cues = []; window.addEventListener('codeengine:verdict', "
        "e => window.__cues.push(e.detail))"
    )
    assert page.evaluate("document.activeElement.id") == "scan"
    result = page.locator("#result")

    # Two scans back to back, at scanner pace: both answered, in order.
    scan(page, green)
    scan(page, red)
    page.wait_for_selector("#result[data-count='2']")
    cues = page.evaluate("window.__cues")
    assert [(c["valid"], c["colour"], c["reason"]) for c in cues] == [
        (True, "green", "VALID"),
        (True, "red", "VALID"),
    ]
    assert (result.get_attribute("data-colour"), page.locator("#word").inner_text()) == (
        "red",
        "红码",
    )
    assert page.locator("#reason").inner_text() == "有效 · 禁止通行"

    scan(page, green)
    page.wait_for_selector("#result[data-count='3'][data-colour=green]")
    assert page.locator("#word").inner_text() == "绿码"
    assert page.locator("#reason").inner_text() == "有效 · 请通行"

    scan(page, with_signature_flipped(green))
    page.wait_for_selector("#result[data-count='4']")
    assert result.get_attribute("data-valid") == "false"
    assert result.get_attribute("data-reason") == "BAD_SIGNATURE"
    assert page.locator("#word").inner_text() == "无效码"
    assert page.locator("#reason").inner_text() == "签名无效：码已被篡改"
    assert page.locator("#word").get_attribute("aria-live") == "assertive"

    # Ready for the next scan: the field is empty and focused, the page was never reloaded.
    assert page.locator("#scan").input_value() == ""
    assert page.evaluate("document.activeElement.id") == "scan"
    assert marker_survived(page)
    assert len(page.evaluate("window.__cues")) == 4
    assert script_errors == []


# Ops console ------------------------------------------------------------------------------------


def metric_totals(issuer: Service, operation: str) -> tuple[float, float]:
    """The issuer's requests of ``operation`` (all, and not OK) as Prometheus reads them."""
    total = errors = 0.0
    for line in issuer.scrape().splitlines():
        if line.startswith("codeengine_requests_total{") and f'operation="{operation}"' in line:
            value = float(line.rsplit(" ", 1)[1])
            total += value
            errors += 0 if 'reason="OK"' in line else value
    return total, errors


def cell(page: Page, operation: str, field: str) -> str:
    return page.locator(
        f"#operations tr[data-operation={operation}] [data-field={field}]"
    ).inner_text()


def import_small_batch(issuer: Service, batch_id: str) -> None:
    """Two good rows and one bad."""
    now = int(time.time())
    rows = [f"{new_person_id()},positive,{now - 3600},cdc,{CITY}" for _ in range(2)]
    import_batch(issuer, batch_id, [*rows, "not-an-id,positive,0,cdc,320100"])


def test_ops_console_shows_live_metrics_recent_batches_and_city_state(
    page: Page, issuer: Service, script_errors: list[str]
) -> None:
    batch_id = f"page-{secrets.token_hex(4)}"
    import_small_batch(issuer, batch_id)
    assert issuer.call("GET", "/v1/batches?limit=0", scope="convert").reason == "INVALID_FIELD"
    assert issuer.call("GET", "/v1/batches", scope="display").reason == "FORBIDDEN"
    cities = issuer.call("GET", "/v1/ops/cities", scope="admin")
    # A subject of this test's own, so that the generate row is there without earlier tests.
    subject = generate(issuer)["subject"]

    fragment = f"admin={issuer.keys['admin']}&convert={issuer.keys['convert']}"
    response = page.goto(f"{issuer.url}/pages/ops#{fragment}")
    assert response is not None and response.status == 200
    assert_page_headers(response.headers)
    page.evaluate(MARKER)
    page.wait_for_selector("#operations[data-state=ok] tr[data-operation=generate]")

    # Traffic after the first poll: the next polls show it as a rate, errors and a p99.
    for _ in range(5):
        issuer.ok("GET", f"/v1/subjects/{subject}/code", "display")
    for _ in range(3):
        missing = issuer.call(
            "GET", f"/v1/subjects/{secrets.token_urlsafe(12)}/code", scope="display"
        )
        assert missing.reason == "UNKNOWN_SUBJECT"
    # A rendering is served again for up to a second (service.metrics_cache_s).
    total, errors = eventually(
        lambda: metric_totals(issuer, "display"), lambda found: found[1] >= 3, within_s=10
    )
    assert errors >= 3
    wait_until(
        "the console's display row equals the service's own /metrics",
        lambda: (
            float(cell(page, "display", "total")) == total
            and float(cell(page, "display", "errors-total")) == errors
        ),
        timeout_s=6,
    )
    # The first poll after the burst has it in its window, unless the window split it.
    assert float(cell(page, "display", "rate")) > 0 or float(cell(page, "display", "errors")) > 0
    assert cell(page, "display", "p99").startswith("≤")

    batch = page.locator(f"#batches tr[data-batch='{batch_id}']")
    batch.wait_for()
    assert batch.get_attribute("data-state") == "done"
    fields = {
        f: batch.locator(f"[data-field={f}]").inner_text()
        for f in ("state", "rows", "bad", "applied")
    }
    assert fields == {"state": "完成", "rows": "3", "bad": "1", "applied": "2"}

    # The city panel shows what GET /v1/ops/cities answers, city by city.
    assert cities.status == 200, cities.body
    page.wait_for_selector("#cities[data-state=ok]")
    for city in cities.json()["cities"]:
        row = page.locator(f"#cities tr[data-city='{city['code']}']")
        writer = row.locator("[data-writer]").get_attribute("data-writer")
        idle = city["writer"] is None and city["epoch"] == 0
        assert writer == ("idle" if idle else city["writer"] or "none"), city
        assert row.locator("[data-field=epoch]").inner_text() == str(city["epoch"])
    assert marker_survived(page)
    assert script_errors == []


CONTRACT_SAMPLE = {
    "cities": [
        {"code": 320100, "name": "南京", "name_en": "Nanjing", "writer": "backup", "epoch": 3,
         "since": 1795000300.0,
         "switches": [
             {"at": 1795000300.0, "from": "primary", "to": "backup", "epoch": 3,
              "why": "lease_expired"},
             {"at": 1795000100.0, "from": None, "to": "primary", "epoch": 2, "why": "planned"},
             {"at": 1795000050.0, "from": None, "to": "primary", "epoch": 1, "why": "start"},
         ]},
        {"code": 320500, "name": "苏州", "name_en": "Suzhou", "writer": None, "epoch": 1,
         "since": 1795000000.0, "switches": [
             {"at": 1795000200.0, "from": "backup", "to": "primary", "epoch": 1, "why": "handback"},
         ]},
        {"code": 320200, "name": "无锡", "name_en": "Wuxi", "writer": "primary", "epoch": 1,
         "since": 1795000000.0, "switches": []},
        {"code": 320300, "name": "徐州", "name_en": "Xuzhou", "writer": None, "epoch": 0,
         "since": None, "switches": []},
    ]
}  # fmt: skip
"""The shape GET /v1/ops/cities promises (writer, epoch, switches newest first)."""


def test_city_panel_draws_the_ops_cities_document_shape(
    page: Page, issuer: Service, script_errors: list[str]
) -> None:
    page.goto(f"{issuer.url}/pages/ops")
    page.evaluate("doc => window.codeEngineOps.renderCities(doc)", CONTRACT_SAMPLE)
    assert page.locator("#cities").get_attribute("data-state") == "ok"
    writers = page.locator("#cities tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.city, r.querySelector('[data-writer]').dataset.writer])"
    )
    assert writers == [
        ["320100", "backup"],
        ["320500", "none"],
        ["320200", "primary"],
        ["320300", "idle"],  # never had a holder: its endpoints have not run
    ]
    nanjing = page.locator("#cities tr[data-city='320100'] [data-field=last]").inner_text()
    assert "主用 → 备用" in nanjing and "租约过期" in nanjing and "#3" in nanjing
    wuxi = page.locator("#cities tr[data-city='320200'] [data-field=last]").inner_text()
    assert wuxi == "暂无切换"
    # Every city's switches in one list, newest first.
    recent = page.locator("#cities .switches li").evaluate_all(
        "items => items.map(i => i.dataset.city)"
    )
    assert recent == ["320100", "320500", "320100", "320100"]
    assert "回切" in page.locator("#cities .switches li").nth(1).inner_text()
    assert "启动" in page.locator("#cities .switches li").nth(3).inner_text()
    assert "why." not in page.locator("#cities").inner_text(), "every cause has its words"
    page.get_by_role("button", name="English").click()
    assert page.locator("#cities tr[data-city='320500'] th").inner_text() == "Suzhou"
    assert "primary → backup" in page.locator("#cities .switches li").first.inner_text()
    assert script_errors == []


def test_ops_console_shows_a_city_switching_to_its_backup_and_back_during_a_drill(
    page: Page,
    cluster: DevCluster,
    key_files: dict[str, str],
    tmp_path: Path,
    script_errors: list[str],
) -> None:
    """A kill-primary drill on one city's issuers, watched on the backup's console."""
    code = CityCode(321300)
    # Forget the city's lease from earlier tests (playwright's loop owns this thread).
    host, port = cluster.startup_nodes[0]
    # As the admin user: the services delete no key outside their scripts.
    with RedisCluster(host=host, port=port, **cluster.redis_py_options("admin")) as client:
        client.delete(*fence_keys(code))
    city = on_free_ports(load_cities()[code])
    env = service_env(**key_files, cluster_nodes=cluster.nodes_spec)
    procs = CityProcesses(city, env, tmp_path)
    keys = dev_keys(key_files)
    try:
        procs.start(Role.PRIMARY, ("issuer",))
        procs.wait_ready(Role.PRIMARY)
        procs.start(Role.BACKUP, ("issuer",))
        procs.wait_ready(Role.BACKUP)
        page.goto(f"{city.backup.issuer}/pages/ops#admin={keys['admin']}")
        page.evaluate(MARKER)
        row = page.locator(f"#cities tr[data-city='{code}']")

        def shown() -> tuple[str | None, str, str]:
            return (
                row.locator("[data-writer]").get_attribute("data-writer"),
                row.locator("[data-field=epoch]").inner_text(),
                row.locator("[data-field=last]").inner_text(),
            )

        wait_until("the primary holds the city", lambda: shown()[:2] == ("primary", "1"), 10)
        procs.signal(Role.PRIMARY, signal.SIGKILL, ("issuer",))
        wait_until(
            "the console shows the backup taking over",
            lambda: (
                shown()[0] == "backup" and "租约过期" in shown()[2] and "主用 → 备用" in shown()[2]
            ),
            12,
        )
        assert int(shown()[1]) == 2
        procs.stop(Role.PRIMARY)
        procs.start(Role.PRIMARY, ("issuer",))
        wait_until(
            "the console shows the hand-back to the restarted primary",
            lambda: shown()[0] == "primary" and "回切" in shown()[2],
            20,
        )
        assert int(shown()[1]) == 3
        assert marker_survived(page), "the console followed both switches without a reload"
    finally:
        procs.stop()
    assert script_errors == []


# The records service in the console ------------------------------------------------------------


def publish_records_status(cluster: DevCluster, at_s: float, lag_entries: int) -> None:
    """Write the status hash the records service publishes (with the sync client, as the admin
    user: playwright's loop owns this thread, and redis-py asks for more than the records
    user may; tests/integration/test_records_ops.py publishes as the records user)."""
    from codeengine.code.recordstatus import status_fields
    from codeengine.records.consumer import StreamLag
    from codeengine.records.status import status_document
    from codeengine.store.keyspace import RECORDS_STATUS_KEY

    days = {
        "scans": [("2026-11-10", 1200, 40_000), ("2026-12-07", 300, 9_000)],
        "changes": [("2026-12-07", 7, 2_000)],
        "access": [],
    }
    lag = [StreamLag("scans", 320500, lag_entries, 42.0), StreamLag("changes", 320500, 0, 0.0)]
    fields = status_fields(status_document(days, lag, 28, int(at_s * 1000)))
    host, port = cluster.startup_nodes[0]
    with RedisCluster(host=host, port=port, **cluster.redis_py_options("admin")) as client:
        client.hset(RECORDS_STATUS_KEY, mapping=fields)


def test_ops_console_shows_the_records_service_and_when_its_status_is_stale(
    page: Page, issuer: Service, cluster: DevCluster, script_errors: list[str]
) -> None:
    publish_records_status(cluster, time.time(), 250)
    page.goto(f"{issuer.url}/pages/ops#admin={issuer.keys['admin']}")
    page.wait_for_selector("#records[data-state=ok]")
    panel = page.locator("#records")
    facts = panel.locator(".facts")
    assert facts.locator("[data-field=oldest]").inner_text() == "2026-11-10"
    assert facts.locator("[data-field=retention]").inner_text() == "28 天"
    assert facts.locator("[data-field=rows]").inner_text() == "1,507"
    assert "250" in facts.locator("[data-field=lag]").inner_text()
    assert facts.locator("[data-field=size]").inner_text() == "49.8 KiB"
    tables = panel.locator("table.tables tr[data-table=scans] [data-field=rows]")
    assert tables.inner_text() == "1,500"
    stream = panel.locator("tr[data-stream='scans:320500']")
    assert stream.locator("[data-field=entries]").inner_text() == "250"
    assert stream.locator("[data-field=age]").inner_text() == "42 s"
    days = panel.locator("table.days tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.day, "
        "...[...r.querySelectorAll('td')].map(c => c.textContent)])"
    )
    assert days == [["2026-12-07", "300", "7", "0"], ["2026-11-10", "1,200", "0", "0"]]
    # A status that stopped coming is shown as stale, with its age.
    publish_records_status(cluster, time.time() - 120, 0)
    page.wait_for_selector("#records[data-stale=true][data-state=error]")
    assert "过期" in panel.locator(".status").inner_text()
    assert panel.locator("table.streams tbody").inner_text() == "无积压"
    assert script_errors == []


def test_records_panel_says_when_nothing_was_published(
    page: Page, issuer: Service, script_errors: list[str]
) -> None:
    page.goto(f"{issuer.url}/pages/ops")
    page.evaluate("doc => window.codeEngineOps.renderRecords(doc)", {"published": False})
    assert page.locator("#records").get_attribute("data-state") == "unavailable"
    assert page.locator("#records .status").inner_text() == "记录服务尚未发布状态"
    assert script_errors == []
