"""The verifier as ``make run`` starts it: real worker processes sharing a port, over real HTTP.

An issuer worker generates, displays, converts and rotates; two verifier workers share one port
with SO_REUSEPORT, so consecutive requests on fresh connections land on either, and what one of
them was told (a revocation) must be what both answer. The codes an issuer never hands out
(expired, not yet valid, foreign key, altered) are made here: with the keyring the store holds,
opened with the session's key-encryption key, or with a key of our own. The in-process handler
tests are in ``tests/integration/test_verifier_app.py``; these check the processes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from redis.cluster import RedisCluster

from codeengine.code.base45 import b45decode
from codeengine.code.errors import CodeEngineError
from codeengine.code.foreign import MAX_SCAN_CHARS
from codeengine.code.identifiers import make_resident_id
from codeengine.code.keyring import Keyring, SigningKey
from codeengine.code.keyvault import SealedKeyring, open_keyring
from codeengine.code.model import CodeKind, Colour, SubjectId
from codeengine.code.profile import INTERNATIONAL
from codeengine.code.scans import ScanCount, ScanEntry, count_scans
from codeengine.code.signedlist import ListKind, verify_list_at
from codeengine.code.suites import ED25519, b64url_decode, b64url_encode
from codeengine.code.token import (
    MAX_TOKEN_CHARS,
    PREFIX,
    Claims,
    _claims_payload,
    cose_to_token,
    decode,
    encode,
    subject_bytes,
)
from codeengine.keyfiles import anchor_public_path, load_pepper
from codeengine.ops.devcluster import DevCluster
from codeengine.store import keyspace as store_keys
from codeengine.store.cluster import key_slot
from tests.e2e.exposition import (
    alert_exprs,
    dashboard_exprs,
    declared,
    exposed,
    metric_names,
    records_families,
    records_service_metric,
)
from tests.e2e.helpers import (
    Workers,
    dev_keys,
    eventually,
    service_workers,
    settled,
)
from tools.openapi import DOCS
from verifier.offline import CachedList, OfflineVerifier, load_anchors

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

VERIFIER_WORKERS = 2
KEYRING_REFRESH_S = 0.2
REVOCATION_REFRESH_S = 0.5
HANG_GUARD_S = 30.0
"""A deadline only against a hang: a wait for something the services do in the background
(a refresh, a flush) ends as soon as it is done; how long that takes is the machine's."""
EVERY_WORKER_RUN = 32
"""Fresh connections in a row that must agree before "every worker" does: with two workers,
a run that misses one happens once in 2**31 tries."""
CITY = 320100
OTHER_CITY = 320500
OUTSIDE_CITY = 110100
DISPLAY_TTL_S = 120
SKEW_S = 30
BATCH_BODY_LIMIT = 500 * 640


# Processes and HTTP ----------------------------------------------------------------------------


@dataclass
class Service(Workers):
    """The worker processes of one service on one port, and the verifier's own call."""

    def verify(
        self,
        code: str,
        city: int = CITY,
        venue: str = "gate-1",
        terminal: str = "t-1",
        scope: str = "verify",
    ) -> dict[str, Any]:
        """POST /v1/verify; the verdict (the answer must be 200)."""
        item = {"code": code, "terminal": terminal, "venue": venue, "city": city}
        answer = self.call("POST", "/v1/verify", json_body=item, scope=scope)
        assert answer.status == 200, answer.body
        assert answer.headers["Content-Type"].startswith("application/json")
        verdict: dict[str, Any] = answer.json()
        return verdict


@dataclass(frozen=True)
class Starter:
    """How this module starts workers: the session's cluster and keys, a fresh folder of logs."""

    settings: dict[str, str]
    keys: dict[str, str]
    folders: pytest.TempPathFactory

    def workers(
        self,
        service: str,
        logs: str,
        count: int = 1,
        extra_env: Mapping[str, str] | None = None,
        *,
        checked: bool = True,
        **settings: str,
    ) -> AbstractContextManager[Service]:
        """``count`` workers of ``service`` with the module's settings and ``settings``, their
        logs in a fresh folder named ``logs`` (see ``service_workers``)."""
        every = {**self.settings, **settings}
        folder = self.folders.mktemp(logs)
        return service_workers(
            Service, service, count, folder, self.keys, every, extra_env, checked=checked
        )


