"""The terminal page goes on checking codes when its verifier is cut off, and its queue of
offline scans reaches the scan log when the verifier is back.

The verifier here is the test's own process on a port it keeps: stopped mid-session (the
page's origin stays the same, so its service worker and kept lists are there), started again
on the same port. Time is passed in, never waited for: the expired scan is the valid code
scanned with the page's clock hook set past its expiry.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page
from redis.cluster import RedisCluster

from codeengine.code.scans import ScanEntry
from codeengine.code.token import decode
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import CodeSettings
from codeengine.store.keyspace import scan_log_key
from tests.browser.pagekit import Service, generate, wait_until
from tests.e2e.helpers import Workers, dev_keys, free_port, service_workers
from tests.e2e.test_verifier_e2e import with_signature_flipped

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.cluster]

CITY = 320100
SKEW_S = CodeSettings().clock_skew_s


def scan(page: Page, code: str, count: int) -> Any:
    """Type ``code`` and Enter as a scanner does; the result element once it shows the scan."""
    page.locator("#scan").fill(code)
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#result[data-count='{count}']")
    return page.locator("#result")


def verdict_of(page: Page) -> tuple[str | None, ...]:
    result = page.locator("#result")
    return tuple(
        result.get_attribute(name)
        for name in ("data-mode", "data-valid", "data-colour", "data-reason")
    )


def offline_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("window.codeEngineTerminal.offlineState()")
    return state


class _BadGateway(BaseHTTPRequestHandler):
    """What a gateway in front of a dead verifier answers to everything: 502 and an HTML page."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *args: Any) -> None:
        """Quiet: the test's output is not for this server's lines."""


@contextmanager
def bad_gateway(port: int) -> Iterator[None]:
    """A real HTTP server on the verifier's port that answers 502 to every request."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def logged_scans(cluster: DevCluster, terminal: str) -> list[ScanEntry]:
    """The scan log entries of ``terminal`` in the city's stream, oldest first."""
    host, port = cluster.startup_nodes[0]
    with RedisCluster(host=host, port=port, **cluster.redis_py_options("admin")) as client:
        rows = client.xrange(scan_log_key(CITY))
    entries = [ScanEntry.from_fields(fields) for _id, fields in rows]
    return [entry for entry in entries if entry.terminal == terminal]


class OfflineTerminal:
    """A terminal of its own (a fresh id) and a verifier it can stop and start again on one
    port, with the dev keys; its page fragment carries the key and the trust anchor."""

    def __init__(
        self, prefix: str, cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
    ) -> None:
        self.settings = {**key_files, **cluster.client_settings()}
        self.keys = dev_keys(self.settings)
        self.port = free_port()
        self.terminal = f"{prefix}-{secrets.token_hex(4)}"
        anchor = Path(key_files["keys_trust_anchor_file"]).with_name("trust-anchor.pub.json")
        self.anchor = anchor.read_text()
        self._tmp_path = tmp_path

    def fragment(self, **more: object) -> str:
        """The page's fragment: key, terminal, city and anchor, and ``more``."""
        base = {"key": self.keys["verify"], "terminal": self.terminal, "city": CITY}
        return urlencode({**base, **more, "anchor": self.anchor})

    def start(self, logs: str) -> Any:
        """The verifier on the terminal's port, logging under ``logs``."""
        folder = self._tmp_path / logs
        folder.mkdir()
        return service_workers(
            Workers, "verifier", 1, folder, self.keys, self.settings, port=self.port
        )


