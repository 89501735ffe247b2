"""The issuer as ``make run`` starts it: real worker processes sharing a port, over real HTTP.

Two workers bind one port with SO_REUSEPORT, so consecutive requests on fresh connections land on
either of them: what one worker wrote (a subject, a displayed token, a rotated keyring) must be
what the other one answers. The in-process handler tests are in
``tests/integration/test_issuer_app.py``; these check what only real processes show: sharing
state and metrics across workers, failure answers from a process whose store is gone, and a
graceful SIGTERM under keep-alive load.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zxingcpp
from PIL import Image

from codeengine.code.identifiers import make_resident_id, make_uscc
from codeengine.code.model import Colour
from codeengine.code.suites import b64url_encode
from codeengine.code.token import decode, verify_at
from codeengine.code.trustlist import TrustList
from codeengine.ops.devcluster import DevCluster
from tests.e2e.helpers import (
    SHUTDOWN_TIMEOUT_S,
    TCP_ESTABLISHED,
    Answer,
    Workers,
    dev_keys,
    eventually,
    free_port,
    service_workers,
    settled,
    sockets_held,
    sole_client_settings,
)
from tools.openapi import DOCS

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

WORKERS = 2
KEYRING_REFRESH_S = 0.2
HANG_GUARD_S = 30.0
"""A deadline only against a hang: a wait for something the workers do in the background
(a keyring refresh, a metrics flush) ends as soon as it is done; how long is the machine's."""
EVERY_WORKER_RUN = 32
"""Fresh connections in a row that must agree before "every worker" does (two workers: a run
that misses one happens once in 2**31 tries)."""
BODY_LIMIT_BYTES = 64 * 1024
DISPLAY_TTL_S = 120


Issuer = Workers


@contextmanager
def issuer_workers(
    count: int,
    logs: Path,
    keys: dict[str, str],
    settings: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
    ready: str = "/readyz",
) -> Iterator[Issuer]:
    """``count`` issuer workers on one fresh port, refreshing their keyring often; stopped
    with SIGTERM, each must exit 0 (see ``service_workers``)."""
    refreshing = {"codes_keyring_refresh_s": str(KEYRING_REFRESH_S), **settings}
    with service_workers(
        Workers, "issuer", count, logs, keys, refreshing, extra_env, ready=ready
    ) as started:
        yield started


@pytest.fixture(scope="module")
def issuer(
    cluster: DevCluster, key_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Issuer]:
    """Two workers as ``make run`` starts them, sharing their metrics files."""
    logs = tmp_path_factory.mktemp("issuer-logs")
    metrics = tmp_path_factory.mktemp("issuer-metrics")
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    settings = dict(key_files, cluster_nodes=cluster.nodes_spec)
    keys = dev_keys(key_files)
    with issuer_workers(WORKERS, logs, keys, settings, extra) as started:
        yield started


def new_person_id() -> str:
    """A valid resident ID no other test of the session uses (random birth date and sequence)."""
    born = date.fromordinal(date(1940, 1, 1).toordinal() + secrets.randbelow(60 * 365))
    return make_resident_id("320583", born, secrets.randbelow(1000))


def new_subject(issuer: Issuer) -> str:
    answer = issuer.call(
        "POST",
        "/v1/subjects",
        json_body={"kind": "person", "id": new_person_id(), "city": 320500},
        scope="generate",
    )
    assert answer.status == 201, answer.body
    return str(answer.json()["subject"])


def display(issuer: Issuer, subject: str, fmt: str = "json") -> Answer:
    return issuer.call("GET", f"/v1/subjects/{subject}/code?format={fmt}", scope="display")


def max_age(answer: Answer) -> int:
    directives = dict(
        part.strip().partition("=")[::2] for part in answer.headers["Cache-Control"].split(",")
    )
    return int(directives["max-age"])


def metric_total(issuer: Issuer, operation: str, reason: str) -> float:
    """``codeengine_requests_total`` of the issuer for one operation and reason, all workers."""
    text = issuer.scrape()
    wanted = {f'operation="{operation}"', f'reason="{reason}"', 'service="issuer"'}
    total = 0.0
    for line in text.splitlines():
        if line.startswith("codeengine_requests_total{"):
            labels = set(line[line.index("{") + 1 : line.index("}")].split(","))
            if labels == wanted:
                total += float(line.rsplit(" ", 1)[1])
    return total


