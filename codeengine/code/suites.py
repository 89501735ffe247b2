"""Signing suites: one Protocol, Ed25519 (default) and ES256, and a registry by algorithm id.

A suite owns everything algorithm-specific: key generation, signing, verification and the JWK
members of its keys. The codec, keyring and trust list only ever go through a suite, so a new
algorithm joins by implementing ``SigningSuite`` and being added to a ``SuiteRegistry``, as SM2
does (``codeengine.code.sm2``; ``codeengine.code.registry`` holds the registry every party
accepts by default).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_SUITE",
    "ED25519",
    "ES256",
    "ES256Suite",
    "Ed25519Suite",
    "JWKMembers",
    "PrivateKey",
    "PublicKey",
    "RandomSource",
    "SigningSuite",
    "SuiteRegistry",
    "Verifier",
    "b64url_decode",
    "b64url_encode",
    "deterministic_random",
    "jwk_member_bytes",
    "low_s",
]

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Final, Protocol

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from nacl.bindings import crypto_sign_open

from codeengine.code.errors import BadSignature, KeyringError
from codeengine.code.secret import Secret

RandomSource = Callable[[int], bytes]
"""Returns that many random bytes: ``os.urandom`` in production, a seeded stream in tests."""

JWKMembers = dict[str, str]
"""The members of a JWK that define a key (and ``d`` for a private one)."""

Verifier = Callable[[bytes, bytes], None]
"""Checks ``(signature, message)`` against one key: returns if valid, else raises BadSignature."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key: its suite and the suite's canonical encoding of it."""

    suite: SigningSuite
    data: bytes

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return if the signature is valid, else raise BadSignature."""
        self.suite.verify(self, signature, message)


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A private key; the secret scalar or seed stays masked in reprs."""

    suite: SigningSuite
    secret: Secret
    public: PublicKey

    def sign(self, message: bytes) -> bytes:
        """Sign a message with this key's suite."""
        return self.suite.sign(self, message)


class SigningSuite(Protocol):
    """A signature algorithm, as the codec, keyring and trust list need it."""

    @property
    def cose_alg(self) -> int:
        """The COSE algorithm id carried in a code's protected header."""
        ...

    @property
    def jose_alg(self) -> str:
        """The JOSE ``alg`` name carried in the trust list."""
        ...

    def generate(self, random_bytes: RandomSource) -> PrivateKey:
        """Make a key pair from the given random source (deterministic for a seeded source)."""
        ...

    def sign(self, key: PrivateKey, message: bytes) -> bytes:
        """Sign a message, returning the raw fixed-size signature COSE carries."""
        ...

    def verify(self, key: PublicKey, signature: bytes, message: bytes) -> None:
        """Return if the signature is valid, else raise BadSignature."""
        ...

    def verifier(self, key: PublicKey) -> Verifier:
        """``verify`` bound to one key, with whatever the key needs done once already done.

        A trust list holds one per key, so that a scan does no per-key work (parsing a point,
        finding the suite) before the library's own verify call.
        """
        ...

    def public_to_jwk(self, key: PublicKey) -> JWKMembers:
        """Exactly the RFC 7638 required members of the key (they define its thumbprint)."""
        ...

    def public_from_jwk(self, jwk: Mapping[str, object]) -> PublicKey:
        """Read the key members of a JWK (other members are the caller's); KeyringError if bad."""
        ...

    def private_to_jwk(self, key: PrivateKey) -> JWKMembers:
        """The public members plus ``d``."""
        ...

    def private_from_jwk(self, jwk: Mapping[str, object]) -> PrivateKey:
        """Read a private JWK's key members and check ``d`` matches them; KeyringError if bad."""
        ...


