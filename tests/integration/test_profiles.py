"""Both cryptographic profiles end to end against a real cluster, and the refusal to mix them.

The representative part of the end-to-end suite runs in each profile (``crypto.profile``):
generate, display, verify online and degraded, the offline SDK on signed lists, convert, import
a batch, bind an alias and verify by it, the audit trail and ``codeengine audit verify``, and a
rotation to a new key of the profile's suite. The international profile runs on the session's
cluster; the national one needs a store of its own (the pseudonym is part of every key, so one
store holds one profile), so this module starts a second dev cluster for it, only when asked.

Then a service or ``serve --check`` whose setting differs from the store's refuses, naming the
setting, in both directions.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from codeengine.code.errors import ProfileMismatch
from codeengine.code.identifiers import parse_resident_id
from codeengine.code.model import SubjectId
from codeengine.code.profile import NATIONAL, ProfileName
from codeengine.code.pseudonym import alias_hash, pseudonym
from codeengine.code.signedlist import ListKind
from codeengine.code.suites import b64url_encode
from codeengine.code.token import decode
from codeengine.keyfiles import load_pepper
from codeengine.ops.cli import main
from codeengine.ops.devcluster import DevCluster, find_free_base_port
from codeengine.ops.devsecrets import ensure_dev_material
from codeengine.settings import Settings, load_settings
from codeengine.store import keyspace
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import KEYS, STORE, refresh_keys
from issuer.app import create_app as create_issuer
from tests.integration.apps import (
    Client,
    Clock,
    auth,
    display,
    generate,
    history,
    issuer,
    new_person_id,
    verifier,
)
from tests.integration.test_signed_lists import anchors_of, current_signed
from verifier.app import create_app as create_verifier
from verifier.offline.sdk import CachedList, OfflineVerifier

pytestmark = pytest.mark.cluster

HANG_GUARD_S = 60.0
KEY_FILES = (
    "keyring_file",
    "kek_file",
    "pepper_file",
    "alias_key_file",
    "record_mac_file",
    "audit_mac_file",
    "checkpoint_key_file",
    "trust_anchor_file",
    "credentials_file",
)


@dataclass(frozen=True)
class Deployment:
    """One profile's settings, the environment that makes them, and its cluster."""

    settings: Settings
    env: dict[str, str]
    cluster: DevCluster


def _key_env(folder: Path) -> dict[str, str]:
    return {f"CODEENGINE_KEYS_{name.upper()}": str(folder / name) for name in KEY_FILES}


def _deployment(keys: dict[str, str], cluster: DevCluster, profile: ProfileName) -> Deployment:
    env = keys | cluster.client_env()
    env |= {"CODEENGINE_SERVICE_WORKERS": "1", "CODEENGINE_CRYPTO_PROFILE": profile.value}
    return Deployment(load_settings(env=env), env, cluster)


@pytest.fixture(scope="module")
def national_cluster() -> Iterator[DevCluster]:
    """A second throwaway cluster for the national profile's store, stopped even on failure."""
    base = os.environ.get("CE_TEST_CLUSTER_DIR")
    directory = Path(tempfile.mkdtemp(prefix="cluster-national-", dir=base))
    (directory / "owner").write_text(str(os.getpid()))
    dev = DevCluster(directory=directory, base_port=find_free_base_port())
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="module")
def national_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Dev key material made in the national profile (an SM2 keyring and trust anchor)."""
    env = _key_env(tmp_path_factory.mktemp("national-keys"))
    ensure_dev_material(load_settings(env=env | {"CODEENGINE_CRYPTO_PROFILE": "national"}))
    return env


def _session_keys(key_files: dict[str, str]) -> dict[str, str]:
    return {f"CODEENGINE_{name.upper()}": path for name, path in key_files.items()}


@pytest.fixture
def international(cluster: DevCluster, key_files: dict[str, str]) -> Deployment:
    return _deployment(_session_keys(key_files), cluster, ProfileName.INTERNATIONAL)


@pytest.fixture
def national(national_cluster: DevCluster, national_keys: dict[str, str]) -> Deployment:
    return _deployment(national_keys, national_cluster, ProfileName.NATIONAL)


@pytest.fixture(params=[p.value for p in ProfileName])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """Each profile in turn; the national cluster starts only when its turn comes."""
    found: Deployment = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Sets this process's ``CODEENGINE_*`` to a deployment's, for the command line, in a
    working directory without configs/."""
    monkeypatch.chdir(tmp_path)

    def use(env: dict[str, str]) -> None:
        for name in list(os.environ):
            if name.startswith("CODEENGINE_") or name == "PROMETHEUS_MULTIPROC_DIR":
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return use