# Generate, display, convert --------------------------------------------------------------------


def test_generate_creates_once_then_finds_the_same_subject(issuer: Issuer) -> None:
    person: dict[str, Any] = {"kind": "person", "id": new_person_id(), "city": 320100}
    first = issuer.call("POST", "/v1/subjects", json_body=person, scope="generate")
    assert first.status == 201, first.body
    created = first.json()
    assert created["created"] is True
    assert (created["kind"], created["city"], created["colour"], created["version"]) == (
        "health",
        320100,
        "green",
        1,
    )
    assert person["id"] not in first.body.decode(), "the identifier is never echoed"
    # Whichever worker answers the repeats, it finds what the first one stored.
    for _ in range(4):
        again = issuer.call("POST", "/v1/subjects", json_body=person, scope="generate")
        assert again.status == 200, again.body
        assert again.json() == {**created, "created": False}
    # The same person written differently: surrounding blanks, a lower-case check character.
    with_x = next(ident for ident in iter(new_person_id, None) if ident.endswith("X"))
    first_x = issuer.call(
        "POST", "/v1/subjects", json_body={**person, "id": with_x}, scope="generate"
    )
    for variant in (with_x.lower(), f" {with_x}\t"):
        again = issuer.call(
            "POST", "/v1/subjects", json_body={**person, "id": variant}, scope="generate"
        )
        assert (again.status, again.json()["subject"]) == (200, first_x.json()["subject"])
    enterprise = {
        "kind": "enterprise",
        "id": make_uscc(f"91320500MA1{secrets.randbelow(10**6):06d}"),
        "city": 320500,
    }
    company = issuer.call("POST", "/v1/subjects", json_body=enterprise, scope="generate")
    assert (company.status, company.json()["kind"]) == (201, "enterprise_service")
    assert company.json()["subject"] != created["subject"]


def test_generate_refuses_invalid_identifiers_and_cities(issuer: Issuer) -> None:
    valid = new_person_id()
    wrong_digit = valid[:17] + ("0" if valid[17] != "0" else "1")
    cases = [
        ({"kind": "person", "id": wrong_digit, "city": 320100}, 422, "BAD_CHECK_DIGIT"),
        ({"kind": "person", "id": valid[:16], "city": 320100}, 422, "BAD_LENGTH"),
        ({"kind": "person", "id": valid, "city": 110100}, 400, "UNKNOWN_CITY"),
        ({"kind": "robot", "id": valid, "city": 320100}, 400, "INVALID_FIELD"),
    ]
    for body, status, reason in cases:
        answer = issuer.call("POST", "/v1/subjects", json_body=body, scope="generate")
        assert (answer.status, answer.reason) == (status, reason), body
        assert valid[6:14] not in answer.body.decode(), "no part of an identifier is echoed"


def test_display_json_png_and_svg_show_one_token(issuer: Issuer) -> None:
    subject = new_subject(issuer)
    first = display(issuer, subject)
    assert first.status == 200, first.body
    assert first.headers["Content-Type"].startswith("application/json")
    shown = first.json()
    assert shown["expires_at"] == shown["issued_at"] + DISPLAY_TTL_S
    assert shown["refresh_at"] == shown["issued_at"] + DISPLAY_TTL_S // 2
    assert 0 < max_age(first) <= DISPLAY_TTL_S // 2
    assert first.headers["Cache-Control"].startswith("private")
    # Both workers hand out the token the first one stored, without signing again.
    for _ in range(4):
        assert display(issuer, subject).json()["token"] == shown["token"]
    claims = decode(shown["token"]).claims
    assert (claims.subject_id, claims.colour, claims.city) == (subject, Colour.GREEN, 320500)

    png = display(issuer, subject, "png")
    assert (png.status, png.headers["Content-Type"]) == (200, "image/png")
    assert png.headers["Cache-Control"].startswith("private")
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.body)))
    assert [(code.format, code.text, code.ec_level) for code in found] == [
        (zxingcpp.BarcodeFormat.QRCode, shown["token"], "M")
    ]
    svg = display(issuer, subject, "svg")
    assert (svg.status, svg.headers["Content-Type"]) == (200, "image/svg+xml")
    assert ET.fromstring(svg.body).tag.endswith("svg")

    bad = display(issuer, subject, "gif")
    assert (bad.status, bad.reason) == (400, "INVALID_FIELD")