@pytest.fixture(scope="module")
def start(
    cluster: DevCluster, key_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Starter:
    """Starts the workers of this module, with the dev keys."""
    settings = {"cluster_nodes": cluster.nodes_spec, **key_files}
    return Starter(settings, dev_keys(key_files), tmp_path_factory)


@pytest.fixture(scope="module")
def issuer(start: Starter) -> Iterator[Service]:
    """One issuer worker: it publishes the trust list and hands out the codes verified here."""
    refresh = str(KEYRING_REFRESH_S)
    with start.workers("issuer", "issuer-logs", codes_keyring_refresh_s=refresh) as started:
        yield started


@pytest.fixture(scope="module")
def verifier(
    issuer: Service, start: Starter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """Two verifier workers on one port, sharing their metrics files, default policy."""
    metrics_dir = tmp_path_factory.mktemp("verifier-metrics")
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with start.workers("verifier", "verifier-logs", VERIFIER_WORKERS, extra) as started:
        started.metrics_dir = metrics_dir
        yield started


@pytest.fixture(scope="module")
def strict_verifier(issuer: Service, start: Starter) -> Iterator[Service]:
    """One verifier worker that accepts codes of its own city only (``cross_city = false``)."""
    logs = "strict-verifier-logs"
    with start.workers("verifier", logs, verifier_cross_city="false") as started:
        yield started


@pytest.fixture(scope="module")
def probe_verifier(issuer: Service, start: Starter) -> Iterator[Service]:
    """A throwaway verifier worker for requests that have broken one before.

    The module's verifiers stay witnesses of "no unhandled error, clean exit" for everything
    else; what the probe answers is asserted by the test that uses it.
    """
    with start.workers("verifier", "probe-verifier-logs", checked=False) as started:
        yield started


# Subjects and codes ----------------------------------------------------------------------------


def new_person_id() -> str:
    """A valid resident ID no other test of the session uses (random birth date and sequence)."""
    born = date.fromordinal(date(1940, 1, 1).toordinal() + secrets.randbelow(60 * 365))
    return make_resident_id("320106", born, secrets.randbelow(1000))


def new_subject(issuer: Service, city: int = CITY) -> str:
    body = {"kind": "person", "id": new_person_id(), "city": city}
    answer = issuer.call("POST", "/v1/subjects", json_body=body, scope="generate")
    assert answer.status == 201, answer.body
    return str(answer.json()["subject"])


def displayed(issuer: Service, subject: str) -> str:
    """The subject's current code, as its app would show it."""
    answer = issuer.call("GET", f"/v1/subjects/{subject}/code", scope="display")
    assert answer.status == 200, answer.body
    return str(answer.json()["token"])


def convert(issuer: Service, subject: str, colour: str, if_version: int) -> None:
    change = {"colour": colour, "reason": "e2e", "if_version": if_version}
    path = f"/v1/subjects/{subject}/status"
    answer = issuer.call("POST", path, json_body=change, scope="convert")
    assert (answer.status, answer.json()["applied"]) == (200, True), answer.body


def stored_keyring(cluster: DevCluster, key_files: Mapping[str, str]) -> Keyring:
    """The keyring the store holds now (authoritative after rotations), opened with the KEK."""
    host, port = cluster.startup_nodes[0]
    with RedisCluster(host=host, port=port, **cluster.redis_py_options()) as client:
        raw = client.get(store_keys.KEYRING_KEY)
    assert isinstance(raw, bytes), "an issuer has stored a keyring"
    return open_keyring(
        SealedKeyring.unpack(raw), load_pepper(Path(key_files["keys_kek_file"])), INTERNATIONAL
    )


def crafted(
    subject: str,
    key: SigningKey,
    iat: int,
    ttl_s: int = DISPLAY_TTL_S,
    colour: Colour = Colour.GREEN,
) -> str:
    """A code the issuer would never hand out in this form, signed with ``key``."""
    claims = Claims(
        exp=iat + ttl_s,
        iat=iat,
        cti=os.urandom(6),
        subject=subject_bytes(subject),
        kind=CodeKind.HEALTH,
        city=CITY,
        colour=colour,
        version=1,
    )
    return encode(claims, key)


def with_signature_flipped(code: str) -> str:
    """The same code with one bit of its signature changed (still a well-formed code)."""
    cose = bytearray(b45decode(code[len(PREFIX) :]))
    cose[-1] ^= 0x01
    return cose_to_token(bytes(cose))


def with_colour(code: str, colour: Colour) -> str:
    """The same code and signature with the colour claim rewritten: what a forger would try."""
    decoded = decode(code)
    payload = _claims_payload(decoded.claims._replace(colour=colour))
    assert len(payload) == len(decoded.payload)
    cose = b45decode(code[len(PREFIX) :]).replace(decoded.payload, payload)
    return cose_to_token(cose)


def time_fields_ok(verdict: dict[str, Any], started: float) -> bool:
    """``checked_at`` is the verifier's clock during the request."""
    return int(started) - 1 <= int(verdict["checked_at"]) <= int(time.time()) + 1


def valid_green(as_of: int, *, degraded: bool = False) -> dict[str, Any]:
    """The verdict on a green health code of ``CITY``, without its time."""
    return {
        "valid": True,
        "reason": "VALID",
        "colour": "green",
        "kind": "health",
        "city": CITY,
        "as_of": as_of,
        "degraded": degraded,
    }


def refusal(reason: str, city: int | None = CITY, kind: str | None = "health") -> dict[str, Any]:
    """A refused verdict, without its time."""
    return {
        "valid": False,
        "reason": reason,
        "colour": None,
        "kind": kind,
        "city": city,
        "as_of": None,
        "degraded": False,
    }


def without_time(verdict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in verdict.items() if k != "checked_at"}


def poll(what: str, check: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> float:
    """Call ``check()`` until it is true; the seconds it took, or AssertionError."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s} s"
        time.sleep(interval_s)
    return time.monotonic() - started


def metric(of: Service, name: str, **labels: str) -> float:
    """The sum of one Prometheus series over every worker of a service."""
    text = of.scrape()
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = set(line[line.index("{") + 1 : line.index("}")].split(","))
            if found == wanted:
                total += float(line.rsplit(" ", 1)[1])
    return total


def worker_counts(of: Service, operation: str) -> list[float]:
    """Requests of ``operation`` answered OK, by worker, from each worker's own metrics file."""
    assert of.metrics_dir is not None
    counts = []
    for proc in of.procs:
        with tempfile.TemporaryDirectory() as alone:
            for file in of.metrics_dir.glob(f"counter_{proc.pid}.db"):
                shutil.copy(file, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
            value = registry.get_sample_value(
                "codeengine_requests_total",
                {"service": "verifier", "operation": operation, "reason": "OK"},
            )
        counts.append(value or 0.0)
    return counts


# Verdicts --------------------------------------------------------------------------------------


def test_a_displayed_code_is_valid_on_every_worker(issuer: Service, verifier: Service) -> None:
    subject = new_subject(issuer)
    code = displayed(issuer, subject)
    for _ in range(6):
        started = time.time()
        verdict = verifier.verify(code)
        assert time_fields_ok(verdict, started), verdict
        assert abs(verdict["as_of"] - verdict["checked_at"]) <= 1, "online: the colour is live"
        assert without_time(verdict) == valid_green(verdict["as_of"])
    # A scanner's line terminator is not part of the code.
    assert verifier.verify(code + "\r\n")["reason"] == "VALID"
    assert subject not in json.dumps(verdict), "the pseudonym is never shown to terminals"


def test_both_workers_answer_on_the_shared_port(issuer: Service, verifier: Service) -> None:
    code = displayed(issuer, new_subject(issuer))
    before = settled(lambda: worker_counts(verifier, "verify"))
    scans = 16  # on fresh connections: all on one worker by chance about once in 30,000 runs
    assert all(verifier.verify(code)["reason"] == "VALID" for _ in range(scans))
    # Each worker writes its counts to its file every second (codeengine.metrics.flush_hot).
    served = eventually(
        lambda: [
            after - earlier
            for after, earlier in zip(worker_counts(verifier, "verify"), before, strict=True)
        ],
        lambda served: sum(served) >= scans,
        HANG_GUARD_S,
    )
    assert sum(served) == scans and all(served), f"scans by worker: {served}"


def test_codes_the_issuer_never_handed_out(
    issuer: Service, verifier: Service, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    subject = new_subject(issuer)
    code = displayed(issuer, subject)
    now = int(time.time())
    key = stored_keyring(cluster, key_files).signing_key_at(now)
    foreign = Keyring.generate_at(now - 10, ED25519, os.urandom).current
    stranger = b64url_encode(os.urandom(12))
    cases = {
        "expired": (crafted(subject, key, now - DISPLAY_TTL_S - SKEW_S - 60), "EXPIRED"),
        "not-yet-valid": (crafted(subject, key, now + SKEW_S + 60), "NOT_YET_VALID"),
        "signature-flipped": (with_signature_flipped(code), "BAD_SIGNATURE"),
        "colour-altered": (with_colour(code, Colour.YELLOW), "BAD_SIGNATURE"),
        "unknown-key": (crafted(subject, foreign, now), "UNKNOWN_KID"),
        "unknown-subject": (crafted(stranger, key, now), "UNKNOWN_SUBJECT"),
    }
    for name, (text, reason) in cases.items():
        assert decode(text).claims.city == CITY, name
        assert without_time(verifier.verify(text)) == refusal(reason), name
    for garbage in ("HELLO", f"{PREFIX}AAAA", code[:-8], ""):
        assert without_time(verifier.verify(garbage)) == refusal("MALFORMED", None, None), garbage
    # Signed with the store's own key but never displayed: it stands on its signature alone.
    accepted = verifier.verify(crafted(subject, key, now - 5))
    assert (accepted["valid"], accepted["reason"], accepted["colour"]) == (True, "VALID", "green")
    assert verifier.verify(code)["reason"] == "VALID", "the displayed code is unharmed"


def test_the_answer_carries_the_live_colour_after_a_convert(
    issuer: Service, verifier: Service
) -> None:
    subject = new_subject(issuer)
    code = displayed(issuer, subject)
    assert verifier.verify(code)["colour"] == "green"
    converted_at = int(time.time())
    convert(issuer, subject, "red", if_version=1)
    verdict = verifier.verify(code)
    assert (verdict["valid"], verdict["reason"], verdict["colour"]) == (True, "VALID", "red")
    assert verdict["as_of"] >= converted_at
    assert decode(code).claims.colour is Colour.GREEN, "the code itself still says green"
    convert(issuer, subject, "yellow", if_version=2)
    assert [verifier.verify(code)["colour"] for _ in range(4)] == ["yellow"] * 4, "every worker"
    fresh = displayed(issuer, subject)
    assert decode(fresh).claims.colour is Colour.YELLOW
    assert verifier.verify(fresh)["colour"] == "yellow"


def test_city_policy(issuer: Service, verifier: Service, strict_verifier: Service) -> None:
    code = displayed(issuer, new_subject(issuer, CITY))
    assert verifier.verify(code, city=OTHER_CITY)["reason"] == "VALID", "province-wide by default"
    refused = strict_verifier.verify(code, city=OTHER_CITY)
    assert without_time(refused) == refusal("WRONG_CITY")
    assert strict_verifier.verify(code, city=CITY)["reason"] == "VALID"
    item = {"code": code, "terminal": "t-1", "city": OUTSIDE_CITY}
    for service in (verifier, strict_verifier):
        answer = service.call("POST", "/v1/verify", json_body=item, scope="verify")
        assert (answer.status, answer.reason) == (400, "UNKNOWN_CITY")


# Revocation ------------------------------------------------------------------------------------


def revocation_list(verifier: Service) -> dict[str, Any]:
    answer = verifier.call("GET", "/v1/revocations")
    assert answer.status == 200, answer.body
    listed: dict[str, Any] = answer.json()
    return listed


def every_worker(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` (a request on a fresh connection) holds for a run of them."""
    return all(check() for _ in range(EVERY_WORKER_RUN))


def refused_everywhere(verifier: Service, code: str) -> None:
    """The code answers REVOKED on every worker once its refresher has read the list.

    Each worker re-reads the list every ``revocation_refresh_s`` (the answer to the revocation
    says so, checked by the callers); when it does is the machine's, so it is waited for.
    Fresh connections land on either worker; a worker that never refreshes fails a run.
    """
    poll(
        "REVOKED on every worker",
        lambda: every_worker(lambda: verifier.verify(code)["reason"] == "REVOKED"),
        HANG_GUARD_S,
    )
    assert without_time(verifier.verify(code)) == refusal("REVOKED")


def test_a_revoked_code_is_refused_by_every_worker_within_a_second(
    issuer: Service, verifier: Service
) -> None:
    code = displayed(issuer, new_subject(issuer))
    bystander = displayed(issuer, new_subject(issuer))
    claims = decode(code).claims
    assert verifier.verify(code)["reason"] == "VALID"
    denied = verifier.call("POST", "/v1/revocations", json_body={"code": code}, scope="verify")
    assert (denied.status, denied.reason) == (403, "FORBIDDEN")
    revoked = verifier.call("POST", "/v1/revocations", json_body={"code": code}, scope="admin")
    assert revoked.status == 200, revoked.body
    assert revoked.json() == {
        "revoked": "code",
        "id": claims.cti.hex(),
        # Listed while a terminal's clock, off by the skew allowance, would still accept it.
        "until": claims.exp + SKEW_S,
        "effective_within_s": REVOCATION_REFRESH_S,
    }
    refused_everywhere(verifier, code)
    assert verifier.verify(bystander)["reason"] == "VALID", "only that code"
    assert claims.cti.hex() in revocation_list(verifier)["codes"]


def test_a_revoked_code_stays_refused_while_the_skew_still_accepts_it(
    issuer: Service, verifier: Service, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    # Expired five seconds ago: still accepted for the clock-skew allowance (30 s) after exp.
    now = int(time.time())
    key = stored_keyring(cluster, key_files).signing_key_at(now)
    code = crafted(new_subject(issuer), key, now - DISPLAY_TTL_S - 5)
    assert verifier.verify(code)["reason"] == "VALID", "within the skew allowance"
    revoked = verifier.call("POST", "/v1/revocations", json_body={"code": code}, scope="admin")
    assert revoked.status == 200, revoked.body
    # A revocation holds as long as the code is accepted.
    refused_everywhere(verifier, code)
    assert decode(code).claims.cti.hex() in revocation_list(verifier)["codes"], (
        "terminals apply the same skew: the list must keep the code while they accept it"
    )


def test_a_revoked_key_refuses_the_codes_it_signed(
    issuer: Service, verifier: Service, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    before = displayed(issuer, new_subject(issuer))
    old_kid = decode(before).kid
    # Revoking the key that signs now would stop the session's issuers: rotate at once first.
    rotated = issuer.call("POST", "/v1/keys/rotate", json_body={"activate_in_s": 0}, scope="admin")
    assert rotated.status == 200, rotated.body
    new_kid = rotated.json()["kid"]
    assert new_kid != b64url_encode(old_kid)
    # The issuer publishes the new key at once; the verifiers read it with the revocations.
    poll(
        "the verifiers' trust list holding the new key",
        lambda: new_kid in [k["kid"] for k in verifier.call("GET", "/v1/trust").json()["keys"]],
        HANG_GUARD_S,
    )
    assert verifier.verify(before)["reason"] == "VALID", "the old key still verifies"

    kid = b64url_encode(old_kid)
    answer = verifier.call("POST", "/v1/revocations", json_body={"kid": kid}, scope="admin")
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "revoked": "key",
        "id": kid,
        "until": None,
        "effective_within_s": REVOCATION_REFRESH_S,
    }
    refused_everywhere(verifier, before)
    assert kid in revocation_list(verifier)["keys"]

    after = displayed(issuer, new_subject(issuer))
    assert b64url_encode(decode(after).kid) == new_kid, "the issuer signs with the new key"
    assert verifier.verify(after)["reason"] == "VALID"
    now = int(time.time())
    signed_now = crafted(
        new_subject(issuer), stored_keyring(cluster, key_files).signing_key_at(now), now
    )
    assert verifier.verify(signed_now)["reason"] == "VALID"


# Store down ------------------------------------------------------------------------------------


def master_owning(cluster: DevCluster, key: str) -> int:
    """The port of the master that serves ``key``'s slot, from CLUSTER NODES."""
    slot = key_slot(key)
    assert cluster.command(cluster.ports[0], "CLUSTER", "KEYSLOT", key).strip() == str(slot)
    for line in cluster.command(cluster.ports[0], "CLUSTER", "NODES").splitlines():
        fields = line.split()
        flags = fields[2].split(",")
        if "master" not in flags or "fail" in flags:
            continue
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated or imported
            low, _, high = part.partition("-")
            if int(low) <= slot <= int(high or low):
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                assert port in cluster.masters()
                return port
    raise AssertionError(f"no master serves slot {slot}")


def test_store_down_gives_a_degraded_answer_within_the_deadline(
    issuer: Service, verifier: Service, cluster: DevCluster
) -> None:
    subject = new_subject(issuer)
    code = displayed(issuer, subject)
    convert(issuer, subject, "red", if_version=1)
    assert verifier.verify(code)["colour"] == "red", "live while the store answers"
    iat = decode(code).claims.iat
    port = master_owning(cluster, store_keys.subject_key(SubjectId(subject)))

    def degraded() -> float:
        labels = {"reason": "VALID", "city": str(CITY), "mode": "degraded"}
        return metric(verifier, "codeengine_verifications_total", **labels)

    degraded_before = settled(degraded)
    # CLIENT PAUSE stops the node answering its clients, the verifier among them, while the
    # cluster bus goes on: no failover starts however slowly the machine runs. Nothing lifts
    # the pause early (CLIENT UNPAUSE waits behind it too), so it lasts a few seconds.
    pause_s = 5
    assert cluster.command(port, "CLIENT", "PAUSE", str(pause_s * 1000), "ALL").strip() == "OK"
    paused_at = time.monotonic()
    verdict, refused = (verifier.verify(text) for text in (code, with_signature_flipped(code)))
    answered_after = time.monotonic() - paused_at
    cluster.wait_healthy()
    # Both answered while the store still held every command back: the read deadline (250 ms),
    # not the store, ended each wait. The bound is the pause, twenty times that deadline.
    assert answered_after < pause_s, f"answered {answered_after:.2f} s into a {pause_s} s pause"
    assert without_time(verdict) == valid_green(iat, degraded=True), (
        "the signed colour, as of the code's issue time"
    )
    assert without_time(refused) == refusal("BAD_SIGNATURE"), "the signature is checked"
    # The worker that answered adds its count to /metrics within a flush interval.
    degraded_after = eventually(degraded, lambda n: n >= degraded_before + 1, HANG_GUARD_S)
    assert degraded_after == degraded_before + 1
    # Each worker's breaker for that shard closes on its own after the pause: one live answer
    # says nothing of the other worker, which may still answer on the signature (green).
    poll(
        "a live answer from every worker",
        lambda: every_worker(lambda: not verifier.verify(code)["degraded"]),
        HANG_GUARD_S,
        0.2,
    )
    live = verifier.verify(code)
    assert (live["degraded"], live["colour"]) == (False, "red")
    # The issuer's workers met the pause too (their background reads and writes) and may hold
    # that shard's breaker open a moment longer: the tests after this one need them live.
    path = f"/v1/subjects/{subject}/code"
    poll(
        "the issuer's every worker reading that shard again",
        lambda: every_worker(lambda: issuer.call("GET", path, scope="display").status == 200),
        HANG_GUARD_S,
        0.2,
    )


# Batches ---------------------------------------------------------------------------------------


def scan(code: str, venue: str = "gate-1") -> dict[str, Any]:
    return {"code": code, "terminal": "gw-1", "venue": venue, "city": CITY}


def test_a_batch_answers_mixed_results_in_order_as_json_and_msgpack(
    issuer: Service, verifier: Service, cluster: DevCluster, key_files: dict[str, str]
) -> None:
    subjects = [new_subject(issuer) for _ in range(3)]
    codes = [displayed(issuer, s) for s in subjects]
    convert(issuer, subjects[1], "red", if_version=1)
    now = int(time.time())
    key = stored_keyring(cluster, key_files).signing_key_at(now)
    items = [
        (codes[0], "VALID", "green"),
        (with_signature_flipped(codes[0]), "BAD_SIGNATURE", None),
        (codes[1], "VALID", "red"),
        (crafted(subjects[2], key, now - 1000), "EXPIRED", None),
        ("HELLO", "MALFORMED", None),
        (codes[2], "VALID", "green"),
        (crafted(subjects[2], key, now + 1000), "NOT_YET_VALID", None),
        (codes[1], "VALID", "red"),
    ]
    expected = [(reason, colour) for _, reason, colour in items]
    body = {"items": [scan(code) for code, _, _ in items]}

    as_json = verifier.call("POST", "/v1/verify/batch", json_body=body, scope="verify")
    assert as_json.status == 200, as_json.body
    assert as_json.headers["Content-Type"].startswith("application/json")
    results = as_json.json()["results"]
    assert [(r["reason"], r["colour"]) for r in results] == expected

    packed = verifier.call(
        "POST",
        "/v1/verify/batch",
        body=msgpack.packb(body),
        headers={"Content-Type": "application/msgpack"},
        scope="verify",
    )
    assert packed.status == 200, packed.body
    assert packed.headers["Content-Type"] == "application/msgpack"
    unpacked = msgpack.unpackb(packed.body)
    assert [(r["reason"], r["colour"]) for r in unpacked["results"]] == expected
    assert [without_time(r) for r in unpacked["results"]] == [without_time(r) for r in results]


def test_batch_refusals(issuer: Service, verifier: Service) -> None:
    item = scan(displayed(issuer, new_subject(issuer)))
    path = "/v1/verify/batch"
    msgpack_type = {"Content-Type": "application/msgpack"}
    cases: list[tuple[bytes, dict[str, str], int, str, str]] = [
        (json.dumps({"items": []}).encode(), {}, 400, "INVALID_FIELD", "1 to 500"),
        (json.dumps({"items": [item] * 501}).encode(), {}, 400, "INVALID_FIELD", "1 to 500"),
        (json.dumps({"items": [item, {"code": 1}]}).encode(), {}, 400, "INVALID_FIELD", "items[1]"),
        (
            json.dumps({"items": [item, {**item, "city": OUTSIDE_CITY}]}).encode(),
            {},
            400,
            "UNKNOWN_CITY",
            "items[1]",
        ),
        (json.dumps({"items": [{**item, "x": 1}]}).encode(), {}, 400, "UNKNOWN_FIELD", "items[0]"),
        (json.dumps({"item": [item]}).encode(), {}, 400, "UNKNOWN_FIELD", ""),
        (b"\xc1", msgpack_type, 400, "BAD_JSON", "msgpack"),
        (msgpack.packb([item]), msgpack_type, 400, "INVALID_FIELD", ""),
        (msgpack.packb({"items": [item]}) + b"\x00", msgpack_type, 400, "BAD_JSON", ""),
    ]
    for body, headers, status, reason, detail in cases:
        sent = {"Content-Type": "application/json", **headers}
        answer = verifier.call("POST", path, body=body, headers=sent, scope="verify")
        assert (answer.status, answer.reason) == (status, reason), body[:60]
        assert answer.headers["Content-Type"].startswith("application/json"), "problems are JSON"
        assert detail in answer.json()["detail"], answer.body


# Scan log --------------------------------------------------------------------------------------


def scan_count(
    cluster: DevCluster, city: int, venue: str | None, from_ms: int = 0, to_ms: int | None = None
) -> ScanCount:
    """The scans the city's stream holds in the window (the verifier's ``GET /v1/scans`` moved
    to the records service, which no process of these tests runs: the stream keeps them all)."""
    key = store_keys.scan_log_key(city)
    host, port = cluster.startup_nodes[0]
    with RedisCluster(host=host, port=port, **cluster.redis_py_options()) as client:
        rows = client.xrange(key, from_ms, "+" if to_ms is None else to_ms)
    entries = []
    for _, fields in rows:
        try:
            entries.append(ScanEntry.from_fields(fields))
        except (CodeEngineError, ValueError):
            pass  # not a scan entry (the log is shared; an odd one is skipped, as it was)
    return count_scans(entries, venue)


def test_the_scan_log_counts_every_workers_scans_without_personal_data(
    issuer: Service, verifier: Service, cluster: DevCluster
) -> None:
    ident = new_person_id()
    answer = issuer.call(
        "POST",
        "/v1/subjects",
        json_body={"kind": "person", "id": ident, "city": CITY},
        scope="generate",
    )
    subject = str(answer.json()["subject"])
    code = displayed(issuer, subject)
    venue = f"venue-{secrets.token_hex(4)}"
    started_ms = int(time.time() * 1000) - 1
    for _ in range(5):
        verifier.verify(code, venue=venue)
    verifier.verify("HELLO", venue=venue)
    verifier.verify(code, venue=f"{venue}-elsewhere")
    batch = {"items": [scan(code, venue), scan(with_signature_flipped(code), venue)]}
    assert verifier.call("POST", "/v1/verify/batch", json_body=batch, scope="verify").status == 200
    expected = {"VALID": 6, "MALFORMED": 1, "BAD_SIGNATURE": 1}

    def counted() -> bool:
        return scan_count(cluster, CITY, venue, started_ms).total >= 8

    poll("every scan in the log", counted, HANG_GUARD_S, 0.1)
    ended_ms = int(time.time() * 1000) + 1
    window = scan_count(cluster, CITY, venue, started_ms, ended_ms)
    assert (window.total, window.by_reason, window.by_colour) == (8, expected, {"green": 6})
    assert scan_count(cluster, CITY, None, started_ms, ended_ms).total >= 9
    assert scan_count(cluster, CITY, venue, 0, 1000).total == 0
    assert scan_count(cluster, OTHER_CITY, venue, started_ms).total == 0

    stream = store_keys.scan_log_key(CITY)
    dump = cluster.command(master_owning(cluster, stream), "XRANGE", stream, "-", "+")
    assert venue in dump and subject in dump, "the log holds the pseudonym"
    assert ident not in dump and ident[6:14] not in dump, "never the identifier"


def test_scan_counts_moved_to_the_records_service(verifier: Service) -> None:
    # Whatever the query, even one the old route refused: the route is gone from here.
    for query in ("", "city=110100", f"city={CITY}&from=2000&to=1000", "city=%C2%B2"):
        answer = verifier.call("GET", f"/v1/scans?{query}", scope="admin")
        assert (answer.status, answer.reason) == (410, "MOVED"), query
        assert answer.json()["moved_to"] == "GET /v1/records/counts"


def test_the_scan_log_survives_a_terminal_name_it_cannot_store(
    issuer: Service, probe_verifier: Service, cluster: DevCluster
) -> None:
    # JSON may carry a lone surrogate ("\ud800"), which has no UTF-8 form. The request may be
    # refused, or answered and its scan logged somehow; either way later scans must be logged.
    code = displayed(issuer, new_subject(issuer))
    venue = f"venue-{secrets.token_hex(4)}"
    odd = {"code": code, "terminal": "t-\ud800", "venue": venue, "city": CITY}
    body = json.dumps(odd).encode()  # ensure_ascii: the surrogate travels as an escape
    headers = {"Content-Type": "application/json"}
    answer = probe_verifier.call("POST", "/v1/verify", body=body, headers=headers, scope="verify")
    assert answer.status in (200, 400), answer.body
    time.sleep(0.3)  # past the writer's next flush (100 ms)
    for _ in range(3):
        probe_verifier.verify(code, venue=venue)

    def counted() -> bool:
        return scan_count(cluster, CITY, venue).total >= 3

    poll("the three scans after it in the log", counted, HANG_GUARD_S, 0.1)


# Lists for terminals ---------------------------------------------------------------------------


def test_trust_and_revocation_lists_are_public_and_serve_offline_terminals(
    issuer: Service, verifier: Service
) -> None:
    code = displayed(issuer, new_subject(issuer))
    trust = verifier.call("GET", "/v1/trust")
    assert trust.status == 200
    assert trust.headers["Content-Type"].startswith("application/jwk-set+json")
    assert trust.headers["Cache-Control"] == "public, max-age=300"
    jwks = trust.json()
    assert decode(code).kid in {b64url_decode(k["kid"]) for k in jwks["keys"]}
    for jwk in jwks["keys"]:
        assert "d" not in jwk, "no private key is ever published"
    issuer_trust = issuer.call("GET", "/v1/trust").json()
    poll(
        "the verifiers' trust list equal to the issuer's",
        lambda: verifier.call("GET", "/v1/trust").json() == issuer_trust,
        HANG_GUARD_S,
        0.1,
    )

    revocations = verifier.call("GET", "/v1/revocations")
    assert revocations.status == 200
    assert revocations.headers["Content-Type"].startswith("application/json")
    assert revocations.headers["Cache-Control"].startswith("public")
    listed = revocations.json()
    assert set(listed) == {"codes", "keys", "as_of"}
    assert abs(listed["as_of"] - time.time()) <= 2

    cached = CachedList.from_documents(trust.body, revocations.body, int(time.time()))
    offline = OfflineVerifier(cached)
    verdict = offline.verify(code)
    assert (verdict.valid, verdict.reason, verdict.colour) == (True, "VALID", Colour.GREEN)
    assert offline.verify(with_signature_flipped(code)).reason == "BAD_SIGNATURE"
    # A code revoked online is refused offline once the terminal fetched the list again.
    assert (
        verifier.call("POST", "/v1/revocations", json_body={"code": code}, scope="admin").status
        == 200
    )
    # The list a terminal fetched, once it names the code: each worker answers from its own
    # copy, refreshed every 0.5 s, so the fetch that saw it is the one to keep.
    fetched: list[bytes] = []

    def fetched_with_code() -> bool:
        answer = verifier.call("GET", "/v1/revocations")
        fetched[:] = [answer.body]
        return decode(code).claims.cti.hex() in answer.json()["codes"]

    poll("the code in the list", fetched_with_code, HANG_GUARD_S)
    offline.update(CachedList.from_documents(trust.body, fetched[0], int(time.time())))
    assert offline.verify(code).reason == "REVOKED"


def test_signed_lists_verify_under_the_anchor_and_every_worker_answers_304_to_any_etag(
    issuer: Service, verifier: Service, key_files: dict[str, str], tmp_path: Path
) -> None:
    code = displayed(issuer, new_subject(issuer))
    anchor_file = anchor_public_path(Path(key_files["keys_trust_anchor_file"]))
    anchors = load_anchors([anchor_file.read_bytes()])
    signed = ("/v1/trust/signed", "/v1/revocations/signed")
    trust_json = verifier.call("GET", "/v1/trust").body

    def current() -> bool:
        answer = verifier.call("GET", signed[0])
        if answer.status != 200:
            return False
        listed = verify_list_at(answer.body, ListKind.TRUST, anchors, int(time.time()))
        return listed.content == trust_json

    poll("the verifier serving the signed trust list", current, HANG_GUARD_S)
    documents = [verifier.call("GET", path) for path in signed]
    for answer in documents:
        assert (answer.status, answer.headers["Content-Type"]) == (200, "application/cose")
    cached = CachedList.from_signed(documents[0].body, documents[1].body, anchors, int(time.time()))
    sdk = OfflineVerifier(cached, anchors=anchors)
    assert sdk.verify(code).reason == "VALID"

    def unchanged_on_every_worker(path: str) -> bool:
        # The tag is the content's: any worker answers 304 to the tag another gave. A list
        # that changed meanwhile (a revoked code's entry expiring) is fetched again.
        etag = verifier.call("GET", path).headers["ETag"]
        return every_worker(
            lambda: verifier.call("GET", path, headers={"If-None-Match": etag}).status == 304
        )

    for path in (*signed, "/v1/trust", "/v1/revocations"):
        poll(
            f"304 from every worker on {path}",
            partial(unchanged_on_every_worker, path),
            HANG_GUARD_S,
        )

    # The terminal's command line takes the lists as fetched.
    files = {"trust.cose": documents[0].body, "revocations.cose": documents[1].body}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    command = [sys.executable, "-m", "verifier.offline", "--anchor", str(anchor_file)]
    command += ["--trust", str(tmp_path / "trust.cose")]
    command += ["--revocations", str(tmp_path / "revocations.cose"), code]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["reason"] == "VALID"
    (tmp_path / "trust.json").write_bytes(trust_json)
    command[command.index(str(tmp_path / "trust.cose"))] = str(tmp_path / "trust.json")
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert json.loads(refused.stdout)["reason"] == "LIST_UNSIGNED"


# Problems --------------------------------------------------------------------------------------


def test_requests_without_a_valid_key_or_scope_are_refused(
    issuer: Service, verifier: Service
) -> None:
    code = displayed(issuer, new_subject(issuer))
    operations: list[tuple[str, str, object, str]] = [
        ("POST", "/v1/verify", scan(code), "admin"),
        ("POST", "/v1/verify/batch", {"items": [scan(code)]}, "admin"),
        ("POST", "/v1/revocations", {"code": code}, "verify"),
        ("GET", f"/v1/scans?city={CITY}", None, "verify"),
    ]
    for method, path, body, wrong_scope in operations:
        anonymous = verifier.call(method, path, json_body=body)
        assert (anonymous.status, anonymous.reason) == (401, "UNAUTHORIZED"), path
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        assert anonymous.headers["Content-Type"].startswith("application/json")
        assert set(anonymous.json()) == {"reason", "detail"}
        forged = verifier.call(method, path, json_body=body, headers={"Authorization": "Bearer x"})
        assert (forged.status, forged.reason) == (401, "UNAUTHORIZED"), path
        basic = verifier.call(method, path, json_body=body, headers={"Authorization": "Basic eA=="})
        assert (basic.status, basic.reason) == (401, "UNAUTHORIZED"), path
        forbidden = verifier.call(method, path, json_body=body, scope=wrong_scope)
        assert (forbidden.status, forbidden.reason) == (403, "FORBIDDEN"), path
    assert verifier.verify(code)["reason"] == "VALID", "the code was not revoked"


def test_malformed_requests_are_refused_with_stable_reasons(
    issuer: Service, verifier: Service
) -> None:
    code = displayed(issuer, new_subject(issuer))
    ok = scan(code)
    json_type = {"Content-Type": "application/json"}
    verify, batch, revoke = "/v1/verify", "/v1/verify/batch", "/v1/revocations"

    def dumps(value: object) -> bytes:
        return json.dumps(value).encode()

    # Over-long codes: a single verify takes the longest scanned text (a SMART Health Card's
    # chunks), a batch item the engine's own codes only.
    too_long = {**ok, "code": "A" * (MAX_SCAN_CHARS + 3)}
    too_long_in_batch = {**ok, "code": "A" * (MAX_TOKEN_CHARS + 3)}
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        (verify, b"{nope", json_type, 400, "BAD_JSON"),
        (verify, b"\xff\xfe", json_type, 400, "BAD_JSON"),
        (verify, b"", json_type, 400, "BAD_JSON"),
        (verify, b"[]", json_type, 400, "INVALID_FIELD"),
        (verify, dumps({**ok, "name": "x"}), json_type, 400, "UNKNOWN_FIELD"),
        (verify, dumps({"code": code, "city": CITY}), json_type, 400, "MISSING_FIELD"),
        (verify, dumps({**ok, "city": str(CITY)}), json_type, 400, "INVALID_FIELD"),
        (verify, dumps({**ok, "city": True}), json_type, 400, "INVALID_FIELD"),
        (verify, dumps({**ok, "city": OUTSIDE_CITY}), json_type, 400, "UNKNOWN_CITY"),
        (verify, dumps(too_long), json_type, 400, "INVALID_FIELD"),
        (batch, dumps({"items": [too_long_in_batch]}), json_type, 400, "INVALID_FIELD"),
        (verify, dumps({**ok, "terminal": "t" * 65}), json_type, 400, "INVALID_FIELD"),
        (verify, dumps(ok), {"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (verify, dumps(ok), {}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (verify, b"[" * (BATCH_BODY_LIMIT + 10), json_type, 413, "BODY_TOO_LARGE"),
        (revoke, dumps({}), json_type, 400, "INVALID_FIELD"),
        (revoke, dumps({"code": code, "kid": "AAAAAAAAAAA"}), json_type, 400, "INVALID_FIELD"),
        (revoke, dumps({"code": "HELLO"}), json_type, 400, "INVALID_FIELD"),
        (revoke, dumps({"kid": "not base64!"}), json_type, 400, "INVALID_FIELD"),
        (revoke, dumps({"kid": "AAAAAAAA"}), json_type, 400, "INVALID_FIELD"),
        (revoke, dumps({"kid": "AAAAAAAAAAB"}), json_type, 400, "INVALID_FIELD"),
        (revoke, dumps({"kid": 7}), json_type, 400, "INVALID_FIELD"),
    ]
    scopes = {verify: "verify", batch: "verify", revoke: "admin"}
    for path, body, headers, status, reason in cases:
        answer = verifier.call("POST", path, body=body, headers=headers, scope=scopes[path])
        assert (answer.status, answer.reason) == (status, reason), (path, body[:50], headers)
        assert answer.headers["Content-Type"].startswith("application/json")
    nowhere = verifier.call("GET", "/v1/nowhere")
    assert (nowhere.status, nowhere.reason) == (404, "NOT_FOUND")
    wrong_method = verifier.call("GET", "/v1/verify", scope="verify")
    assert (wrong_method.status, wrong_method.reason) == (405, "METHOD_NOT_ALLOWED")
    assert "POST" in wrong_method.headers["Allow"]
    assert verifier.verify(code)["reason"] == "VALID", "no refused request revoked anything"


# Metrics and the spec --------------------------------------------------------------------------


def test_metrics_count_every_workers_requests(issuer: Service, verifier: Service) -> None:
    code = displayed(issuer, new_subject(issuer))
    labels = {"operation": "verify", "reason": "OK", "service": "verifier"}
    before = settled(lambda: metric(verifier, "codeengine_requests_total", **labels))
    for _ in range(8):
        verifier.verify(code)
    # /metrics is not on the public port: the catch-all answers it like any unknown path.
    assert verifier.call("GET", "/metrics").status == 404
    # Either worker's /metrics counts both workers' requests, the other's within a second.
    counted = eventually(
        lambda: metric(verifier, "codeengine_requests_total", **labels),
        lambda total: total >= before + 8,
        HANG_GUARD_S,
    )
    assert counted == before + 8
    for _ in range(3):
        assert metric(verifier, "codeengine_requests_total", **labels) == before + 8


def test_openapi_spec_is_served(verifier: Service) -> None:
    answer = verifier.call("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == json.loads((DOCS / "verifier.json").read_text())


def test_no_request_was_answered_with_500(verifier: Service) -> None:
    text = verifier.scrape()
    totals = [line for line in text.splitlines() if line.startswith("codeengine_requests_total{")]
    assert totals, "the module's requests were counted"
    assert not [line for line in totals if 'reason="INTERNAL"' in line]
    assert "unhandled error" not in verifier.log_text()


# The ops kit against live services ----------------------------------------------------------


def test_every_metric_the_dashboard_and_alerts_use_is_exposed(
    issuer: Service, verifier: Service
) -> None:
    """Every metric name in the Grafana dashboard's queries and the alert rules is a family
    that the live issuer or verifier declares on its management port.

    Families, not series: a labelled metric has series only once something was counted (a
    breaker that never opened, a city lease this issuer does not hold), and with several
    workers (the verifier here) not even its family shows before that. The single-worker issuer
    renders its whole registry, so every family the code declares shows there; what only a
    verifier exposes is exercised first so that its multiprocess files hold it.
    """
    code = displayed(issuer, new_subject(issuer))
    assert verifier.verify(code)["reason"] == "VALID"
    # The verdict reaches the verifier's files within a flush (a second or two).
    verified = eventually(
        lambda: declared(verifier.scrape()),
        lambda families: "codeengine_verifications_total" in families,
        HANG_GUARD_S,
    )
    issued = declared(issuer.scrape())
    dashboard, alerts = metric_names(dashboard_exprs()), metric_names(alert_exprs())
    assert len(dashboard) >= 15 and len(alerts) >= 7, "the parse found the queries"
    # The records service's own are checked against a live records service
    # (tests/e2e/test_records_opskit.py).
    records = records_families()
    used = {name for name in dashboard | alerts if not records_service_metric(name, records)}
    missing = sorted(name for name in used if not exposed(name, {**issued, **verified}))
    assert not missing, f"used by the dashboard or the alerts, exposed by neither: {missing}"
    # What a verifier alone reports, from its own multiprocess rendering.
    for name in (
        "codeengine_trust_list_age_seconds",
        "codeengine_verifications_total",
        "codeengine_scans_logged_total",
        "codeengine_request_duration_seconds_bucket",
        "codeengine_build_info",
    ):
        assert exposed(name, verified), name
    assert exposed("codeengine_signing_key_remaining_seconds", issued)
    # A rename that left a user behind shows here too: the old names are gone.
    assert not {"codeengine_request_seconds", "codeengine_store_seconds"} & (issued.keys() | used)