def test_terminal_checks_offline_when_cut_off_and_sends_its_queue_when_back(
    page: Page,
    issuer: Service,
    cluster: DevCluster,
    key_files: dict[str, str],
    tmp_path: Path,
    script_errors: list[str],
) -> None:
    desk = OfflineTerminal("offline", cluster, key_files, tmp_path)
    port, terminal, start = desk.port, desk.terminal, desk.start
    green = issuer.ok("GET", f"/v1/subjects/{generate(issuer)['subject']}/code", "display")
    doomed = issuer.ok("GET", f"/v1/subjects/{generate(issuer)['subject']}/code", "display")
    fragment = desk.fragment(venue="hall-9", deadline=1500)

    with start("before") as verifier:
        response = page.goto(f"{verifier.url}/pages/terminal#{fragment}")
        assert response is not None and response.status == 200
        # The worker installed and controls the page; the lists passed their check.
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        wait_until("the page holds checked lists", lambda: offline_state(page)["ready"], 10)

        scan(page, green["token"], 1)
        assert verdict_of(page) == ("online", "true", "green", "VALID")

        # Revoked online: once the signed revocation list has it, the page fetches it.
        before = verifier.call("GET", "/v1/revocations/signed").body
        verifier.ok("POST", "/v1/revocations", "admin", {"code": doomed["token"]})
        wait_until(
            "the signed revocation list changes",
            lambda: verifier.call("GET", "/v1/revocations/signed").body != before,
            10,
        )
        lists_as_of = page.evaluate("window.codeEngineTerminal.refreshLists()")["asOfMs"]
        wait_until(
            "the worker controls the page",
            lambda: page.evaluate("navigator.serviceWorker.controller !== null"),
            10,
        )

    # Cut off behind a gateway: the verifier's process is gone and what answers on its port
    # says 502 to everything. A reload comes from the service worker's kept copy all the same.
    with bad_gateway(port):
        response = page.reload()
        assert response is not None and response.status == 200
        wait_until("the page reads its kept lists", lambda: offline_state(page)["ready"], 10)
        assert offline_state(page)["asOfMs"] == lists_as_of
        scan(page, green["token"], 1)
        assert verdict_of(page) == ("offline", "true", "green", "VALID")
    # Cut off with nothing on the port: the same, from the network's failure. The scan above
    # waits in the queue with the ones below.
    response = page.reload()
    assert response is not None and response.status == 200
    wait_until("the page reads its kept lists", lambda: offline_state(page)["ready"], 10)

    expired_at = decode(green["token"]).claims.exp + SKEW_S + 5
    cases = [
        (green["token"], None, ("offline", "true", "green", "VALID")),
        (doomed["token"], None, ("offline", "false", "none", "REVOKED")),
        (
            with_signature_flipped(green["token"]),
            None,
            ("offline", "false", "none", "BAD_SIGNATURE"),
        ),
        (green["token"], expired_at, ("offline", "false", "none", "EXPIRED")),
    ]
    for count, (code, clock, expected) in enumerate(cases, start=1):
        hook = "null" if clock is None else f"() => {clock}"
        page.evaluate(f"window.codeEngineTerminal.clock = {hook}")
        result = scan(page, code, count)
        assert verdict_of(page) == expected, code
        assert result.get_attribute("data-as-of") == str(lists_as_of)
        assert page.locator("#detail").inner_text().startswith("离线核验 · 名单截至 ")
    page.evaluate("window.codeEngineTerminal.clock = null")
    # What is not the engine's code cannot be checked here and is not kept on the device (a DCC,
    # an alias card carrying a social-security number).
    for count, text in enumerate(("HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH", "SSC:3201020"), 5):
        scan(page, text, count)
        assert verdict_of(page) == ("offline", "", "none", "OFFLINE_UNSUPPORTED")
        assert page.locator("#reason").inner_text() == "此码无法离线核验，请待网络恢复"
    assert page.locator("#network").get_attribute("data-mode") == "offline"
    assert page.locator("#network").inner_text() == "离线 · 5 条待上传"
    assert offline_state(page)["waiting"] == 5
    # A scan the verifier will refuse whole (an id it cannot take) and one too old to be
    # logged, as an earlier release or a tampered store could leave them: neither may hold the
    # queue, and neither goes unseen.
    page.evaluate(
        """(() => {
          const queue = JSON.parse(localStorage.getItem("ce-terminal-queue"));
          const first = queue.items[0];
          queue.items.splice(1, 0, { ...first, id: "short" });
          queue.items.push({ ...first, id: "A".repeat(22), at_ms: Date.now() - 4 * 86400000 });
          localStorage.setItem("ce-terminal-queue", JSON.stringify(queue));
        })()"""
    )

    # Back: the next scan is answered online, and the queue goes to the scan log.
    with start("after"):
        scan(page, green["token"], 7)
        assert verdict_of(page) == ("online", "true", "green", "VALID")
        wait_until("the queue is sent", lambda: offline_state(page)["waiting"] == 0, 10)
        wait_until("seven scans are logged", lambda: len(logged_scans(cluster, terminal)) == 7, 10)
    # Two online scans and the five offline ones, judged again by the verifier at their times.
    logged = logged_scans(cluster, terminal)
    assert sorted(e.reason for e in logged) == [
        "BAD_SIGNATURE",
        "EXPIRED",
        "REVOKED",
        "VALID",
        "VALID",
        "VALID",
        "VALID",
    ]
    assert {(e.venue, e.city) for e in logged} == {("hall-9", CITY)}
    assert {e.colour for e in logged if e.reason == "VALID"} == {"green"}
    expired = next(e for e in logged if e.reason == "EXPIRED")
    assert abs(expired.at_ms - expired_at * 1000) < 1000
    assert {k: offline_state(page)[k] for k in ("waiting", "dropped", "refused", "expired")} == {
        "waiting": 0,
        "dropped": 0,
        "refused": 1,
        "expired": 1,
    }
    assert page.locator("#network").inner_text() == "0 条待上传（被拒 1 条）（过期 1 条）"
    assert script_errors == []