def test_convert_compare_and_set_and_resend(issuer: Issuer) -> None:
    subject = new_subject(issuer)
    before = display(issuer, subject).json()
    path = f"/v1/subjects/{subject}/status"
    change = {"colour": "red", "reason": "close contact", "if_version": 1, "op_id": "e2e-1"}
    done = issuer.call("POST", path, json_body=change, scope="convert")
    assert done.status == 200, done.body
    assert done.json() == {
        "subject": subject,
        "colour": "red",
        "shows": "red",
        "version": 2,
        "applied": True,
        "op_id": "e2e-1",
    }
    for _ in range(3):
        resent = issuer.call("POST", path, json_body=change, scope="convert")
        assert resent.status == 200, resent.body
        assert (resent.json()["version"], resent.json()["applied"]) == (2, False)
    stale = issuer.call("POST", path, json_body={**change, "op_id": "e2e-2"}, scope="convert")
    assert (stale.status, stale.reason, stale.json()["current_version"]) == (
        409,
        "VERSION_CONFLICT",
        2,
    )
    # The Idempotency-Key header names the operation when the body does not.
    keyed = {"colour": "yellow", "reason": "appeal", "if_version": 2}
    headers = {"Idempotency-Key": "e2e-key-3"}
    once = issuer.call("POST", path, json_body=keyed, headers=headers, scope="convert")
    twice = issuer.call("POST", path, json_body=keyed, headers=headers, scope="convert")
    assert (once.json()["applied"], once.json()["op_id"], once.json()["version"]) == (
        True,
        "e2e-key-3",
        3,
    )
    assert (twice.status, twice.json()["applied"], twice.json()["version"]) == (200, False, 3)
    after = display(issuer, subject).json()
    assert (after["colour"], after["version"]) == ("yellow", 3)
    assert after["token"] != before["token"], "a new status is a newly signed code"
    assert decode(after["token"]).claims.colour is Colour.YELLOW


def test_convert_refuses_an_empty_operation_id(issuer: Issuer) -> None:
    # The spec gives op_id and Idempotency-Key a minimum length of 1. An empty one must not be
    # taken for "none" and replaced by a random id: the client named the operation, and its
    # resend would then apply again instead of being recognised.
    subjects = [new_subject(issuer), new_subject(issuer)]
    paths = [f"/v1/subjects/{subject}/status" for subject in subjects]
    change = {"colour": "red", "reason": "x", "if_version": 1}
    in_body = issuer.call("POST", paths[0], json_body={**change, "op_id": ""}, scope="convert")
    in_header = issuer.call(
        "POST", paths[1], json_body=change, headers={"Idempotency-Key": ""}, scope="convert"
    )
    answers = [(in_body.status, in_body.reason), (in_header.status, in_header.reason)]
    assert answers == [(400, "INVALID_FIELD")] * 2, (in_body.body, in_header.body)
    assert [display(issuer, subject).json()["version"] for subject in subjects] == [1, 1]


# Trust list and rotation -----------------------------------------------------------------------


def trust_list(issuer: Issuer) -> tuple[Answer, TrustList]:
    answer = issuer.call("GET", "/v1/trust")
    return answer, TrustList.from_json(answer.body)


def test_trust_list_is_public_and_cacheable(issuer: Issuer) -> None:
    answer, trust = trust_list(issuer)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/jwk-set+json")
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    token = display(issuer, new_subject(issuer)).json()["token"]
    assert decode(token).kid in trust
    for jwk in json.loads(answer.body)["keys"]:
        assert "d" not in jwk, "no private key is ever published"
        assert jwk["nbf"] < jwk["exp"]