_B64URL_ALPHABET: Final = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes binary members."""
    # binascii and translate, as base64.urlsafe_b64encode does inside, without its two Python
    # frames: 0.22 against 0.13 µs for a pseudonym, which every verify encodes (timeit).
    encoded = binascii.b2a_base64(data, newline=False).rstrip(b"=")
    return encoded.translate(_B64URL_ALPHABET).decode("ascii")


_B64URL_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly; ValueError unless ``text`` is the canonical spelling."""
    if not _B64URL_CHARS.issuperset(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    # Non-zero padding bits would give a second spelling of the same bytes.
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def deterministic_random(seed: bytes) -> RandomSource:
    """A reproducible byte stream (SHAKE-256 of the seed) for tests and vectors, never for keys."""
    position = 0

    def take(n: int) -> bytes:
        nonlocal position
        out = hashlib.shake_256(seed).digest(position + n)[position:]
        position += n
        return out

    return take


def jwk_member_bytes(jwk: Mapping[str, object], name: str, size: int) -> bytes:
    """A JWK member's bytes: an unpadded base64url string of exactly ``size`` bytes, else
    KeyringError naming the member (every suite reads its key members so)."""
    value = jwk.get(name)
    if not isinstance(value, str):
        raise KeyringError(f"JWK member {name!r} must be a string")
    try:
        data = b64url_decode(value)
    except ValueError as exc:
        raise KeyringError(f"JWK member {name!r} is not unpadded base64url") from exc
    if len(data) != size:
        raise KeyringError(f"JWK member {name!r} must encode {size} bytes")
    return data


def _check_members(jwk: Mapping[str, object], kty: str, crv: str) -> None:
    if jwk.get("kty") != kty:
        raise KeyringError(f"JWK member 'kty' must be {kty!r} for this algorithm")
    if jwk.get("crv") != crv:
        raise KeyringError(f"JWK member 'crv' must be {crv!r} for this algorithm")


def _ed25519_verify(public: bytes, signature: bytes, message: bytes) -> None:
    # libsodium takes a signed message (signature then message); a signature of any other length
    # would shift that boundary and verify different bytes, so refuse it first.
    # ``VerifyKey.verify`` only wraps ``crypto_sign_open`` (the call the offline bench times
    # as its floor): calling it directly keeps one Python frame off every scan.
    if len(signature) != Ed25519Suite.SIGNATURE_BYTES:
        raise BadSignature("an Ed25519 signature is 64 bytes")
    try:
        crypto_sign_open(signature + message, public)
    except nacl.exceptions.BadSignatureError:
        raise BadSignature() from None


class Ed25519Suite:
    """EdDSA over Ed25519 (RFC 8032, RFC 8037): the default suite.

    Signing and verifying go through libsodium (PyNaCl), measured about twice as fast as
    ``cryptography`` here; Ed25519 is deterministic, so both libraries give identical signatures.
    """

    __slots__ = ()

    cose_alg: Final = -8
    jose_alg: Final = "EdDSA"
    SIGNATURE_BYTES: Final = 64
    KEY_BYTES: Final = 32

    def __repr__(self) -> str:
        return "Ed25519Suite()"

    def from_seed(self, seed: bytes) -> PrivateKey:
        """The key pair whose RFC 8032 private key (the JWK ``d``) is this 32-byte seed."""
        if len(seed) != self.KEY_BYTES:
            raise KeyringError("an Ed25519 seed is 32 bytes")
        public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
        return PrivateKey(self, Secret(seed), PublicKey(self, public))

    def generate(self, random_bytes: RandomSource) -> PrivateKey:
        """Make a key pair from 32 bytes of the random source."""
        return self.from_seed(random_bytes(self.KEY_BYTES))

    def sign(self, key: PrivateKey, message: bytes) -> bytes:
        """Sign with libsodium, whose secret key is the seed followed by the public key."""
        signed = nacl.bindings.crypto_sign(message, key.secret.reveal() + key.public.data)
        return signed[: self.SIGNATURE_BYTES]

    def verify(self, key: PublicKey, signature: bytes, message: bytes) -> None:
        """Return if the signature is valid, else raise BadSignature."""
        _ed25519_verify(key.data, signature, message)

    def verifier(self, key: PublicKey) -> Verifier:
        """``verify`` bound to the key's 32 bytes."""
        return partial(_ed25519_verify, key.data)

    def public_to_jwk(self, key: PublicKey) -> JWKMembers:
        """RFC 8037 members: ``kty`` OKP, ``crv`` Ed25519, ``x``."""
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(key.data)}

    def public_from_jwk(self, jwk: Mapping[str, object]) -> PublicKey:
        """Read ``kty``, ``crv`` and ``x``."""
        _check_members(jwk, "OKP", "Ed25519")
        return PublicKey(self, jwk_member_bytes(jwk, "x", self.KEY_BYTES))

    def private_to_jwk(self, key: PrivateKey) -> JWKMembers:
        """The public members plus the seed as ``d``."""
        return {**self.public_to_jwk(key.public), "d": b64url_encode(key.secret.reveal())}

    def private_from_jwk(self, jwk: Mapping[str, object]) -> PrivateKey:
        """Read the seed ``d`` and check it yields ``x``."""
        public = self.public_from_jwk(jwk)
        key = self.from_seed(jwk_member_bytes(jwk, "d", self.KEY_BYTES))
        if key.public != public:
            raise KeyringError("JWK member 'd' does not belong to 'x'")
        return key


