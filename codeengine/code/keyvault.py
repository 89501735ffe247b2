"""The signing keyring as every issuer process shares it: sealed with a key-encryption key.

The services are stateless, so the keyring lives in the store, where a rotation by one process
reaches all of them within a second. Its private keys are sealed under a key-encryption key
(KEK) that only issuers hold; the store never sees a private key in clear. The version is bound
into the seal, so an old sealed keyring cannot be replayed as a newer one.

The sealed keyring also records the cryptographic profile the store was seeded in
(codeengine.code.profile). The international profile seals with AES-256-GCM under the 32-byte
KEK, as before profiles existed (its stored form carries no profile field, so stores seeded
then read as international). The national profile seals with SM4-GCM under a 16-byte key
derived from the same 32-byte KEK file: the first 16 bytes of HMAC-SM3(KEK, "codeengine keyring
SM4-GCM key"), and binds the profile's name into the associated data, so that the field cannot
be changed without the KEK. Every process reads the profile here and refuses to start when its
``crypto.profile`` setting differs: a pseudonym computed under the other profile's MAC would
find none of the store's subjects.
"""

from __future__ import annotations

__all__ = [
    "KEK_BYTES",
    "NONCE_BYTES",
    "SM4_KEY_LABEL",
    "SealedKeyring",
    "check_profile",
    "open_keyring",
    "seal_keyring",
]

import json
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from codeengine.code.errors import KeyringError, ProfileMismatch
from codeengine.code.keyring import Keyring
from codeengine.code.national import SM4_KEY_BYTES, SM4GCM, hmac_sm3
from codeengine.code.profile import PROFILE_SETTING, Profile, ProfileName
from codeengine.code.secret import Secret

KEK_BYTES = 32
NONCE_BYTES = 12
SM4_KEY_LABEL: Final = b"codeengine keyring SM4-GCM key"
"""What the national profile's SM4 key is derived with from the KEK (docs/security.md)."""


def _aad(version: int, profile: ProfileName) -> bytes:
    if profile is ProfileName.INTERNATIONAL:
        return f"codeengine keyring v{version}".encode()
    return f"codeengine keyring v{version} {profile.value}".encode()


def _cipher(kek: Secret, profile: ProfileName) -> AESGCM | SM4GCM:
    if profile is ProfileName.INTERNATIONAL:
        return AESGCM(kek.reveal())
    return SM4GCM(hmac_sm3(kek.reveal(), SM4_KEY_LABEL)[:SM4_KEY_BYTES])


@dataclass(frozen=True, slots=True)
class SealedKeyring:
    """A keyring version as stored: the version and the profile in clear, the keys sealed."""

    version: int
    nonce: bytes
    ciphertext: bytes
    profile: ProfileName = ProfileName.INTERNATIONAL
    """The profile the store was seeded in (bound into the seal's associated data)."""

    def pack(self) -> bytes:
        """msgpack for the store (no profile field for the international profile)."""
        fields: dict[str, Any] = {"v": self.version, "n": self.nonce, "c": self.ciphertext}
        if self.profile is not ProfileName.INTERNATIONAL:
            fields["p"] = self.profile.value
        return msgpack.packb(fields)  # type: ignore[no-any-return]

    @classmethod
    def unpack(cls, raw: bytes) -> SealedKeyring:
        """Read the stored form; KeyringError if it is not one."""
        try:
            fields: dict[str, Any] = msgpack.unpackb(raw)
            profile = ProfileName(fields.get("p", ProfileName.INTERNATIONAL.value))
            return cls(int(fields["v"]), bytes(fields["n"]), bytes(fields["c"]), profile)
        except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as exc:
            raise KeyringError("the stored keyring is not a sealed keyring") from exc


def check_profile(sealed: SealedKeyring, profile: Profile) -> None:
    """Return if the store was seeded in ``profile``, else ProfileMismatch naming the setting.

    A verifier, which holds no KEK, reads the field as stored; an issuer also opens the seal,
    which binds it.
    """
    if sealed.profile is not profile.name:
        raise ProfileMismatch(
            f"{PROFILE_SETTING} is {profile.name.value!r} but the store was seeded in the "
            f"{sealed.profile.value!r} profile; a store keeps the profile it was seeded in "
            "(docs/operations.md, choosing the cryptographic profile)"
        )


def seal_keyring(
    keyring: Keyring, version: int, kek: Secret, nonce: bytes, profile: Profile
) -> SealedKeyring:
    """Seal ``keyring`` as ``version`` in ``profile`` under the KEK with a fresh random
    ``nonce``."""
    if len(kek) != KEK_BYTES or len(nonce) != NONCE_BYTES:
        raise KeyringError(f"the KEK is {KEK_BYTES} bytes and the nonce {NONCE_BYTES}")
    plaintext = json.dumps(keyring.to_private_jwks(), separators=(",", ":")).encode()
    name = profile.name
    ciphertext = _cipher(kek, name).encrypt(nonce, plaintext, _aad(version, name))
    return SealedKeyring(version, nonce, ciphertext, name)


def open_keyring(sealed: SealedKeyring, kek: Secret, profile: Profile) -> Keyring:
    """The keyring inside; ProfileMismatch if the store was seeded in another profile,
    KeyringError if the KEK is wrong or the seal was altered."""
    check_profile(sealed, profile)
    if len(kek) != KEK_BYTES:
        raise KeyringError(f"the KEK is {KEK_BYTES} bytes")
    try:
        cipher = _cipher(kek, sealed.profile)
        aad = _aad(sealed.version, sealed.profile)
        plaintext = cipher.decrypt(sealed.nonce, sealed.ciphertext, aad)
    except (InvalidTag, ValueError) as exc:
        raise KeyringError("the keyring seal does not open with this KEK") from exc
    return Keyring.from_private_jwks(json.loads(plaintext))
