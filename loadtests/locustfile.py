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

Every response is checked: status, content type and the fields the API promises. Anything else
is a failure. The credentials file is the JSON the services read: ``{"clients": [{"scopes":
[...], "key": ...}]}``, with the first client holding each scope used.
"""

from __future__ import annotations

import json
import os
import random
from datetime import date, timedelta
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

    def generate(self) -> dict[str, Any] | None:
        """生码: a new person; the subject, or None after recording a failure."""
        body = {"kind": "person", "id": resident_id(self.rng), "city": self.rng.choice(CITIES)}
        with self.client.post(
            "/v1/subjects", json=body, headers=self._headers("generate"),
            name="generate", catch_response=True,
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
        with self.client.get(
            f"/v1/subjects/{subject['subject']}/code", headers=self._headers("display"),
            name="display", catch_response=True,
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
                "city": self.rng.choice(CITIES)}  # fmt: skip
        with self.client.post(
            f"{self.verifier}/v1/verify", json=body, headers=self._headers("verify"),
            name="verify", catch_response=True,
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
            body = {"colour": self.rng.choice(COLOURS), "reason": "load test",
                    "if_version": subject["version"]}  # fmt: skip
            with self.client.post(
                f"/v1/subjects/{subject['subject']}/status", json=body,
                headers=self._headers("convert"), name="convert", catch_response=True,
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