def test_rotation_keeps_codes_signed_before_and_after_verifying(issuer: Issuer) -> None:
    old_subject = new_subject(issuer)
    before = display(issuer, old_subject).json()["token"]
    denied = issuer.call("POST", "/v1/keys/rotate", json_body={}, scope="display")
    assert (denied.status, denied.reason) == (403, "FORBIDDEN")

    rotated = issuer.call("POST", "/v1/keys/rotate", json_body={"activate_in_s": 0}, scope="admin")
    assert rotated.status == 200, rotated.body
    answer = rotated.json()
    assert answer["alg"] == "EdDSA" and answer["activates_at"] <= time.time() + 1
    # The other worker loads the new keyring within its refresh period; until then it may still
    # sign with the old key, which is not wrong, only not what this test waits for.
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        after = display(issuer, new_subject(issuer)).json()["token"]
        if b64url_encode(decode(after).kid) == answer["kid"]:
            break
        assert time.monotonic() < deadline, "no worker signs with the rotated key"
        time.sleep(KEYRING_REFRESH_S)
    # A code shown before the switch is replaced by one of the new key on the next display (a
    # worker still on the old keyring may hand out the old one for up to its refresh period);
    # the old code itself stays valid, checked below.
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        again = display(issuer, old_subject).json()["token"]
        if b64url_encode(decode(again).kid) == answer["kid"]:
            break
        assert again == before, "until a worker reloads, it hands out the same code"
        assert time.monotonic() < deadline, "the old subject's code never moved to the new key"
        time.sleep(KEYRING_REFRESH_S)

    # Fetched after the switch, from whichever worker answers once both have reloaded.
    deadline = time.monotonic() + HANG_GUARD_S
    while not all(
        trust_list(issuer)[1].get(decode(after).kid) is not None for _ in range(EVERY_WORKER_RUN)
    ):
        assert time.monotonic() < deadline, "a worker never published the rotated key"
        time.sleep(KEYRING_REFRESH_S)
    for _ in range(4):
        _, trust = trust_list(issuer)
        now = int(time.time())
        assert verify_at(before, trust, now).subject_id == old_subject
        assert verify_at(after, trust, now).cti == decode(after).claims.cti
    assert decode(before).kid != decode(after).kid
    old_key = trust.get(decode(before).kid)
    assert old_key is not None and old_key.not_after >= now + DISPLAY_TTL_S, "overlap covers codes"


# Refusals --------------------------------------------------------------------------------------


def test_requests_without_a_valid_key_or_scope_are_refused(issuer: Issuer) -> None:
    subject = new_subject(issuer)
    change = {"colour": "red", "reason": "", "if_version": 1}
    person = {"kind": "person", "id": new_person_id(), "city": 320100}
    # Each operation, and a scope that every client but the right one has.
    operations: list[tuple[str, str, object, str]] = [
        ("POST", "/v1/subjects", person, "display"),
        ("GET", f"/v1/subjects/{subject}/code", None, "generate"),
        ("POST", f"/v1/subjects/{subject}/status", change, "display"),
        ("POST", "/v1/keys/rotate", {"activate_in_s": 0}, "convert"),
    ]
    for method, path, body, wrong_scope in operations:
        anonymous = issuer.call(method, path, json_body=body)
        assert (anonymous.status, anonymous.reason) == (401, "UNAUTHORIZED"), path
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        for header in ("Bearer not-a-key", "Basic eA==", "Bearer"):
            forged = issuer.call(method, path, json_body=body, headers={"Authorization": header})
            assert (forged.status, forged.reason) == (401, "UNAUTHORIZED"), (path, header)
        forbidden = issuer.call(method, path, json_body=body, scope=wrong_scope)
        assert (forbidden.status, forbidden.reason) == (403, "FORBIDDEN"), path
    assert display(issuer, subject).json()["version"] == 1, "nothing was changed"


