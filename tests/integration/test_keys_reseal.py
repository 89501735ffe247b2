"""``codeengine keys reseal``: the session's stored keyring sealed under a new KEK, and back.

The session's services share one stored keyring, so the test puts it back under the session's
KEK when it ends, pass or fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codeengine.code.errors import KeyringError
from codeengine.code.keyvault import SealedKeyring, open_keyring
from codeengine.code.profile import INTERNATIONAL
from codeengine.code.secret import Secret
from codeengine.code.suites import b64url_encode
from codeengine.keyfiles import load_pepper
from codeengine.ops.keyscli import reseal
from codeengine.settings import Settings
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import store_settings
from tests.integration.apps import issuer, new_code

pytestmark = pytest.mark.cluster


def cli_reseal(settings: Settings, key_files: dict[str, str], new_kek: Path) -> tuple[int, str]:
    env = {**os.environ, **{f"CODEENGINE_{k.upper()}": v for k, v in key_files.items()}}
    env["CODEENGINE_CLUSTER_NODES"] = settings.cluster.nodes
    result = subprocess.run(
        [sys.executable, "-m", "codeengine.ops.cli", "keys", "reseal", "--new-kek", str(new_kek)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


async def stored(settings: Settings) -> tuple[SealedKeyring, bytes]:
    store = RedisStore(store_settings(settings))
    try:
        raw, trust = await store.get_keyring(), await store.get_trust()
    finally:
        await store.close()
    assert raw is not None and trust is not None
    return SealedKeyring.unpack(raw), trust


async def resealed_with(settings: Settings, old: Secret, new: Secret) -> dict[str, Any]:
    store = RedisStore(store_settings(settings))
    try:
        return await reseal(store, old, new, INTERNATIONAL)
    finally:
        await store.close()


def test_reseal_puts_the_same_keys_under_a_new_kek_that_issuers_then_need(
    settings: Settings, key_files: dict[str, str], tmp_path: Path, run: Any
) -> None:
    session_kek = load_pepper(Path(settings.keys.kek_file))
    new_file = tmp_path / "kek-new"
    new_file.write_text(secrets.token_bytes(32).hex())
    new_file.chmod(0o600)
    new_kek = load_pepper(new_file)

    async def seeded() -> None:
        # The first issuer of a session puts the keyring in the store.
        async with issuer(settings) as client:
            assert (await client.get("/readyz")).status == 200

    run(seeded())
    before, trust_before = asyncio.run(stored(settings))
    kids_before = [
        b64url_encode(key.kid)
        for key in open_keyring(before, session_kek, INTERNATIONAL).public_keys()
    ]

    code, out = cli_reseal(settings, key_files, new_file)
    try:
        assert code == 0, out
        report = json.loads(out)
        assert report == {
            "keyring_version": before.version + 1,
            "resealed_from_version": before.version,
            "kids": kids_before,
        }
        after, trust_after = asyncio.run(stored(settings))
        assert after.version == before.version + 1
        assert trust_after == trust_before, "verifiers and terminals see nothing change"
        reopened = open_keyring(after, new_kek, INTERNATIONAL)
        assert [b64url_encode(key.kid) for key in reopened.public_keys()] == kids_before
        with pytest.raises(KeyringError, match="does not open"):
            open_keyring(after, session_kek, INTERNATIONAL)
        assert new_file.read_text() not in out, "no KEK in the report"

        async def issuers() -> None:
            new_keys = dataclasses.replace(settings.keys, kek_file=str(new_file))
            async with issuer(dataclasses.replace(settings, keys=new_keys)) as client:
                _, token = await new_code(client, settings)
                assert token.startswith("CE1:"), "an issuer with the new KEK signs"
            async with issuer(settings) as client:
                ready = await client.get("/readyz")
                assert ready.status == 503
                assert (await ready.json())["failed"] == {"keys": "KEYRING"}

        run(issuers())
        with pytest.raises(KeyringError, match="the new KEK is the current one"):
            asyncio.run(resealed_with(settings, new_kek, new_kek))
        with pytest.raises(KeyringError, match="does not open"):
            asyncio.run(resealed_with(settings, session_kek, Secret(secrets.token_bytes(32))))
        assert asyncio.run(stored(settings))[0].version == after.version, "nothing written"
    finally:
        if asyncio.run(stored(settings))[0].version > before.version:
            back = asyncio.run(resealed_with(settings, new_kek, session_kek))
            assert back["keyring_version"] == before.version + 2
