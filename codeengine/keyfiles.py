"""Reading the secret files the settings name: the signing keyring, the pepper, the KEK, the
alias key, the MAC keysets (records, audit), the checkpoint signing key and the trust anchor.

Every service reads its key material through here; ``codeengine.ops.devsecrets`` writes the
development set. Errors name the file, never its content.
"""

from __future__ import annotations

__all__ = [
    "PEPPER_BYTES",
    "add_mac_key",
    "anchor_public_path",
    "load_keyring",
    "load_mac_keyset",
    "load_pepper",
    "load_trust_anchor",
    "new_mac_keyset",
    "write_mac_keyset",
    "write_private",
    "write_trust_anchor",
]

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeengine.code.errors import KeyringError
from codeengine.code.keyring import Keyring
from codeengine.code.macs import MACAlgorithm
from codeengine.code.seal import KID_BYTES, MAC_KEY_BYTES, MACKeyset
from codeengine.code.secret import Secret
from codeengine.code.trustlist import TrustList

PEPPER_BYTES = 32


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, atomically (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _read_json(path: Path, what: str) -> Any:
    """A key file's JSON; KeyringError names the file and the kind of error, never the content."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeyringError(f"cannot read {what} {path.name}: {type(exc).__name__}") from exc


def load_keyring(path: Path) -> Keyring:
    """Read the private keyring JWKS; KeyringError names what is wrong (never the key)."""
    return Keyring.from_private_jwks(_read_json(path, "keyring"))


def load_trust_anchor(path: Path) -> Keyring:
    """Read the trust-anchor keyring: a private JWKS in the keyring's format, whose key valid
    now signs the lists (a staged next key takes over at its ``nbf``)."""
    return Keyring.from_private_jwks(_read_json(path, "trust anchor"))


def anchor_public_path(path: Path) -> Path:
    """Where the public half of the trust-anchor file is kept: ``NAME.pub.json`` beside it."""
    return path.with_name(f"{path.name.removesuffix('.json')}.pub.json")


def write_trust_anchor(path: Path, anchors: Keyring) -> None:
    """Write the trust-anchor keyring owner-only, and its public anchors (the JWKS a terminal is
    configured with) beside it, readable by all."""
    write_private(path, json.dumps(anchors.to_private_jwks(), indent=2).encode())
    public = anchor_public_path(path)
    tmp = public.with_suffix(".tmp")
    tmp.write_text(json.dumps(TrustList.from_keyring(anchors).to_jwks(), indent=2) + "\n")
    os.replace(tmp, public)


def load_pepper(path: Path) -> Secret:
    """Read a 32-byte secret kept as hex: the pseudonym pepper or the key-encryption key."""
    try:
        pepper = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise KeyringError(f"cannot read pepper {path.name}: {type(exc).__name__}") from exc
    if len(pepper) < PEPPER_BYTES:
        raise KeyringError(f"pepper {path.name} holds fewer than {PEPPER_BYTES} bytes")
    return Secret(pepper)


def load_mac_keyset(path: Path, mac: MACAlgorithm) -> MACKeyset:
    """Read a MAC keyset file (JSON: the current key id and every key, hex) for the profile's
    ``mac`` (the file is the same in both profiles; the setting decides)."""
    return MACKeyset.from_document(_read_json(path, "MAC keyset"), mac)


def new_mac_keyset(random: Callable[[int], bytes]) -> MACKeyset:
    """A keyset of one fresh key."""
    kid = random(KID_BYTES)
    return MACKeyset(kid, {kid: random(MAC_KEY_BYTES)})


def write_mac_keyset(path: Path, keys: MACKeyset) -> None:
    """Write a MAC keyset file, owner-only, atomically."""
    write_private(path, json.dumps(keys.to_document(), indent=2).encode())


def add_mac_key(path: Path, random: Callable[[int], bytes]) -> MACKeyset:
    """Rotate: add a fresh key to the file as its current key; the old keys stay (they open
    what they sealed). Processes pick the file up at their next re-read."""
    keys = load_mac_keyset(path, MACAlgorithm.HMAC_SHA256)  # only the file's keys matter here
    kid = random(KID_BYTES)
    while kid in keys.keys:
        kid = random(KID_BYTES)
    rotated = keys.with_key(kid, random(MAC_KEY_BYTES))
    write_mac_keyset(path, rotated)
    return rotated
