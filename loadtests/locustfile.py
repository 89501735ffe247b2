"""Locust scenarios for codeengine: black-box HTTP only (this file imports nothing of the engine).

    locust -f loadtests/locustfile.py DailyMixUser --host http://ISSUER:8080
    # with LOADTEST_VERIFIER=http://VERIFIER:8081 and LOADTEST_CREDENTIALS=credentials.json

User classes:
* ``DailyMixUser``: the daily mix. Display 50, verify 45, generate 3, convert 2 (weights).
  Every scan at a gate follows a display on a phone, and people also open their code without
  being scanned, so displays outnumber verifications a little. A person is generated once,
  not daily, so generations are few. Colours change mostly in bulk imports from the
  topic library, which are not HTTP requests here; single conversions (appeals, ops) are rare.
* ``DisplayUser``, ``VerifyUser``, ``GenerateUser``, ``ConvertUser``: one operation each, to
  measure it alone.
* ``FailoverDrillUser``: the daily mix against the city table's endpoints (``--host`` is
  ignored), switching to a city's backup when its primary fails and back when it recovers,
  and logging every acknowledged status change for the drill's loss check. See the class.

Every response is checked: status, content type and the fields the API promises. Anything else
is a failure. The credentials file is the JSON the services read: ``{"clients": [{"scopes":
[...], "key": ...}]}``, with the first client holding each scope used.
"""

from __future__ import annotations

import json
import os
import random
import time
import tomllib
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, task
from locust.exception import StopUser

CITIES = [320100, 320200, 320300, 320400, 320500, 320600, 320700, 320800, 320900, 321000,
          321100, 321200, 321300]  # fmt: skip
COLOURS = ("green", "yellow", "red", "grey")
SUBJECTS_PER_USER = 3
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def resident_id(rng: random.Random) -> str:
    """A synthetic resident ID with a valid GB 11643 check digit (Jiangsu region codes)."""
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 60))
    body = f"{rng.choice(CITIES) + rng.randrange(1, 20):06d}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + _CHECK[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def _keys() -> dict[str, str]:
    path = os.environ.get("LOADTEST_CREDENTIALS", "var/dev-credentials.json")
    with open(path, encoding="utf-8") as handle:
        clients = json.load(handle)["clients"]
    found: dict[str, str] = {}
    for client in clients:
        for scope in client["scopes"]:
            found.setdefault(scope, client["key"])
    return found


KEYS = _keys()