def test_unknown_subjects_and_paths(issuer: Issuer) -> None:
    unknown = "AAAAAAAAAAAAAAAA"
    shown = display(issuer, unknown)
    assert (shown.status, shown.reason) == (404, "UNKNOWN_SUBJECT")
    change = {"colour": "red", "reason": "x", "if_version": 1}
    converted = issuer.call(
        "POST", f"/v1/subjects/{unknown}/status", json_body=change, scope="convert"
    )
    assert (converted.status, converted.reason) == (404, "UNKNOWN_SUBJECT")
    not_a_pseudonym = display(issuer, "not-a-pseudonym")
    assert (not_a_pseudonym.status, not_a_pseudonym.reason) == (400, "INVALID_FIELD")
    nowhere = issuer.call("GET", "/v1/nowhere")
    assert (nowhere.status, nowhere.reason) == (404, "NOT_FOUND")
    wrong_method = issuer.call("DELETE", "/v1/subjects", scope="generate")
    assert (wrong_method.status, wrong_method.reason) == (405, "METHOD_NOT_ALLOWED")
    assert "POST" in wrong_method.headers["Allow"]


def test_malformed_bodies_are_refused_with_stable_reasons(issuer: Issuer) -> None:
    subject = new_subject(issuer)
    json_type = {"Content-Type": "application/json"}
    convert = f"/v1/subjects/{subject}/status"
    ok = {"colour": "red", "reason": "x", "if_version": 1}
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("/v1/subjects", b"{nope", json_type, 400, "BAD_JSON"),
        ("/v1/subjects", b"\xff\xfe", json_type, 400, "BAD_JSON"),
        ("/v1/subjects", b"[]", json_type, 400, "INVALID_FIELD"),
        (convert, b"", json_type, 400, "BAD_JSON"),
        (convert, json.dumps({**ok, "name": "x"}).encode(), json_type, 400, "UNKNOWN_FIELD"),
        (convert, json.dumps({**ok, "if_version": "1"}).encode(), json_type, 400, "INVALID_FIELD"),
        (convert, json.dumps({**ok, "if_version": True}).encode(), json_type, 400, "INVALID_FIELD"),
        (convert, json.dumps({**ok, "if_version": 0}).encode(), json_type, 400, "INVALID_FIELD"),
        (convert, json.dumps({**ok, "colour": "blue"}).encode(), json_type, 400, "INVALID_FIELD"),
        (convert, json.dumps({"colour": "red"}).encode(), json_type, 400, "MISSING_FIELD"),
        (
            "/v1/keys/rotate",
            json.dumps({"activate_in_s": -1}).encode(),
            json_type,
            400,
            "INVALID_FIELD",
        ),
        ("/v1/keys/rotate", b'{"alg": "RS256"}', json_type, 400, "INVALID_FIELD"),
        (convert, json.dumps(ok).encode(), {"Content-Type": "text/plain"}, 415, ""),
        (
            "/v1/subjects",
            b"kind=person",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "",
        ),
        ("/v1/subjects", b"{}", {}, 415, ""),
        (convert, b"[" * (BODY_LIMIT_BYTES + 10), json_type, 413, "BODY_TOO_LARGE"),
    ]
    scopes = {"/v1/subjects": "generate", convert: "convert", "/v1/keys/rotate": "admin"}
    for path, body, headers, status, reason in cases:
        answer = issuer.call("POST", path, body=body, headers=headers, scope=scopes[path])
        expected = reason or "UNSUPPORTED_MEDIA_TYPE"
        assert (answer.status, answer.reason) == (status, expected), (path, body[:40], headers)
    assert display(issuer, subject).json()["version"] == 1, "no refused request changed anything"


