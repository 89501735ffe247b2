"""``codeengine keys reseal --new-kek FILE``: seal the stored keyring under a new KEK.

The keyring in the store is sealed (AES-256-GCM, or SM4-GCM in the national profile) under the
key-encryption key that issuers hold (``keys.kek_file``). If that KEK may have leaked, whoever
also reads the store or one of its snapshots holds every signing key, and a rotation alone does
not help: its new key would be sealed under the same KEK. This command opens the stored keyring
with the current KEK and writes it back, unchanged, as the next version sealed under the new one
(a compare-and-set on the version, acknowledged by a replica like every keyring write). The
trust list is unchanged, so verifiers and terminals notice nothing.

Issuers read the KEK when they start: until each is restarted with the new file they keep
signing with the keyring they hold and log that they cannot open the new version. The signing-
key compromise runbook (docs/runbooks/signing-key-compromise.md) puts the steps in order:
reseal, restart the issuers with the new KEK, then rotate and revoke.
"""

from __future__ import annotations

__all__ = ["add_keys_commands", "reseal"]

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from codeengine.code.errors import KeyringError
from codeengine.code.keyvault import NONCE_BYTES, SealedKeyring, open_keyring, seal_keyring
from codeengine.code.profile import Profile
from codeengine.code.secret import Secret
from codeengine.code.suites import b64url_encode
from codeengine.code.trustlist import TrustList
from codeengine.keyfiles import load_pepper
from codeengine.ops.commands import config_path
from codeengine.settings import load_settings
from codeengine.store.redisstore import RedisStore
from codeengine.web.runtime import require_profile, store_settings


async def reseal(
    store: RedisStore, old_kek: Secret, new_kek: Secret, profile: Profile
) -> dict[str, Any]:
    """Write the stored keyring back as its next version, sealed under ``new_kek`` in the
    store's ``profile``; what was done, without a secret in it."""
    if old_kek == new_kek:
        raise KeyringError("the new KEK is the current one")
    raw = await store.get_keyring()
    if raw is None:
        raise KeyringError("the store holds no keyring")
    sealed = SealedKeyring.unpack(raw)
    keyring = open_keyring(sealed, old_kek, profile)
    nonce = os.urandom(NONCE_BYTES)
    resealed = seal_keyring(keyring, sealed.version + 1, new_kek, nonce, profile)
    trust = TrustList.from_keyring(keyring)
    await store.put_keyring(
        sealed.version, resealed.pack(), resealed.version, trust.to_json().encode()
    )
    return {
        "keyring_version": resealed.version,
        "resealed_from_version": sealed.version,
        "kids": [b64url_encode(key.kid) for key in trust],
    }


def _cmd_reseal(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args))
    profile = require_profile(settings)
    old_kek = load_pepper(Path(settings.keys.kek_file))
    new_kek = load_pepper(Path(args.new_kek))

    async def work() -> dict[str, Any]:
        store = RedisStore(store_settings(settings))
        try:
            return await reseal(store, old_kek, new_kek, profile)
        finally:
            await store.close()

    print(json.dumps(asyncio.run(work()), indent=2))
    return 0


def add_keys_commands(keys_commands: Any) -> None:
    """Add ``reseal`` under ``codeengine keys``."""
    reseal_command = keys_commands.add_parser(
        "reseal",
        help="seal the stored keyring under a new KEK (after the current one may have leaked)",
    )
    reseal_command.add_argument(
        "--new-kek",
        required=True,
        metavar="FILE",
        help="the new KEK: 32 random bytes as hex, owner-only; the current one is keys.kek_file",
    )
    reseal_command.set_defaults(func=_cmd_reseal)