# The order n of the P-256 group (SEC 2, FIPS 186-5).
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# The largest s a signature may carry: with (r, s) valid, so is (r, n - s), so a code would have
# two spellings. Signers pick the low one and verifiers refuse the other (as BIP 62 and Ethereum
# do): a code then has exactly one valid encoding. Big-endian bytes of equal length compare as
# the integers do, so the check on the verify path is a bytes comparison.
_P256_HALF_ORDER: Final = _P256_ORDER // 2
_P256_HALF_ORDER_BYTES: Final = _P256_HALF_ORDER.to_bytes(32, "big")
_P256: Final = ec.SECP256R1()
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())


@lru_cache(maxsize=256)
def _p256_public(data: bytes) -> ec.EllipticCurvePublicKey:
    # Parsing a point checks it is on the curve, which costs more than a hash lookup; trust lists
    # hold a handful of keys, so a small cache keeps that work off the per-scan path.
    return ec.EllipticCurvePublicKey.from_encoded_point(_P256, data)


@lru_cache(maxsize=16)
def _p256_private(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    # Deriving the key object is a scalar multiplication; cache it for repeated signing.
    return ec.derive_private_key(int.from_bytes(scalar, "big"), _P256)


# DER heads for a signature whose r and s have no leading zero byte, by whether the top bit of each
# is set (a set bit takes a 0x00 so that the INTEGER stays positive): the SEQUENCE head by the
# number of such bytes, then each INTEGER's head.
_DER_SEQUENCE: Final = (b"\x30\x44", b"\x30\x45", b"\x30\x46")
_DER_INTEGER: Final = (b"\x02\x20", b"\x02\x21\x00")


def _der_signature(raw: bytes) -> bytes:
    """The DER ECDSA-Sig-Value that ``cryptography`` verifies, of a 64-byte r||s."""
    r_top, s_top = raw[0], raw[32]
    if r_top and s_top:
        # Almost every signature: both integers take all 32 bytes, so the DER is the raw
        # bytes behind fixed heads, without the two big-integer conversions.
        r_pad, s_pad = r_top >> 7, s_top >> 7
        return b"".join(
            (_DER_SEQUENCE[r_pad + s_pad], _DER_INTEGER[r_pad], raw[:32], _DER_INTEGER[s_pad],
             raw[32:])
        )  # fmt: skip
    # A leading zero byte (1 in 128 signatures) shortens an integer: the library encodes it.
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def low_s(s: int) -> int:
    """The one of ``s`` and ``n - s`` an ES256 signature carries (the lower)."""
    return _P256_ORDER - s if s > _P256_HALF_ORDER else s


def _es256_verify(public: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> None:
    if len(signature) != ES256Suite.SIGNATURE_BYTES:
        raise BadSignature("an ES256 signature is 64 bytes")
    if signature[32:] > _P256_HALF_ORDER_BYTES:
        raise BadSignature("an ES256 signature's s must be at most n/2 (low-S)")
    try:
        public.verify(_der_signature(signature), message, _ECDSA_SHA256)
    except InvalidSignature:
        raise BadSignature() from None


class ES256Suite:
    """ECDSA over P-256 with SHA-256 (RFC 7518, RFC 9053), for terminals that only have P-256.

    The signature on the wire is raw r||s, 32 bytes each, as COSE and JOSE require (not DER).
    """

    __slots__ = ()

    cose_alg: Final = -7
    jose_alg: Final = "ES256"
    SIGNATURE_BYTES: Final = 64
    COORDINATE_BYTES: Final = 32

    def __repr__(self) -> str:
        return "ES256Suite()"

    def from_scalar(self, scalar: bytes) -> PrivateKey:
        """The key pair whose private scalar (the JWK ``d``) is these 32 big-endian bytes."""
        if len(scalar) != self.COORDINATE_BYTES:
            raise KeyringError("a P-256 private scalar is 32 bytes")
        if not 0 < int.from_bytes(scalar, "big") < _P256_ORDER:
            raise KeyringError("a P-256 private scalar must lie in [1, n-1]")
        point = (
            _p256_private(scalar)
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        return PrivateKey(self, Secret(scalar), PublicKey(self, point))

    def generate(self, random_bytes: RandomSource) -> PrivateKey:
        """Draw 32-byte candidates until one is a valid scalar (FIPS 186-5 A.4.2 rejection)."""
        while True:
            candidate = random_bytes(self.COORDINATE_BYTES)
            if 0 < int.from_bytes(candidate, "big") < _P256_ORDER:
                return self.from_scalar(candidate)

    def sign(self, key: PrivateKey, message: bytes) -> bytes:
        """Sign (randomized ECDSA) and return raw r||s, with s low (at most n/2)."""
        r, s = decode_dss_signature(_p256_private(key.secret.reveal()).sign(message, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + low_s(s).to_bytes(32, "big")

    def verify(self, key: PublicKey, signature: bytes, message: bytes) -> None:
        """Return if the raw r||s signature is valid, else raise BadSignature."""
        _es256_verify(_p256_public(key.data), signature, message)

    def verifier(self, key: PublicKey) -> Verifier:
        """``verify`` bound to the key's parsed point."""
        return partial(_es256_verify, _p256_public(key.data))

    def public_to_jwk(self, key: PublicKey) -> JWKMembers:
        """RFC 7518 members: ``kty`` EC, ``crv`` P-256, ``x``, ``y``."""
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url_encode(key.data[1:33]),
            "y": b64url_encode(key.data[33:]),
        }

    def public_from_jwk(self, jwk: Mapping[str, object]) -> PublicKey:
        """Read ``kty``, ``crv``, ``x`` and ``y``, and check the point is on the curve."""
        _check_members(jwk, "EC", "P-256")
        x = jwk_member_bytes(jwk, "x", self.COORDINATE_BYTES)
        y = jwk_member_bytes(jwk, "y", self.COORDINATE_BYTES)
        data = b"\x04" + x + y
        try:
            _p256_public(data)
        except ValueError as exc:
            raise KeyringError("JWK members 'x' and 'y' are not a point on P-256") from exc
        return PublicKey(self, data)

    def private_to_jwk(self, key: PrivateKey) -> JWKMembers:
        """The public members plus the scalar as ``d``."""
        return {**self.public_to_jwk(key.public), "d": b64url_encode(key.secret.reveal())}

    def private_from_jwk(self, jwk: Mapping[str, object]) -> PrivateKey:
        """Read the scalar ``d`` and check it yields ``x`` and ``y``."""
        public = self.public_from_jwk(jwk)
        key = self.from_scalar(jwk_member_bytes(jwk, "d", self.COORDINATE_BYTES))
        if key.public != public:
            raise KeyringError("JWK member 'd' does not belong to 'x' and 'y'")
        return key


class SuiteRegistry:
    """The suites a party accepts, by COSE algorithm id and by JOSE name; immutable."""

    __slots__ = ("_by_cose", "_by_jose")

    def __init__(self, suites: Iterable[SigningSuite]) -> None:
        self._by_cose: dict[int, SigningSuite] = {}
        self._by_jose: dict[str, SigningSuite] = {}
        for suite in suites:
            if suite.cose_alg in self._by_cose or suite.jose_alg in self._by_jose:
                raise KeyringError(f"suite {suite.jose_alg} is registered twice")
            self._by_cose[suite.cose_alg] = suite
            self._by_jose[suite.jose_alg] = suite

    def __repr__(self) -> str:
        return f"SuiteRegistry({list(self._by_jose)})"

    def __iter__(self) -> Iterator[SigningSuite]:
        return iter(self._by_cose.values())

    def with_suite(self, suite: SigningSuite) -> SuiteRegistry:
        """A registry with one more suite; the way SM2 joins without touching the codec."""
        return SuiteRegistry([*self._by_cose.values(), suite])

    def by_cose_alg(self, alg: int) -> SigningSuite | None:
        """The suite for a COSE algorithm id, or None if this registry does not accept it."""
        return self._by_cose.get(alg)

    def by_jose_alg(self, name: str) -> SigningSuite | None:
        """The suite for a JOSE ``alg`` name, or None if this registry does not accept it."""
        return self._by_jose.get(name)


ED25519: Final = Ed25519Suite()
ES256: Final = ES256Suite()
DEFAULT_SUITE: Final[SigningSuite] = ED25519
