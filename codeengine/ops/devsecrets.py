"""Dev key material for ``make run``: keyring, key-encryption key, pepper, alias key, MAC
keysets, the checkpoint signing key, the trust anchor, API credentials.

Created once, under the ignored ``var/`` folder, with owner-only permissions, and reused after.
Production material comes from the operator's key management instead: the services only read
the files named in settings.
"""

from __future__ import annotations

__all__ = ["DEV_CLIENTS", "DEV_SCOPES", "ensure_dev_material"]

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from codeengine.code.keyring import Keyring
from codeengine.code.model import RECORDS_SCOPES, SCOPES
from codeengine.code.signedlist import ANCHOR_LIFETIME_S
from codeengine.keyfiles import (
    PEPPER_BYTES,
    anchor_public_path,
    load_keyring,
    load_mac_keyset,
    load_pepper,
    load_trust_anchor,
    new_mac_keyset,
    write_mac_keyset,
    write_private,
    write_trust_anchor,
)
from codeengine.ops.checkpoints import new_signing_key, public_pem
from codeengine.settings import Settings

API_KEY_BYTES = 32
DEV_SCOPES = SCOPES
DEV_CLIENTS: dict[str, tuple[str, ...]] = {
    **{f"dev-{scope}": (scope,) for scope in SCOPES if scope not in RECORDS_SCOPES},
    "dev-records": RECORDS_SCOPES,
}
"""One dev client per scope, but one for every question of the records service."""


def ensure_dev_material(settings: Settings) -> Path:
    """Create whatever dev key material is missing; return the credentials file's path."""
    # The first keyring and the trust anchor sign with the profile's suite (SM2 in the
    # national profile); the MAC keysets and peppers are random bytes in either profile.
    profile = settings.crypto.selected()
    keyring_path = Path(settings.keys.keyring_file)
    if not keyring_path.exists():
        keyring = Keyring.generate_at(int(time.time()), profile.suite, os.urandom)
        write_private(keyring_path, json.dumps(keyring.to_private_jwks(), indent=2).encode())
    load_keyring(keyring_path)
    keys = settings.keys
    for path in (Path(keys.pepper_file), Path(keys.kek_file), Path(keys.alias_key_file)):
        if not path.exists():
            write_private(path, secrets.token_bytes(PEPPER_BYTES).hex().encode())
        load_pepper(path)
    for path in (Path(keys.record_mac_file), Path(keys.audit_mac_file)):
        if not path.exists():
            write_mac_keyset(path, new_mac_keyset(os.urandom))
        load_mac_keyset(path, profile.mac)
    checkpoint = Path(keys.checkpoint_key_file)
    if not checkpoint.exists():
        write_private(checkpoint, new_signing_key())
    public = checkpoint.with_suffix(".pub")
    if not public.exists():
        # The half that checks checkpoints, for wherever they are verified.
        public.write_bytes(public_pem(checkpoint))
    anchor = Path(keys.trust_anchor_file)
    if not anchor.exists() or not anchor_public_path(anchor).exists():
        anchors = (
            load_trust_anchor(anchor)
            if anchor.exists()
            else Keyring.generate_at(
                int(time.time()), profile.suite, os.urandom, lifetime_s=ANCHOR_LIFETIME_S
            )
        )
        write_trust_anchor(anchor, anchors)
    load_trust_anchor(anchor)
    credentials_path = Path(settings.keys.credentials_file)
    document: dict[str, Any] = {
        "note": "development credentials; never use outside make run",
        "clients": [],
    }
    if credentials_path.exists():
        document = json.loads(credentials_path.read_text())
    # A scope added since the file was written gets its dev client too; existing keys stay.
    held = {scope for client in document["clients"] for scope in client["scopes"]}
    missing = [
        (name, scopes)
        for name, scopes in DEV_CLIENTS.items()
        if any(scope not in held for scope in scopes)
    ]
    if missing or not credentials_path.exists():
        document["clients"] += [
            {"client": name, "scopes": list(scopes), "key": secrets.token_urlsafe(API_KEY_BYTES)}
            for name, scopes in missing
        ]
        write_private(credentials_path, json.dumps(document, indent=2).encode())
    return credentials_path
