"""国密: the national hash, MAC and cipher (SM3, HMAC-SM3, SM4-GCM) through pyca/cryptography.

These are the national profile's replacements for SHA-256, HMAC-SHA-256 and AES-256-GCM. Each
has the shape of what it replaces, so that switching a caller is a matter of wiring:
``hmac_sm3(key, data)`` stands where ``hmac.digest(key, data, "sha256")`` stands, and
``SM4GCM(key).encrypt(nonce, data, aad)`` where ``AESGCM(key).encrypt(...)`` does, raising the
same ``InvalidTag`` on a seal that does not open.

Some OpenSSL builds leave the SM algorithms out; ``national_support`` asks the linked library at
call time, so that the national profile can refuse to start with a message naming what is
missing instead of failing on the first request. SM2 signatures are in ``codeengine.code.sm2``.
"""

from __future__ import annotations

__all__ = [
    "HMACSM3",
    "SM3_BYTES",
    "SM4GCM",
    "SM4_KEY_BYTES",
    "SM4_NONCE_BYTES",
    "SM4_TAG_BYTES",
    "hmac_sm3",
    "national_support",
    "sm3",
]

from typing import Final

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from codeengine.code.errors import CryptoUnavailable

SM3_BYTES: Final = 32
SM4_KEY_BYTES: Final = 16
SM4_NONCE_BYTES: Final = 12
"""The GCM nonce size that needs no GHASH of the nonce (NIST SP 800-38D, RFC 8998)."""
SM4_TAG_BYTES: Final = 16

_SM3: Final = hashes.SM3()


def national_support() -> None:
    """Return if the linked OpenSSL offers SM3, HMAC-SM3 and SM4-GCM, else CryptoUnavailable.

    The message names each missing algorithm and the OpenSSL in use, for the operator who has to
    install a build that carries them.
    """
    missing = []
    if not backend.hash_supported(_SM3):
        missing.append("SM3")
    elif not backend.hmac_supported(_SM3):
        missing.append("HMAC-SM3")
    probe = algorithms.SM4(bytes(SM4_KEY_BYTES))
    if not backend.cipher_supported(probe, modes.GCM(bytes(SM4_NONCE_BYTES))):
        missing.append("SM4-GCM")
    if missing:
        raise CryptoUnavailable(
            f"the national profile needs {', '.join(missing)}, which "
            f"{backend.openssl_version_text()} does not offer"
        )


def sm3(data: bytes) -> bytes:
    """The SM3 hash (GB/T 32905) of ``data``: 32 bytes."""
    digest = hashes.Hash(_SM3)
    digest.update(data)
    return digest.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) with SM3: 32 bytes."""
    mac = hmac.HMAC(key, _SM3)
    mac.update(data)
    return mac.finalize()


class HMACSM3:
    """HMAC-SM3 under one key, with the key's pads computed once.

    Pseudonyms and seals MAC every request under a handful of long-lived keys; copying a prepared
    context skips hashing the two pads again, as ``seal.MACKeyset`` does for SHA-256.
    """

    __slots__ = ("_prepared",)

    def __init__(self, key: bytes) -> None:
        self._prepared = hmac.HMAC(key, _SM3)

    def __repr__(self) -> str:
        return "HMACSM3(key=***)"

    def digest(self, data: bytes) -> bytes:
        """HMAC-SM3 of ``data`` under this key."""
        mac = self._prepared.copy()
        mac.update(data)
        return mac.finalize()


class SM4GCM:
    """SM4 in GCM mode (RFC 8998): a 16-byte key, 12-byte nonces, 16-byte tags.

    ``encrypt`` returns the ciphertext followed by the tag, and ``decrypt`` raises
    ``cryptography.exceptions.InvalidTag`` when they do not open, as ``AESGCM`` does.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != SM4_KEY_BYTES:
            raise ValueError(f"an SM4 key is {SM4_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "SM4GCM(key=***)"

    def _cipher(self, nonce: bytes, tag: bytes | None = None) -> Cipher[modes.GCM]:
        if len(nonce) != SM4_NONCE_BYTES:
            raise ValueError(f"an SM4-GCM nonce here is {SM4_NONCE_BYTES} bytes")
        try:
            return Cipher(algorithms.SM4(self._key), modes.GCM(nonce, tag))
        except UnsupportedAlgorithm as exc:
            raise CryptoUnavailable("the linked OpenSSL does not offer SM4-GCM") from exc

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """Seal ``data``, authenticating ``associated_data`` too: ciphertext || tag."""
        encryptor = self._cipher(nonce).encryptor()
        if associated_data:
            encryptor.authenticate_additional_data(associated_data)
        sealed = encryptor.update(data) + encryptor.finalize()
        return sealed + encryptor.tag

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """Open ciphertext || tag; InvalidTag if it, the nonce or the associated data changed."""
        if len(data) < SM4_TAG_BYTES:
            raise InvalidTag()
        decryptor = self._cipher(nonce, data[-SM4_TAG_BYTES:]).decryptor()
        if associated_data:
            decryptor.authenticate_additional_data(associated_data)
        return decryptor.update(data[:-SM4_TAG_BYTES]) + decryptor.finalize()
