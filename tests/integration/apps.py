"""Apps under test: the issuer and verifier through their factories, a settable clock, dev keys."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio.cluster import ClusterNode, RedisCluster

from codeengine.code.errors import StoreUnavailable
from codeengine.code.identifiers import make_resident_id
from codeengine.ops.commands import store_keys
from codeengine.ops.devcluster import DevCluster
from codeengine.settings import Settings
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import STORE
from issuer.app import create_app as create_issuer
from verifier.app import create_app as create_verifier

Client = TestClient[web.Request, web.Application]


@dataclass
class Clock:
    """A clock the test moves by hand, starting at the real time.

    Real time, because the session's services share one stored keyring: keys made at a pretend
    time would not be valid for the real-time processes of the end-to-end tests.
    """

    now: float = field(default_factory=lambda: float(int(time.time())))

    def __call__(self) -> float:
        return self.now


def dev_keys(settings: Settings) -> dict[str, str]:
    """The session's dev API keys by scope (the records client holds several)."""
    document = json.loads(Path(settings.keys.credentials_file).read_text())
    return {scope: client["key"] for client in document["clients"] for scope in client["scopes"]}


def auth(settings: Settings, scope: str) -> dict[str, str]:
    """An Authorization header of the dev client holding ``scope``."""
    return {"Authorization": f"Bearer {dev_keys(settings)[scope]}"}


WARM_UP_S = 10.0
"""How long a new app may take to open its connection to every primary before a test uses it."""


async def warm(client: Client) -> None:
    """Open the app's store connections to every primary, as a worker has by the time a load
    balancer sends it traffic (its readiness pings them).

    A test's first request would otherwise open them within its own read deadline (250 ms),
    and a TLS handshake on a loaded 2-core machine can take longer. Tries again until every
    primary answered or ``WARM_UP_S`` passed; the test then runs either way.
    """
    store = client.app[STORE]
    deadline = time.monotonic() + WARM_UP_S
    while True:
        try:
            await store.ping()
            return
        except StoreUnavailable:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)  # a breaker may fail calls at once: not a busy loop


@asynccontextmanager
async def issuer(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Client]:
    """The issuer app behind a real HTTP server, and a client for it."""
    app = create_issuer(settings, clock=clock or Clock())
    async with TestClient(TestServer(app)) as client:
        await warm(client)
        yield client


@asynccontextmanager
async def verifier(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Client]:
    """The verifier app behind a real HTTP server, and a client for it."""
    app = create_verifier(settings, clock=clock or Clock())
    async with TestClient(TestServer(app)) as client:
        await warm(client)
        yield client


_PEOPLE = itertools.count()


def new_person_id() -> str:
    """A valid resident ID no other test of the session uses."""
    n = next(_PEOPLE)
    return make_resident_id("320102", date(1980, 1, 1) + timedelta(days=n // 900), 100 + n % 900)


async def generate(client: Client, settings: Settings, ident: str, city: int = 320100) -> str:
    """Generate a person; the subject pseudonym."""
    body = {"kind": "person", "id": ident, "city": city}
    response = await client.post("/v1/subjects", json=body, headers=auth(settings, "generate"))
    assert response.status in (200, 201), await response.text()
    answer: dict[str, Any] = await response.json()
    return str(answer["subject"])


async def display(client: Client, settings: Settings, subject: str) -> dict[str, Any]:
    """The subject's current code as the display endpoint answers it."""
    response = await client.get(f"/v1/subjects/{subject}/code", headers=auth(settings, "display"))
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def new_person(client: Client, settings: Settings) -> tuple[str, str]:
    """A new person, generated: the resident ID (what batches name) and the subject."""
    person = new_person_id()
    return person, await generate(client, settings, person)


async def new_code(client: Client, settings: Settings) -> tuple[str, str]:
    """A new person's subject and the code the issuer displays for it."""
    _, subject = await new_person(client, settings)
    return subject, str((await display(client, settings, subject))["token"])


async def history(client: Client, settings: Settings, subject: str) -> dict[str, Any]:
    """The subject's audit trail as the history endpoint answers it."""
    response = await client.get(
        f"/v1/subjects/{subject}/history", headers=auth(settings, "convert")
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def keyed(store: RedisStore, settings: Settings) -> RedisStore:
    """``store`` holding the session's MAC keys (records and audit), as an issuer's does."""
    store.keys = store_keys(settings)
    return store


@asynccontextmanager
async def admin_redis(cluster: DevCluster) -> AsyncIterator[Any]:
    """redis-py logged in as the cluster's admin user: what a test needs to do what the services
    may not (delete or overwrite keys, EVAL), such as a Redis insider's edits. Untyped: the
    stubs widen every reply."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes],
        **cluster.redis_py_options("admin"),
    )
    try:
        yield client
    finally:
        await client.aclose()