def test_offline_scans_are_logged_once_and_only_within_their_time_bounds(
    issuer: Service, verifier: Service, cluster: DevCluster
) -> None:
    token = issuer.ok("GET", f"/v1/subjects/{generate(issuer)['subject']}/code", "display")["token"]
    now_ms = int(decode(token).claims.iat) * 1000
    terminal = f"replay-{secrets.token_hex(4)}"

    def item(scan_id: str, at_ms: int) -> dict[str, Any]:
        return {"id": scan_id, "code": token, "terminal": terminal, "city": CITY, "at_ms": at_ms}

    first = secrets.token_urlsafe(16)
    batch = [
        item(first, now_ms),
        item(secrets.token_urlsafe(16), now_ms - 4 * 86_400_000),
        item(secrets.token_urlsafe(16), now_ms + 3_600_000),
    ]
    answer = verifier.ok("POST", "/v1/scans/offline", "verify", {"scans": batch})
    assert [(r["id"], r["logged"], r["reason"]) for r in answer["results"]] == [
        (first, True, "VALID"),
        (batch[1]["id"], False, "SCAN_TOO_OLD"),
        (batch[2]["id"], False, "SCAN_IN_FUTURE"),
    ]
    again = verifier.ok("POST", "/v1/scans/offline", "verify", {"scans": batch[:1]})
    assert again["results"] == [{"id": first, "logged": False, "reason": "DUPLICATE"}]
    wait_until("the scan is logged", lambda: len(logged_scans(cluster, terminal)) == 1, 10)
    assert [e.at_ms for e in logged_scans(cluster, terminal)] == [now_ms]

    refused = verifier.call(
        "POST", "/v1/scans/offline", json_body={"scans": [item("short", now_ms)]}, scope="verify"
    )
    assert refused.status == 400 and refused.json()["reason"] == "INVALID_FIELD"
    wrong_city = {**item(secrets.token_urlsafe(16), now_ms), "city": 110000}
    refused = verifier.call(
        "POST", "/v1/scans/offline", json_body={"scans": [wrong_city]}, scope="verify"
    )
    assert refused.status == 400 and refused.json()["reason"] == "UNKNOWN_CITY"
    unauthorised = verifier.call("POST", "/v1/scans/offline", json_body={"scans": [item(first, 0)]})
    assert unauthorised.status == 401