class CodeEngineUser(FastHttpUser):
    """What every scenario shares: keys, a few subjects of its own, response checks."""

    abstract = True
    wait_time = between(0.0, 0.05)
    verifier = os.environ.get("LOADTEST_VERIFIER", "http://127.0.0.1:8081")

    def on_start(self) -> None:
        self.rng = random.Random()
        self.subjects: list[dict[str, Any]] = []
        for _ in range(SUBJECTS_PER_USER):
            subject = self.generate()
            if subject is None:
                raise StopUser
            self.subjects.append(subject)

    def _headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[scope]}"}

    def base_url(self, service: str) -> str:
        """Where ``issuer`` or ``verifier`` requests go now."""
        return (self.host or "") if service == "issuer" else self.verifier

    def _request(self, service: str, method: str, path: str, name: str, **kwargs: Any) -> Any:
        """One request as a response context (``with``), checked by the caller."""
        url = self.base_url(service) + path
        return self.client.request(method, url, name=name, catch_response=True, **kwargs)

    def scan_city(self) -> int:
        """The city of the gate that scans."""
        return self.rng.choice(CITIES)

    def acknowledged(self, subject: str, answer: dict[str, Any]) -> None:
        """A status change the issuer acknowledged (the drill scenario logs these)."""

    def generate(self) -> dict[str, Any] | None:
        """生码: a new person; the subject, or None after recording a failure."""
        body = {"kind": "person", "id": resident_id(self.rng), "city": self.rng.choice(CITIES)}
        with self._request(
            "issuer", "POST", "/v1/subjects", "generate", json=body,
            headers=self._headers("generate"),
        ) as response:  # fmt: skip
            answer = _json(response)
            if response.status_code not in (200, 201) or answer is None:
                response.failure(f"generate answered {response.status_code}")
                return None
            if len(answer.get("subject", "")) != 16 or answer.get("colour") not in COLOURS:
                response.failure("generate answer lacks subject or colour")
                return None
            response.success()
            return {"subject": answer["subject"], "version": answer["version"], "token": None}

    def display(self) -> None:
        """亮码: the current code of one of this user's subjects."""
        subject = self.rng.choice(self.subjects)
        with self._request(
            "issuer", "GET", f"/v1/subjects/{subject['subject']}/code", "display",
            headers=self._headers("display"),
        ) as response:  # fmt: skip
            answer = _json(response)
            if response.status_code != 200 or answer is None:
                response.failure(f"display answered {response.status_code}")
                return
            token = answer.get("token", "")
            if not token.startswith("CE1:") or answer.get("colour") not in COLOURS:
                response.failure("display answer lacks a CE1 token or a colour")
                return
            if (
                not answer.get("issued_at", 0)
                < answer.get("refresh_at", 0)
                < answer.get("expires_at", 0)
            ):
                response.failure("display times out of order")
                return
            subject["token"], subject["colour"] = token, answer["colour"]
            response.success()

    def verify(self) -> None:
        """扫码/验码: scan one of this user's displayed codes at a gate."""
        shown = [s for s in self.subjects if s["token"]]
        if not shown:
            self.display()
            return
        subject = self.rng.choice(shown)
        body = {"code": subject["token"], "terminal": "load-gate", "venue": "load-venue",
                "city": self.scan_city()}  # fmt: skip
        with self._request(
            "verifier", "POST", "/v1/verify", "verify", json=body,
            headers=self._headers("verify"),
        ) as response:  # fmt: skip
            answer = _json(response)
            if response.status_code != 200 or answer is None:
                response.failure(f"verify answered {response.status_code}")
                return
            # A code replaced twice since this user saw it may have expired: that is a valid
            # answer too, but any other refusal of a code the issuer handed out is a failure.
            if not answer.get("valid") and answer.get("reason") != "EXPIRED":
                response.failure(f"verify refused a displayed code: {answer.get('reason')}")
                return
            if answer.get("valid") and answer.get("colour") not in COLOURS:
                response.failure("verify answer lacks a colour")
                return
            response.success()

    def convert(self) -> None:
        """赋码/转码: set one subject's colour (ops, appeals); a stale version retries once."""
        subject = self.rng.choice(self.subjects)
        for _ in range(2):
            # An operation id makes a resend (after a timeout, or on the backup) a no-op.
            body = {"colour": self.rng.choice(COLOURS), "reason": "load test",
                    "if_version": subject["version"], "op_id": uuid.uuid4().hex}  # fmt: skip
            with self._request(
                "issuer", "POST", f"/v1/subjects/{subject['subject']}/status", "convert",
                json=body, headers=self._headers("convert"),
            ) as response:  # fmt: skip
                answer = _json(response)
                if response.status_code == 409 and answer and "current_version" in answer:
                    subject["version"] = answer["current_version"]
                    response.success()
                    continue
                if response.status_code != 200 or answer is None or "version" not in answer:
                    response.failure(f"convert answered {response.status_code}")
                    return
                subject["version"] = answer["version"]
                response.success()
                self.acknowledged(subject["subject"], answer)
                return


def _json(response: Any) -> dict[str, Any] | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


class DailyMixUser(CodeEngineUser):
    """The daily mix: display 50, verify 45, generate 3, convert 2."""

    @task(50)
    def show(self) -> None:
        self.display()

    @task(45)
    def scan(self) -> None:
        self.verify()

    @task(3)
    def enrol(self) -> None:
        self.generate()

    @task(2)
    def change(self) -> None:
        self.convert()


class DisplayUser(CodeEngineUser):
    """Display only."""

    @task
    def show(self) -> None:
        self.display()


class VerifyUser(CodeEngineUser):
    """Verify only (after one display per subject)."""

    @task
    def scan(self) -> None:
        self.verify()


class GenerateUser(CodeEngineUser):
    """Generate only."""

    @task
    def enrol(self) -> None:
        self.generate()


class ConvertUser(CodeEngineUser):
    """Convert only."""

    @task
    def change(self) -> None:
        self.convert()


# The failover drill ------------------------------------------------------------------------
#
# What an app backend or terminal does when its city's primary fails: it switches to the
# city's backup at once and resends the request there (reads, and writes carrying an op_id,
# are safe to resend), probes the primary in the background, and switches back only after
# several probes in a row succeed, so that a flapping primary does not bounce traffic.

FAILOVER_STATUSES = frozenset({0, 502, 503, 504})
"""No answer at all, or an answer that says this endpoint cannot serve now."""
PROBE_INTERVAL_S = float(os.environ.get("LOADTEST_PROBE_INTERVAL_S", "2"))
PROBES_TO_RETURN = 3


