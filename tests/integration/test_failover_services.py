"""The typed failover clients against the real issuer and verifier apps on the session cluster.

Each city endpoint here is a real service app behind a real HTTP server (the apps' own
factories, the cluster with TLS and ACL); the client under test reaches them by URL through a
city table entry that names them. Load refusals come from the apps' real admission check
(``codeengine.web.admission``), switched on and off by the test; the client's time and jitter
are the test's, so every wait is asserted exactly and none is slept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from codeengine.code.cities import City, Endpoints, load_cities
from codeengine.code.fencing import Role
from codeengine.code.model import CityCode, CodeKind, Colour
from codeengine.settings import Settings
from codeengine.web.admission import ADMISSION, Admission
from failover.client import ClientOptions
from failover.errors import (
    BadCheckDigit,
    Forbidden,
    InvalidIdentifier,
    MalformedCode,
    Overloaded,
    RateLimited,
    Unauthorized,
    UnknownSubject,
    Unreachable,
    VersionConflict,
)
from failover.results import Scan
from failover.services import IssuerClient, VerifierClient
from issuer.app import create_app as create_issuer
from tests.integration.apps import Clock, dev_keys, new_person_id
from verifier.app import create_app as create_verifier

pytestmark = pytest.mark.cluster

CITY = CityCode(320100)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
REFUSED = "http://127.0.0.1:9"
"""An address nothing listens on: an endpoint that is down."""


class ClientTime:
    """The client's clock and sleep: time moves only when the client sleeps, and each sleep
    first runs the test's ``on_sleep`` (what happens in the world meanwhile)."""

    def __init__(self, on_sleep: Callable[[], None] = lambda: None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()
        await asyncio.sleep(0)


def draws(*values: float) -> Callable[[], float]:
    """A random source that gives ``values`` in order (and fails the test if asked for more)."""
    source: Iterator[float] = iter(values)
    return lambda: next(source)


@dataclasses.dataclass
class Endpoint:
    """One real service app behind a real server: its URL and its admission control."""

    url: str
    admission: Admission


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[Endpoint]:
    admission = app[ADMISSION] = Admission(max_in_flight=0)
    async with TestServer(app) as server:
        yield Endpoint(str(server.make_url("")).rstrip("/"), admission)


def city_of(primary: tuple[str, str], backup: tuple[str, str] = (REFUSED, REFUSED)) -> City:
    """The city table's 320100 with these (issuer, verifier) URLs for its two endpoints."""
    return dataclasses.replace(
        load_cities()[CITY], primary=Endpoints(*primary), backup=Endpoints(*backup)
    )


@asynccontextmanager
async def issuers(settings: Settings, count: int) -> AsyncIterator[list[Endpoint]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(serving(create_issuer(settings, clock=Clock())))
            for _ in range(count)
        ]


def test_generate_display_convert_and_verify_return_the_answers_as_values(
    settings: Settings, run: Any
) -> None:
    keys = dev_keys(settings)

    async def scenario() -> None:
        async with (
            serving(create_issuer(settings, clock=Clock())) as issuer,
            serving(create_verifier(settings, clock=Clock())) as verifier,
            aiohttp.ClientSession() as session,
        ):
            city = city_of((issuer.url, verifier.url))
            generating = IssuerClient(city, session, api_key=keys["generate"])
            displaying = IssuerClient(city, session, api_key=keys["display"])
            converting = IssuerClient(city, session, api_key=keys["convert"])
            scanning = VerifierClient(city, session, api_key=keys["verify"])
            person = new_person_id()

            made = await generating.generate("person", person, int(CITY))
            assert (made.kind, made.city, made.version, made.created) == (
                CodeKind.HEALTH,
                CITY,
                1,
                True,
            )
            again = await generating.generate("person", person, int(CITY))
            assert (again.subject, again.created) == (made.subject, False)

            shown = await displaying.display(made.subject)
            assert shown.token.startswith("CE1:") and shown.colour is made.colour
            assert (shown.kind, shown.city) == (CodeKind.HEALTH, CITY)
            assert shown.issued_at < shown.refresh_at < shown.expires_at
            png = await displaying.display_image(made.subject, "png")
            assert png.startswith(b"\x89PNG\r\n\x1a\n")

            verdict = await scanning.verify(shown.token, terminal="gate-1", city=int(CITY))
            assert (verdict.valid, verdict.reason, verdict.colour) == (True, "VALID", made.colour)
            assert verdict.check() is verdict and not verdict.degraded

            red = await converting.convert(
                made.subject, Colour.RED, reason="close contact", if_version=1, op_id="t-1"
            )
            assert (red.colour, red.shows, red.version, red.applied) == (
                Colour.RED,
                Colour.RED,
                2,
                True,
            )
            resent = await converting.convert(
                made.subject, "red", reason="close contact", if_version=1, op_id="t-1"
            )
            assert (resent.version, resent.applied, resent.op_id) == (2, False, "t-1")
            made_up = await converting.convert(
                made.subject, Colour.YELLOW, reason="review", if_version=2
            )
            assert made_up.applied and len(made_up.op_id) == 32, "an op_id is made when none given"

            # The same code now answers the subject's live colour, alone and in a batch.
            scans = [
                Scan(shown.token, "gate-1", int(CITY), "hall"),
                Scan("CE1:X", "gate-1", int(CITY)),
            ]
            live, garbage = await scanning.verify_batch(scans)
            assert (live.valid, live.colour) == (True, Colour.YELLOW)
            assert (garbage.valid, garbage.reason) == (False, "MALFORMED")
            with pytest.raises(MalformedCode) as refused:
                garbage.check()
            assert (refused.value.status, refused.value.reason) == (200, "MALFORMED")

    run(scenario())


def test_each_refusal_raises_the_class_of_its_reason_code(settings: Settings, run: Any) -> None:
    keys = dev_keys(settings)

    async def scenario() -> None:
        async with (
            serving(create_issuer(settings, clock=Clock())) as issuer,
            aiohttp.ClientSession() as session,
        ):
            city = city_of((issuer.url, REFUSED))

            def client(scope: str | None) -> IssuerClient:
                return IssuerClient(city, session, api_key=None if scope is None else keys[scope])

            made = await client("generate").generate("person", new_person_id(), int(CITY))
            converting = client("convert")
            await converting.convert(made.subject, "red", reason="contact", if_version=1)
            with pytest.raises(VersionConflict) as stale:
                await converting.convert(made.subject, "green", reason="cleared", if_version=1)
            assert (stale.value.status, stale.value.current_version) == (409, 2)
            assert stale.value.endpoint is Role.PRIMARY

            with pytest.raises(UnknownSubject) as unknown:
                await client("display").display(secrets.token_urlsafe(12), request_id="app-7:a1")
            assert (unknown.value.status, unknown.value.reason) == (404, "UNKNOWN_SUBJECT")
            # The id the app gave is the one its attempts carried and the services logged.
            assert unknown.value.request_id == "app-7:a1"
            assert "request id app-7:a1" in str(unknown.value)

            valid = new_person_id()
            wrong_digit = valid[:-1] + ("0" if valid[-1] != "0" else "1")
            with pytest.raises(BadCheckDigit) as bad:
                await client("generate").generate("person", wrong_digit, int(CITY))
            assert isinstance(bad.value, InvalidIdentifier) and bad.value.status == 422
            assert wrong_digit not in str(bad.value) and wrong_digit[:17] not in str(bad.value)

            with pytest.raises(Unauthorized) as anonymous:
                await client(None).display(made.subject)
            assert anonymous.value.status == 401
            made_id = anonymous.value.request_id
            assert made_id is not None and re.fullmatch(UUID, made_id), "one is made if none given"
            with pytest.raises(Forbidden) as scope:
                await client("display").generate("person", new_person_id(), int(CITY))
            assert (scope.value.status, scope.value.reason) == (403, "FORBIDDEN")

    run(scenario())


def test_an_overloaded_city_is_waited_out_for_its_retry_after_plus_the_drawn_jitter(
    settings: Settings, run: Any
) -> None:
    keys = dev_keys(settings)

    async def scenario() -> None:
        async with issuers(settings, 2) as (primary, backup), aiohttp.ClientSession() as session:
            primary.admission.lagging = backup.admission.lagging = True

            def calm_down() -> None:
                primary.admission.lagging = backup.admission.lagging = False

            clock = ClientTime(on_sleep=calm_down)
            options: ClientOptions = {
                "clock": clock,
                "sleep": clock.sleep,
                "random": draws(0.5),
                "api_key": keys["generate"],
            }
            city = city_of((primary.url, REFUSED), (backup.url, REFUSED))
            client = IssuerClient(city, session, **options)
            made = await client.generate("person", new_person_id(), int(CITY))
            # Both endpoints refused (Retry-After: 1) before any work; the client waited the
            # Retry-After plus half of the first retry's jitter range (0.1 s), once.
            assert clock.sleeps == [pytest.approx(1.0 + 0.5 * 0.1)]
            assert (primary.admission.refused, backup.admission.refused) == (1, 1)
            assert made.created and client.active is Role.PRIMARY

    run(scenario())


def test_a_retry_after_past_the_budget_raises_overloaded_at_once_with_its_wait(
    settings: Settings, run: Any
) -> None:
    keys = dev_keys(settings)

    async def scenario() -> None:
        async with issuers(settings, 2) as (primary, backup), aiohttp.ClientSession() as session:
            primary.admission.lagging = backup.admission.lagging = True
            clock = ClientTime()
            city = city_of((primary.url, REFUSED), (backup.url, REFUSED))
            client = IssuerClient(
                city,
                session,
                api_key=keys["display"],
                budget_s=0.8,
                clock=clock,
                sleep=clock.sleep,
                random=draws(),
            )
            with pytest.raises(Overloaded) as refused:
                await client.display(secrets.token_urlsafe(12))
            assert (refused.value.status, refused.value.retry_after_s) == (503, 1.0)
            assert refused.value.endpoint is Role.BACKUP
            assert clock.sleeps == [], "a wait past the budget is not waited"
            assert (primary.admission.refused, backup.admission.refused) == (1, 1)

    run(scenario())


def test_a_city_whose_endpoints_both_refuse_connections_raises_unreachable_within_budget(
    run: Any,
) -> None:
    async def scenario() -> None:
        clock = ClientTime()
        async with aiohttp.ClientSession() as session:
            client = VerifierClient(
                city_of((REFUSED, REFUSED), (REFUSED, REFUSED)),
                session,
                budget_s=1.0,
                clock=clock,
                sleep=clock.sleep,
                random=lambda: 0.5,
            )
            with pytest.raises(Unreachable) as down:
                await client.verify("CE1:X", terminal="gate-1", city=int(CITY))
            assert isinstance(down.value.__cause__, aiohttp.ClientConnectorError)
            assert down.value.request_id and down.value.request_id in str(down.value)
            # Half of each retry's jitter range (0.1 s doubling), then at most half of what is
            # left of the budget, until less than its margin (0.05 s) is left.
            assert clock.sleeps[:3] == [pytest.approx(0.05), pytest.approx(0.1), pytest.approx(0.2)]
            assert len(clock.sleeps) == 7 and 0.95 <= sum(clock.sleeps) < 1.0

    run(scenario())


def test_a_rate_limited_call_waits_its_retry_after_and_goes_again(
    settings: Settings, run: Any, tmp_path: Path
) -> None:
    """The rate limiter keeps real time (``time.monotonic``), so this test's client does too:
    it sleeps for real, and the bucket has refilled when it asks again, however late that is."""
    slow_key = secrets.token_urlsafe(24)
    document = json.loads(Path(settings.keys.credentials_file).read_text())
    document["clients"].append(
        {"client": "slow-display", "scopes": ["display"], "rate_per_s": 1, "key": slow_key}
    )
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps(document))
    limited = dataclasses.replace(
        settings, keys=dataclasses.replace(settings.keys, credentials_file=str(credentials))
    )
    keys = dev_keys(settings)

    async def scenario() -> None:
        async with (
            serving(create_issuer(limited, clock=Clock())) as issuer,
            aiohttp.ClientSession() as session,
        ):
            city = city_of((issuer.url, REFUSED))
            made = await IssuerClient(city, session, api_key=keys["generate"]).generate(
                "person", new_person_id(), int(CITY)
            )
            slept: list[float] = []

            async def sleep(seconds: float) -> None:
                slept.append(seconds)
                await asyncio.sleep(seconds)

            client = IssuerClient(
                city, session, api_key=slow_key, sleep=sleep, random=draws(0.25), budget_s=30.0
            )
            await client.display(made.subject)  # the bucket's one token
            started = time.monotonic()
            shown = await client.display(made.subject)
            assert shown.token.startswith("CE1:")
            assert slept == [pytest.approx(1.0 + 0.25 * 0.1)], "Retry-After: 1, plus jitter"
            assert time.monotonic() - started >= 1.0
            assert client.attempt_log[("primary", "429 RATE_LIMITED")] == 1
            # Past the budget, the refusal is raised with the wait it named.
            hasty = IssuerClient(city, session, api_key=slow_key, budget_s=0.5, random=draws())
            with pytest.raises(RateLimited) as refused:
                await hasty.display(made.subject)
            assert (refused.value.status, refused.value.retry_after_s) == (429, 1.0)

    run(scenario())
