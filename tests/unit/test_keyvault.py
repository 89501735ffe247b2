"""The sealed keyring: opens only with its KEK, and only as the version it was sealed as."""

from __future__ import annotations

from dataclasses import replace

import pytest

from codeengine.code.errors import KeyringError
from codeengine.code.keyring import Keyring
from codeengine.code.keyvault import SealedKeyring, open_keyring, seal_keyring
from codeengine.code.profile import INTERNATIONAL
from codeengine.code.secret import Secret
from codeengine.code.suites import ED25519, deterministic_random

KEK = Secret(bytes(range(32)))
NONCE = bytes(12)


def ring() -> Keyring:
    return Keyring.generate_at(1_800_000_000, ED25519, deterministic_random(b"vault"))


def test_round_trip_through_the_stored_form() -> None:
    sealed = seal_keyring(ring(), 3, KEK, NONCE, INTERNATIONAL)
    assert SealedKeyring.unpack(sealed.pack()) == sealed
    assert open_keyring(SealedKeyring.unpack(sealed.pack()), KEK, INTERNATIONAL) == ring()
    assert b'"d"' not in sealed.ciphertext, "private keys are never stored in clear"


def test_wrong_kek_altered_bytes_or_replayed_version_are_refused() -> None:
    sealed = seal_keyring(ring(), 3, KEK, NONCE, INTERNATIONAL)
    with pytest.raises(KeyringError, match="does not open"):
        open_keyring(sealed, Secret(bytes(32)), INTERNATIONAL)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(KeyringError):
        open_keyring(replace(sealed, ciphertext=flipped), KEK, INTERNATIONAL)
    with pytest.raises(KeyringError):
        open_keyring(replace(sealed, version=4), KEK, INTERNATIONAL)
    with pytest.raises(KeyringError, match="not a sealed keyring"):
        SealedKeyring.unpack(b"\x90")
    with pytest.raises(KeyringError):
        seal_keyring(ring(), 1, Secret(bytes(16)), NONCE, INTERNATIONAL)