def load_city_table(directory: str) -> list[dict[str, Any]]:
    """The city files (``configs/cities/*.toml``): code, weight and both environments."""
    cities = []
    for path in sorted(Path(directory).glob("*.toml")):
        with path.open("rb") as handle:
            city = tomllib.load(handle)
        cities.append(city)
    if not cities:
        raise RuntimeError(f"no city files in {directory}")
    return cities


class _Route:
    """One service of one city: primary and backup, which is active, when to probe."""

    def __init__(self, primary: str, backup: str) -> None:
        self.urls = (primary.rstrip("/"), backup.rstrip("/"))
        self.active = 0
        self.good_probes = 0
        self.next_probe = 0.0

    def url(self) -> str:
        return self.urls[self.active]

    def other(self) -> str:
        return self.urls[1 - self.active]


class FailoverDrillUser(DailyMixUser):
    """The daily mix (its tasks) against one city's primary, failing over to its backup and back.

    ``LOADTEST_CITIES`` (default ``configs/cities``) is the city table; ``LOADTEST_CITY`` pins
    the city a drill targets, else each user picks one weighted by residents.
    ``LOADTEST_OPLOG`` names a file that receives one JSON line per acknowledged status change
    (subject, version, colour), so that a drill can check afterwards that none was lost.
    Each switch is reported as a ``FAILOVER`` request named by service and direction; a request
    that failed on one endpoint and succeeded on the other counts once, as a success.
    """

    cities = load_city_table(os.environ.get("LOADTEST_CITIES", "configs/cities"))
    oplog_path = os.environ.get("LOADTEST_OPLOG")

    def on_start(self) -> None:
        pinned = os.environ.get("LOADTEST_CITY")
        rng = random.Random()
        if pinned:
            matches = [c for c in self.cities if str(c["code"]) == pinned]
            if not matches:
                raise RuntimeError(f"LOADTEST_CITY {pinned} is not in the city table")
            city = matches[0]
        else:
            weights = [c["residents_millions"] for c in self.cities]
            city = rng.choices(self.cities, weights=weights)[0]
        self.city = int(city["code"])
        self.routes = {
            service: _Route(city["primary"][service], city["backup"][service])
            for service in ("issuer", "verifier")
        }
        self.oplog = None
        if self.oplog_path:
            self.oplog = open(self.oplog_path, "a", encoding="utf-8")  # closed in on_stop
        super().on_start()

    def on_stop(self) -> None:
        if self.oplog is not None:
            self.oplog.close()

    def base_url(self, service: str) -> str:
        return self.routes[service].url()

    def scan_city(self) -> int:
        return self.city

    def acknowledged(self, subject: str, answer: dict[str, Any]) -> None:
        if self.oplog is not None:
            line = {"subject": subject, "version": answer["version"], "colour": answer["colour"],
                    "at": time.time()}  # fmt: skip
            self.oplog.write(json.dumps(line) + "\n")
            self.oplog.flush()

    def _switch(self, service: str, route: _Route, why: str) -> None:
        before = "primary" if route.active == 0 else "backup"
        route.active = 1 - route.active
        route.good_probes = 0
        route.next_probe = time.monotonic() + PROBE_INTERVAL_S
        after = "primary" if route.active == 0 else "backup"
        self.environment.events.request.fire(
            request_type="FAILOVER", name=f"{service} {before}->{after}", response_time=0,
            response_length=0, exception=None, context={"why": why},
        )  # fmt: skip

    def _probe_primary(self, service: str, route: _Route) -> None:
        """While on the backup, probe the primary's /readyz; return after a run of successes."""
        now = time.monotonic()
        if route.active == 0 or now < route.next_probe:
            return
        route.next_probe = now + PROBE_INTERVAL_S
        # Not entered as a context: a probe is not a request of the mix and records nothing.
        probe = self.client.request("GET", route.urls[0] + "/readyz", catch_response=True)
        route.good_probes = route.good_probes + 1 if probe.status_code == 200 else 0
        if route.good_probes >= PROBES_TO_RETURN:
            self._switch(service, route, "primary ready again")

    def _request(self, service: str, method: str, path: str, name: str, **kwargs: Any) -> Any:
        route = self.routes[service]
        self._probe_primary(service, route)
        attempt = self.client.request(
            method, route.url() + path, name=name, catch_response=True, **kwargs
        )
        if attempt.status_code not in FAILOVER_STATUSES:
            return attempt
        # The attempt is dropped unrecorded (its context is never entered): the resend on the
        # other endpoint is what the user sees, and the switch is recorded instead.
        self._switch(service, route, f"{name} answered {attempt.status_code}")
        return self.client.request(
            method, route.url() + path, name=name, catch_response=True, **kwargs
        )