def test_a_device_clock_minutes_fast_stamps_offline_scans_at_the_verifiers_time(
    page: Page,
    issuer: Service,
    cluster: DevCluster,
    key_files: dict[str, str],
    tmp_path: Path,
    script_errors: list[str],
) -> None:
    desk = OfflineTerminal("fast", cluster, key_files, tmp_path)
    terminal, start = desk.terminal, desk.start
    code = issuer.ok("GET", f"/v1/subjects/{generate(issuer)['subject']}/code", "display")
    fragment = desk.fragment()
    # Ten minutes fast: twice what the verifier believes of a terminal's clock (300 s).
    fast_s = 600

    with start("before") as verifier:
        page.goto(f"{verifier.url}/pages/terminal#{fragment}")
        page.evaluate(f"window.codeEngineTerminal.clock = () => Date.now() / 1000 + {fast_s}")
        wait_until("the page holds checked lists", lambda: offline_state(page)["ready"], 10)
        # Online, the verifier's Date header tells the page how far off its clock is.
        scan(page, code["token"], 1)
        assert verdict_of(page) == ("online", "true", "green", "VALID")
    scan(page, code["token"], 2)
    # Checked at the verifier's time: ten minutes on, at the device's, the code has expired,
    # and a scan stamped then would be refused SCAN_IN_FUTURE when sent.
    assert verdict_of(page) == ("offline", "true", "green", "VALID")
    assert offline_state(page)["waiting"] == 1
    sent_at_ms = page.evaluate(
        "JSON.parse(localStorage.getItem('ce-terminal-queue')).items[0].at_ms"
    )
    real_ms = page.evaluate("Date.now()")
    assert abs(sent_at_ms - real_ms) < 5_000, "stamped at the verifier's time"
    with start("after"):
        scan(page, code["token"], 3)
        wait_until("the queue is sent", lambda: offline_state(page)["waiting"] == 0, 10)
        wait_until(
            "the two online scans and the queued one are logged",
            lambda: len(logged_scans(cluster, terminal)) == 3,
            10,
        )
    assert [e.reason for e in logged_scans(cluster, terminal)] == ["VALID"] * 3
    assert offline_state(page)["refused"] == 0
    assert script_errors == []


QUEUE_SCENARIO = """async () => {
  const { OfflineDesk, QUEUE_MAX_AGE_S } = await import("/static/terminal-offline.js");
  const now = 1_800_000_000;
  const desk = new OfflineDesk("", () => now);
  const scan = (at_s, code) => ({ code, terminal: "t", city: 320100, at_ms: at_s * 1000 });
  localStorage.clear();
  // Too old to be logged: dropped, counted, as the next scan is queued.
  desk.enqueue(scan(now - QUEUE_MAX_AGE_S - 1, "CE1:OLD"));
  desk.enqueue(scan(now, "CE1:NEW"));
  const afterAge = desk.queued();
  // Long codes: the queue's size bound drops the oldest, whatever the count.
  for (let i = 0; i < 300; i += 1) desk.enqueue(scan(now, "CE1:" + "X".repeat(3000)));
  const afterSize = desk.queued();
  const size = localStorage.getItem("ce-terminal-queue").length;
  // A storage with no room left: the queue makes room from its oldest rather than fail.
  localStorage.clear();
  desk.enqueue(scan(now, "CE1:SCAN1"));
  let filler = "";
  for (let step = 1 << 22; step >= 1; step >>= 1) {
    try { localStorage.setItem("filler", filler + "f".repeat(step)); filler += "f".repeat(step); }
    catch (err) { if (err.name !== "QuotaExceededError") throw err; }
  }
  let error = null;
  try { desk.enqueue(scan(now, "CE1:SCAN2")); } catch (err) { error = String(err); }
  const afterQuota = desk.queued();
  const kept = JSON.parse(localStorage.getItem("ce-terminal-queue")).items.map((i) => i.code);
  localStorage.clear();
  return { afterAge, afterSize, size, afterQuota, kept, error };
}"""


def test_the_queue_keeps_to_its_bounds_and_counts_every_scan_it_drops(
    page: Page, verifier: Service, script_errors: list[str]
) -> None:
    response = page.goto(f"{verifier.url}/pages/terminal")
    assert response is not None and response.status == 200
    outcome = page.evaluate(QUEUE_SCENARIO)
    assert outcome["afterAge"] == {"waiting": 1, "dropped": 0, "refused": 0, "expired": 1}
    held = outcome["afterSize"]
    assert 100 < held["waiting"] < 300 and held["dropped"] == 301 - held["waiting"]
    assert outcome["size"] <= 650_000 + 100  # the items, and the counts beside them
    # The first scan made room for the second; nothing was thrown at the scan's verdict.
    assert outcome["error"] is None
    assert outcome["kept"] == ["CE1:SCAN2"]
    assert outcome["afterQuota"]["dropped"] == 1
    assert script_errors == []