async def _verify(client: Client, settings: Settings, code: str) -> dict[str, Any]:
    body = {"code": code, "terminal": "gate-1", "city": 320100}
    response = await client.post("/v1/verify", json=body, headers=auth(settings, "verify"))
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def _post(client: Client, settings: Settings, scope: str, path: str, **kw: Any) -> Any:
    response = await client.post(path, headers=auth(settings, scope), **kw)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def _offline(ver: Client, settings: Settings, code: str) -> str:
    """The offline SDK's verdict on ``code`` from the signed lists the verifier serves, once
    the signed trust list carries the trust list the verifier holds."""
    anchors = anchors_of(settings)
    content = await (await ver.get("/v1/trust")).read()
    trust = await current_signed(ver, ListKind.TRUST, anchors, content)
    revocations = await current_signed(ver, ListKind.REVOCATIONS, anchors)
    held = CachedList.from_signed(trust.document, revocations.document, anchors, int(time.time()))
    return OfflineVerifier(held, anchors=anchors).verify(code).reason


async def _display_token(client: Client, settings: Settings, subject: str) -> str:
    return str((await display(client, settings, subject))["token"])


def test_each_profile_generates_displays_verifies_converts_imports_binds_and_rotates(
    deployment: Deployment, cli_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, cluster = deployment.settings, deployment.cluster
    profile = settings.crypto.selected()
    pepper = load_pepper(Path(settings.keys.pepper_file))
    alias_key = load_pepper(Path(settings.keys.alias_key_file))
    today = date.today()

    async def scenario() -> str:
        clock = Clock()
        async with issuer(settings, clock) as iss, verifier(settings, clock) as ver:
            trust = await (await ver.get("/v1/trust")).json()
            algs = {key["alg"] for key in trust["keys"]}
            if profile is NATIONAL:
                assert algs == {"SM2SM3"}, "a national store starts with an SM2 key"
                assert {key["crv"] for key in trust["keys"]} == {"SM2"}

            person = new_person_id()
            subject = await generate(iss, settings, person)
            identifier = parse_resident_id(person, today)
            assert subject == pseudonym(identifier, pepper, profile.mac)

            code = await _display_token(iss, settings, subject)
            if profile is NATIONAL:
                assert decode(code).alg == NATIONAL.suite.cose_alg, "signed with SM2"
            online = await _verify(ver, settings, code)
            assert (online["valid"], online["colour"], online["degraded"]) == (True, "green", False)
            assert await _offline(ver, settings, code) == "VALID"

            store = ver.app[STORE]
            assert isinstance(store, RedisStore)
            primary = store._fast.primary_for(keyspace.subject_key(SubjectId(subject)))
            assert primary is not None
            with cluster.paused(primary[1]):
                degraded = await asyncio.wait_for(_verify(ver, settings, code), HANG_GUARD_S)
            cluster.wait_healthy()
            assert (degraded["valid"], degraded["degraded"], degraded["colour"]) == (
                True,
                True,
                "green",
            )

            version = (await history(iss, settings, subject))["version"]
            body = {"colour": "yellow", "reason": "test", "if_version": version}
            await _post(iss, settings, "convert", f"/v1/subjects/{subject}/status", json=body)
            assert (await _verify(ver, settings, code))["colour"] == "yellow"

            # The batch names the resident ID: its pseudonym must be the one generate made.
            now = int(clock.now)
            csv = "identifier,record_type,event_time,source,city\n"
            csv += f"{person},positive,{now - 60},cdc,320100\n"
            response = await iss.post(
                "/v1/batches",
                params={"batch_id": f"profile-{profile.name.value}-{now}"},
                data=csv.encode(),
                headers={**auth(settings, "convert"), "Content-Type": "text/csv"},
            )
            assert response.status == 201, await response.text()
            assert (await response.json())["applied"] == 1
            assert (await _verify(ver, settings, code))["colour"] == "red"

            card = f"K{now % 10**8:08d}"
            bound = await _post(
                iss,
                settings,
                "fusion",
                f"/v1/subjects/{subject}/aliases",
                json={"type": "ssc_card", "value": card},
            )
            assert bound["masked"].endswith(card[-2:])
            hashed = alias_hash("ssc_card", card, alias_key, profile.mac)
            assert await store.subject_for_alias(hashed) == subject
            by_alias = await _verify(ver, settings, f"SSC:{card}")
            assert (by_alias["valid"], by_alias["colour"]) == (True, "red")

            ops = [e["op"] for e in (await history(iss, settings, subject))["entries"]]
            assert ops[0] == "create" and "alias_bind" in ops and "status" in ops

            rotate = {"alg": profile.suite.jose_alg, "activate_in_s": 0}
            rotated = await _post(iss, settings, "admin", "/v1/keys/rotate", json=rotate)
            assert rotated["alg"] == profile.suite.jose_alg
            other = await generate(iss, settings, new_person_id())
            fresh = await _display_token(iss, settings, other)
            assert b64url_encode(decode(fresh).kid) == rotated["kid"]
            # The verifier re-reads the trust list every second; read it now instead.
            await refresh_keys(ver.app[KEYS], ver.app[STORE], settings, signs=False)
            assert (await _verify(ver, settings, fresh))["reason"] == "VALID"
            # The code signed before the rotation keeps verifying until it expires.
            assert (await _verify(ver, settings, code))["valid"]
            assert await _offline(ver, settings, fresh) == "VALID"
            return subject

    subject = asyncio.run(scenario())
    cli_env(deployment.env)
    assert main(["audit", "verify", f"--subject={subject}"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert (checked["checked"], checked["broken"]) == (1, [])


def _refuses_to_start(settings: Settings) -> list[str]:
    """What stopped each service with ``settings`` from starting (it must not start)."""

    async def start(factory: Any) -> str:
        client: Client = TestClient(TestServer(factory(settings, clock=Clock())))
        try:
            with pytest.raises(ProfileMismatch) as refused:
                await client.start_server()
        finally:
            await client.close()
        return str(refused.value)

    async def both() -> list[str]:
        return [await start(create_issuer), await start(create_verifier)]

    return asyncio.run(both())


def _seed(settings: Settings) -> None:
    """Start an issuer once, so that the store holds a keyring (in the issuer's profile)."""

    async def seeded() -> None:
        async with issuer(settings):
            pass

    asyncio.run(seeded())


def test_a_service_refuses_a_store_seeded_in_the_other_profile(
    international: Deployment, national: Deployment, key_files: dict[str, str]
) -> None:
    _seed(international.settings)
    _seed(national.settings)
    # The national key material and setting against the international store, and back.
    crossed = [
        _deployment(dict(national.env), international.cluster, ProfileName.NATIONAL),
        _deployment(_session_keys(key_files), national.cluster, ProfileName.INTERNATIONAL),
    ]
    for wrong, store_profile in zip(crossed, ("international", "national"), strict=True):
        setting = wrong.settings.crypto.profile
        for message in _refuses_to_start(wrong.settings):
            assert message.startswith(f"crypto.profile is {setting!r}")
            assert f"seeded in the {store_profile!r} profile" in message


def test_serve_check_names_the_profile_setting_when_it_differs_from_the_store(
    international: Deployment,
    national: Deployment,
    cli_env: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _seed(national.settings)
    _seed(international.settings)
    cli_env(national.env)
    assert main(["serve", "issuer", "--check", "--deadline", "5"]) == 0
    capsys.readouterr()
    crossed = [
        (national.env, "international", "national"),
        (international.env, "national", "international"),
    ]
    for env, setting, seeded in crossed:
        cli_env(env | {"CODEENGINE_CRYPTO_PROFILE": setting})
        for service in ("issuer", "verifier"):
            assert main(["serve", service, "--check", "--deadline", "5"]) == 1
            lines = capsys.readouterr().err.splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith(f"codeengine serve: crypto.profile: is {setting!r} but")
            assert f"seeded in the {seeded!r} profile" in lines[0]
