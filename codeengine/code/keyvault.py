"""The signing keyring as every issuer process shares it: sealed with a key-encryption key.

The services are stateless, so the keyring lives in the store, where a rotation by one process
reaches all of them within a second. Its private keys are sealed with AES-256-GCM under a
key-encryption key (KEK) that only issuers hold; the store never sees a private key in clear. The
version is bound into the seal, so an old sealed keyring cannot be replayed as a newer one.
"""

from __future__ import annotations

__all__ = ["KEK_BYTES", "SealedKeyring", "open_keyring", "seal_keyring"]

import json
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from codeengine.code.errors import KeyringError
from codeengine.code.keyring import Keyring
from codeengine.code.secret import Secret

KEK_BYTES = 32
NONCE_BYTES = 12


def _aad(version: int) -> bytes:
    return f"codeengine keyring v{version}".encode()


@dataclass(frozen=True, slots=True)
class SealedKeyring:
    """A keyring version as stored: the version in clear, the keys sealed."""

    version: int
    nonce: bytes
    ciphertext: bytes

    def pack(self) -> bytes:
        """msgpack for the store."""
        return msgpack.packb({"v": self.version, "n": self.nonce, "c": self.ciphertext})  # type: ignore[no-any-return]

    @classmethod
    def unpack(cls, raw: bytes) -> SealedKeyring:
        """Read the stored form; KeyringError if it is not one."""
        try:
            fields: dict[str, Any] = msgpack.unpackb(raw)
            return cls(int(fields["v"]), bytes(fields["n"]), bytes(fields["c"]))
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise KeyringError("the stored keyring is not a sealed keyring") from exc


def seal_keyring(keyring: Keyring, version: int, kek: Secret, nonce: bytes) -> SealedKeyring:
    """Seal ``keyring`` as ``version`` under the KEK with a fresh random ``nonce``."""
    if len(kek) != KEK_BYTES or len(nonce) != NONCE_BYTES:
        raise KeyringError(f"the KEK is {KEK_BYTES} bytes and the nonce {NONCE_BYTES}")
    plaintext = json.dumps(keyring.to_private_jwks(), separators=(",", ":")).encode()
    ciphertext = AESGCM(kek.reveal()).encrypt(nonce, plaintext, _aad(version))
    return SealedKeyring(version, nonce, ciphertext)


def open_keyring(sealed: SealedKeyring, kek: Secret) -> Keyring:
    """The keyring inside; KeyringError if the KEK is wrong or the seal was altered."""
    if len(kek) != KEK_BYTES:
        raise KeyringError(f"the KEK is {KEK_BYTES} bytes")
    try:
        plaintext = AESGCM(kek.reveal()).decrypt(
            sealed.nonce, sealed.ciphertext, _aad(sealed.version)
        )
    except (InvalidTag, ValueError) as exc:
        raise KeyringError("the keyring seal does not open with this KEK") from exc
    return Keyring.from_private_jwks(json.loads(plaintext))