def test_rate_limit_answers_429_with_retry_after(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    client = {"client": "slow", "scopes": ["display"], "key": "slow-key", "rate_per_s": 2}
    settings = sole_client_settings(tmp_path, key_files, cluster.nodes_spec, client)
    with issuer_workers(1, tmp_path, {"display": "slow-key"}, settings) as slow:
        path = "/v1/subjects/AAAAAAAAAAAAAAAA/code"
        # Two admitted, then a token back every half second: twelve requests outrun it
        # unless each takes nearly that long.
        answers = [slow.call("GET", path, scope="display") for _ in range(12)]
        statuses = [answer.status for answer in answers]
        assert statuses[:2] == [404, 404], "a full bucket admits a burst of rate_per_s"
        limited = [answer for answer in answers if answer.status == 429]
        assert limited, statuses
        assert limited[0].reason == "RATE_LIMITED"
        retry_after = int(limited[0].headers["Retry-After"])
        assert 1 <= retry_after <= 1, "one token comes back within half a second at 2/s"
        time.sleep(retry_after)
        assert slow.call("GET", path, scope="display").status == 404, "admitted after the wait"
        assert slow.call("GET", "/healthz").status == 200, "open routes are not limited"


def test_unreachable_store_answers_503_with_retry_after(
    key_files: dict[str, str], tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    settings = dict(key_files, cluster_nodes=dead)
    keys = dev_keys(key_files)
    with issuer_workers(1, tmp_path, keys, settings, ready="/healthz") as down:
        subject = "AAAAAAAAAAAAAAAA"
        requests: list[tuple[str, str, object, str | None]] = [
            (
                "POST",
                "/v1/subjects",
                {"kind": "person", "id": new_person_id(), "city": 320100},
                "generate",
            ),
            ("GET", f"/v1/subjects/{subject}/code", None, "display"),
            ("GET", f"/v1/subjects/{subject}/code?format=png", None, "display"),
            (
                "POST",
                f"/v1/subjects/{subject}/status",
                {"colour": "red", "reason": "x", "if_version": 1},
                "convert",
            ),
            ("POST", "/v1/keys/rotate", {"activate_in_s": 0}, "admin"),
            ("GET", "/v1/trust", None, None),
        ]
        for method, path, body, scope in requests:
            started = time.monotonic()
            answer = down.call(method, path, json_body=body, scope=scope)
            took = time.monotonic() - started
            assert answer.status == 503, (path, answer.body)
            assert answer.reason in {"STORE_UNAVAILABLE", "KEYRING"}, (path, answer.body)
            assert answer.headers["Retry-After"] == "1", path
            assert took < 3.0, f"{path} answered after {took:.1f} s: deadlines bound store calls"
        ready = down.call("GET", "/readyz")
        assert ready.status == 503 and ready.json()["failed"]["cluster"] == "STORE_UNAVAILABLE"
        assert down.call("GET", "/healthz").status == 200
        assert down.call("GET", "/openapi.json").status == 200, "the spec needs no store"


# Metrics and the spec --------------------------------------------------------------------------


def test_metrics_count_every_workers_requests(issuer: Issuer) -> None:
    before = settled(lambda: metric_total(issuer, "display", "UNKNOWN_SUBJECT"))
    requests = 8
    for _ in range(requests):
        assert display(issuer, "AAAAAAAAAAAAAAAA").status == 404
    # Fresh connections spread over both workers; either worker's /metrics counts them all,
    # the other worker's within a second (each worker adds its hot counts every second).
    counted = eventually(
        lambda: metric_total(issuer, "display", "UNKNOWN_SUBJECT"),
        lambda total: total >= before + requests,
        HANG_GUARD_S,
    )
    assert counted == before + requests
    for _ in range(3):
        assert metric_total(issuer, "display", "UNKNOWN_SUBJECT") == before + requests
    text = issuer.scrape()
    assert "codeengine_request_duration_seconds_bucket{" in text
    assert 'codeengine_signatures_total{alg="EdDSA"}' in text
    assert 'codeengine_qr_renders_total{format="png"}' in text
    for operation in ("generate", "display", "convert", "trust", "rotate"):
        assert metric_total(issuer, operation, "OK") > 0, operation


def test_openapi_spec_is_served(issuer: Issuer) -> None:
    answer = issuer.call("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == json.loads((DOCS / "issuer.json").read_text())


def test_no_request_was_answered_with_500(issuer: Issuer) -> None:
    text = issuer.scrape()
    totals = [line for line in text.splitlines() if line.startswith("codeengine_requests_total{")]
    assert totals, "the module's requests were counted"
    assert not [line for line in totals if 'reason="INTERNAL"' in line]
    assert "unhandled error" not in issuer.log_text()


# Graceful shutdown -----------------------------------------------------------------------------


@dataclass
class Load:
    """What the looping clients saw."""

    ok: int = 0
    ok_after_sigterm: int = 0
    resent: int = 0
    failures: list[str] = field(default_factory=list)
    sigterm_at: float | None = None

    def fail(self, what: str) -> None:
        when = "" if self.sigterm_at is None else f"{time.monotonic() - self.sigterm_at:+.3f} s "
        self.failures.append(f"{when}{what}"[:240])


async def send(
    session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, bytes]:
    async with session.request(method, path, **kwargs) as response:
        return response.status, await response.read()


async def loop_requests(
    issuer: Issuer, subject: str, person: dict[str, object], load: Load, stop: asyncio.Event
) -> None:
    """One keep-alive connection's worth of display and generate requests until ``stop``.

    aiohttp resends an idempotent method once when the server closed a kept-alive connection
    before answering (RFC 9112, 9.3.1); this client does the same for generate, which the API
    makes idempotent, and counts it. Anything else is a failure.
    """
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=SHUTDOWN_TIMEOUT_S + 5)
    async with aiohttp.ClientSession(issuer.url, connector=connector, timeout=timeout) as session:
        index = 0
        while not stop.is_set():
            index += 1
            if index % 4:
                method, path = "GET", f"/v1/subjects/{subject}/code"
                kwargs: dict[str, Any] = {"headers": issuer.auth("display")}
            else:
                method, path = "POST", "/v1/subjects"
                kwargs = {"json": person, "headers": issuer.auth("generate")}
            try:
                try:
                    status, body = await send(session, method, path, **kwargs)
                except aiohttp.ClientConnectorError:
                    raise
                except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                    if method == "GET":
                        raise
                    load.resent += 1
                    status, body = await send(session, method, path, **kwargs)
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.fail(f"{method} {path}: {exc!r}")
                continue
            if status != 200:
                load.fail(f"{method} {path}: {status} {body[:80]!r}")
                continue
            load.ok += 1
            load.ok_after_sigterm += load.sigterm_at is not None


async def sigterm_under_load(issuer: Issuer, subject: str, person: dict[str, object]) -> None:
    """SIGTERM the first worker while clients loop on keep-alive connections."""
    load = Load()
    stop = asyncio.Event()
    clients = [loop_requests(issuer, subject, person, load, stop) for _ in range(8)]
    tasks = [asyncio.create_task(client) for client in clients]
    target = issuer.procs[0]
    try:
        # The kernel spreads connections; make sure the worker to stop holds several.
        for _ in range(20):
            await asyncio.sleep(0.25)
            if sockets_held(target.pid, issuer.port, TCP_ESTABLISHED) >= 2:
                break
            tasks.append(asyncio.create_task(loop_requests(issuer, subject, person, load, stop)))
        held = sockets_held(target.pid, issuer.port, TCP_ESTABLISHED)
        assert held >= 2, "the worker to stop serves keep-alive connections"
        assert load.ok > 0 and not load.failures, load.failures[:5]
        target.send_signal(signal.SIGTERM)
        load.sigterm_at = time.monotonic()
        code = await asyncio.to_thread(target.wait, SHUTDOWN_TIMEOUT_S + 5)
        took = time.monotonic() - load.sigterm_at
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert load.failures == [], f"{len(load.failures)} of {load.ok} failed: {load.failures[:6]}"
    assert load.resent <= held, "only connections of the stopped worker closed between requests"
    assert (code, took < SHUTDOWN_TIMEOUT_S + 1) == (0, True), f"exit {code} after {took:.1f} s"
    assert load.ok_after_sigterm > 0, "the other worker went on serving"


def test_sigterm_under_keepalive_load_fails_no_request(
    cluster: DevCluster, key_files: dict[str, str], tmp_path: Path
) -> None:
    settings = dict(key_files, cluster_nodes=cluster.nodes_spec)
    keys = dev_keys(key_files)
    with issuer_workers(WORKERS, tmp_path, keys, settings) as pair:
        person: dict[str, object] = {"kind": "person", "id": new_person_id(), "city": 320100}
        created = pair.call("POST", "/v1/subjects", json_body=person, scope="generate")
        assert created.status == 201, created.body
        asyncio.run(sigterm_under_load(pair, str(created.json()["subject"]), person))
        assert pair.procs[1].poll() is None, "the other worker is untouched"
        assert pair.call("GET", "/readyz").status == 200
