"""SM2 with SM3 (GB/T 32918, GB/T 32905): the national signing suite, "SM2SM3".

One fully specified algorithm: SM2 on the recommended curve of GB/T 32918.5, the hash SM3, the
signer ID ``1234567812345678`` (the standard's default) and the signature as raw r||s, 32
bytes each. No IANA COSE algorithm or curve exists for SM2, so its labels are in the COSE
private-use range (-65537 for both; the expired WebAuthn SM2 draft's -48 is now ML-DSA-44).
``docs/code-format.md`` specifies the suite for verifier vendors.

The suite computes Z_A and e = SM3(Z_A || M) itself and hands only the digest to a
:class:`SM2Backend`: the library can change, and a hardware module (an SDF device, GM/T 0018)
can hold the key later, behind the same two calls. The backend here is ``gmssl-pyx`` (GmSSL),
whose digest functions run about ten times faster than its message functions.

Malleability: an ECDSA signature (r, s) has a twin (r, n - s) anyone can make, which is why
ES256 codes carry the low s. SM2 has no such twin: its check is x1(s·G + (r + s)·P) + e = r, and
replacing s by n - s changes the scalar t = r + s, so the point, so x1. A signature still has
only the one spelling r||s with both in [1, n - 1]; anything else is refused before the library
sees it.
"""

from __future__ import annotations

__all__ = [
    "CURVE_A",
    "CURVE_B",
    "CURVE_GX",
    "CURVE_GY",
    "CURVE_N",
    "CURVE_P",
    "DEFAULT_SIGNER_ID",
    "GMSSL",
    "SM2",
    "GmSSLBackend",
    "SM2Backend",
    "SM2Suite",
    "digest_e",
    "on_curve",
    "z_a",
]

from collections.abc import Mapping
from functools import partial
from typing import Final, Protocol

import gmssl_pyx
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from codeengine.code.errors import BadSignature, KeyringError
from codeengine.code.national import sm3
from codeengine.code.secret import Secret
from codeengine.code.suites import (
    JWKMembers,
    PrivateKey,
    PublicKey,
    RandomSource,
    Verifier,
    b64url_encode,
    jwk_member_bytes,
)

# The recommended curve y^2 = x^3 + ax + b over F_p (GB/T 32918.5), generator G of order n,
# cofactor 1: every point on the curve but the point at infinity is a valid public key.
CURVE_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
CURVE_A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
CURVE_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
CURVE_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
CURVE_GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
CURVE_GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_SIGNER_ID: Final = b"1234567812345678"
_COORDINATE_BYTES: Final = 32
_CURVE_PREFIX: Final = b"".join(
    value.to_bytes(_COORDINATE_BYTES, "big") for value in (CURVE_A, CURVE_B, CURVE_GX, CURVE_GY)
)


def on_curve(point: bytes) -> bool:
    """Whether 64 bytes x||y are a point on the curve (so, with cofactor 1, a public key)."""
    if len(point) != 2 * _COORDINATE_BYTES:
        return False
    x = int.from_bytes(point[:_COORDINATE_BYTES], "big")
    y = int.from_bytes(point[_COORDINATE_BYTES:], "big")
    return (
        x < CURVE_P and y < CURVE_P and (y * y - (x * x * x + CURVE_A * x + CURVE_B)) % CURVE_P == 0
    )


def z_a(public: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), ENTL the ID's length in bits."""
    entl = (8 * len(signer_id)).to_bytes(2, "big")
    return sm3(entl + signer_id + _CURVE_PREFIX + public)


def digest_e(za: bytes, message: bytes) -> bytes:
    """e = SM3(Z_A || M): the 32 bytes the signature signs."""
    return sm3(za + message)


class SM2Backend(Protocol):
    """The two calls the suite needs from an SM2 implementation: sign and verify a digest e.

    ``secret`` is whatever the backend keeps a key as: the 32-byte scalar for a library, a key
    index for a hardware module. Signatures are (r, s) as integers, checked in range by the suite.
    """

    def sign_digest(self, secret: Secret, digest: bytes) -> tuple[int, int]:
        """Sign the 32-byte digest e with a fresh nonce."""
        ...

    def verify_digest(self, public: bytes, digest: bytes, r: int, s: int) -> bool:
        """Whether (r, s) signs e under the 64-byte public key x||y."""
        ...


class GmSSLBackend:
    """SM2 through ``gmssl-pyx`` (GmSSL): constant-time signing, nonces from the OS."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "GmSSLBackend()"

    def sign_digest(self, secret: Secret, digest: bytes) -> tuple[int, int]:
        """GmSSL's digest signing; it answers DER, taken apart here."""
        r, s = decode_dss_signature(gmssl_pyx.sm2_sign_sm3_digest(secret.reveal(), digest))
        return r, s

    def verify_digest(self, public: bytes, digest: bytes, r: int, s: int) -> bool:
        """GmSSL's digest verification, given the DER it takes."""
        try:
            der = encode_dss_signature(r, s)
            return bool(gmssl_pyx.sm2_verify_sm3_digest(public, digest, der))
        except gmssl_pyx.GmsslInnerError:
            return False


GMSSL: Final = GmSSLBackend()


def _check_signature(signature: bytes) -> tuple[int, int]:
    if len(signature) != SM2Suite.SIGNATURE_BYTES:
        raise BadSignature("an SM2 signature is 64 bytes")
    r = int.from_bytes(signature[:_COORDINATE_BYTES], "big")
    s = int.from_bytes(signature[_COORDINATE_BYTES:], "big")
    # GB/T 32918.2 verification steps B1, B2 and B5 (t = r + s mod n must not be 0).
    if not (0 < r < CURVE_N and 0 < s < CURVE_N) or (r + s) % CURVE_N == 0:
        raise BadSignature("an SM2 signature's r and s lie in [1, n-1], r + s not n")
    return r, s


def _sm2_verify(
    backend: SM2Backend, public: bytes, za: bytes, signature: bytes, message: bytes
) -> None:
    r, s = _check_signature(signature)
    if not backend.verify_digest(public, sm3(za + message), r, s):
        raise BadSignature()


# Point arithmetic on public values only (a key recovered from its signatures, below): affine
# coordinates, None for the point at infinity. Never given a secret: Python integers are not
# constant-time.
_Point = tuple[int, int] | None


def _add(p1: _Point, p2: _Point) -> _Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % CURVE_P == 0:
            return None
        slope = (3 * x1 * x1 + CURVE_A) * pow(2 * y1, -1, CURVE_P)
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, CURVE_P)
    x3 = (slope * slope - x1 - x2) % CURVE_P
    return x3, (slope * (x1 - x3) - y1) % CURVE_P


def _multiply(scalar: int, point: _Point) -> _Point:
    result: _Point = None
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _encode_point(point: _Point) -> bytes:
    assert point is not None
    return point[0].to_bytes(_COORDINATE_BYTES, "big") + point[1].to_bytes(_COORDINATE_BYTES, "big")


# Two fixed digests the key signs to reveal its public key (any distinct 32 bytes would do).
_PROBES: Final = (sm3(b"codeengine sm2 public key/1"), sm3(b"codeengine sm2 public key/2"))


def _recover_public(backend: SM2Backend, secret: Secret) -> bytes:
    """The public key of ``secret``, from two of its signatures.

    The public key is d·G, but computing that here would do arithmetic on the secret scalar in
    Python, whose integers are not constant-time. A signature (r, s) on e gives the nonce point
    R = (r - e mod n, ±y) and P = (r + s)^-1 · (R - s·G) from public values alone; R's two signs
    give two candidates, and the one that also verifies a second signature is the key.
    """
    first, second = _PROBES
    r, s = backend.sign_digest(secret, first)
    t_inverse = pow((r + s) % CURVE_N, -1, CURVE_N)
    minus_s_g = _multiply(CURVE_N - s, (CURVE_GX, CURVE_GY))
    check_r, check_s = backend.sign_digest(secret, second)
    x = (r - int.from_bytes(first, "big")) % CURVE_N
    # x1 is a field element and n < p, so x1 may also be the residue plus n (chance ~2^-128).
    for candidate_x in (x, x + CURVE_N):
        rhs = (candidate_x**3 + CURVE_A * candidate_x + CURVE_B) % CURVE_P
        y = pow(rhs, (CURVE_P + 1) // 4, CURVE_P)
        if candidate_x >= CURVE_P or y * y % CURVE_P != rhs:
            continue
        for candidate_y in (y, CURVE_P - y):
            point = _multiply(t_inverse, _add((candidate_x, candidate_y), minus_s_g))
            if point is None:
                continue
            public = _encode_point(point)
            if backend.verify_digest(public, second, check_r, check_s):
                return public
    raise KeyringError("the SM2 backend's signatures do not reveal a public key")


class SM2Suite:
    """SM2 with SM3, ID 1234567812345678, signature r||s (64 bytes): COSE -65537, JOSE SM2SM3.

    A public key's canonical encoding (``PublicKey.data``) is the 64 bytes x||y; a private key's
    secret is the 32-byte big-endian scalar d in [1, n-2].
    """

    __slots__ = ("_backend",)

    cose_alg: Final = -65537
    jose_alg: Final = "SM2SM3"
    COSE_CURVE: Final = -65537
    """The private-use COSE_Key ``crv`` of the recommended curve (with ``kty`` 2, EC2)."""
    JWK_CURVE: Final = "SM2"
    SIGNATURE_BYTES: Final = 64
    SCALAR_BYTES: Final = 32

    def __init__(self, backend: SM2Backend = GMSSL) -> None:
        self._backend = backend

    def __repr__(self) -> str:
        return f"SM2Suite({self._backend!r})"

    def from_scalar(self, scalar: bytes) -> PrivateKey:
        """The key pair whose private scalar (the JWK ``d``) is these 32 big-endian bytes."""
        if len(scalar) != self.SCALAR_BYTES:
            raise KeyringError("an SM2 private scalar is 32 bytes")
        # d = n - 1 is excluded: signing divides by 1 + d (GB/T 32918.1, 6.1).
        if not 0 < int.from_bytes(scalar, "big") < CURVE_N - 1:
            raise KeyringError("an SM2 private scalar must lie in [1, n-2]")
        secret = Secret(scalar)
        return PrivateKey(self, secret, PublicKey(self, _recover_public(self._backend, secret)))

    def generate(self, random_bytes: RandomSource) -> PrivateKey:
        """Draw 32-byte candidates until one is a valid scalar (rejection, no bias)."""
        while True:
            candidate = random_bytes(self.SCALAR_BYTES)
            if 0 < int.from_bytes(candidate, "big") < CURVE_N - 1:
                return self.from_scalar(candidate)

    def sign(self, key: PrivateKey, message: bytes) -> bytes:
        """Sign SM3(Z_A || message) and return raw r||s."""
        digest = digest_e(z_a(key.public.data), message)
        r, s = self._backend.sign_digest(key.secret, digest)
        return r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")

    def verify(self, key: PublicKey, signature: bytes, message: bytes) -> None:
        """Return if the raw r||s signature is valid, else raise BadSignature."""
        _sm2_verify(self._backend, key.data, z_a(key.data), signature, message)

    def verifier(self, key: PublicKey) -> Verifier:
        """``verify`` bound to the key, with its Z_A computed once."""
        return partial(_sm2_verify, self._backend, key.data, z_a(key.data))

    def public_to_jwk(self, key: PublicKey) -> JWKMembers:
        """The members Chinese implementations use: ``kty`` EC, ``crv`` SM2, ``x``, ``y``."""
        return {
            "crv": self.JWK_CURVE,
            "kty": "EC",
            "x": b64url_encode(key.data[:_COORDINATE_BYTES]),
            "y": b64url_encode(key.data[_COORDINATE_BYTES:]),
        }

    def public_from_jwk(self, jwk: Mapping[str, object]) -> PublicKey:
        """Read ``kty``, ``crv``, ``x`` and ``y``, and check the point is on the curve."""
        if jwk.get("kty") != "EC":
            raise KeyringError("JWK member 'kty' must be 'EC' for this algorithm")
        if jwk.get("crv") != self.JWK_CURVE:
            raise KeyringError(f"JWK member 'crv' must be {self.JWK_CURVE!r} for this algorithm")
        x = jwk_member_bytes(jwk, "x", _COORDINATE_BYTES)
        data = x + jwk_member_bytes(jwk, "y", _COORDINATE_BYTES)
        if not on_curve(data):
            raise KeyringError("JWK members 'x' and 'y' are not a point on the SM2 curve")
        return PublicKey(self, data)

    def private_to_jwk(self, key: PrivateKey) -> JWKMembers:
        """The public members plus the scalar as ``d``."""
        return {**self.public_to_jwk(key.public), "d": b64url_encode(key.secret.reveal())}

    def private_from_jwk(self, jwk: Mapping[str, object]) -> PrivateKey:
        """Read the scalar ``d`` and check it yields ``x`` and ``y``."""
        public = self.public_from_jwk(jwk)
        key = self.from_scalar(jwk_member_bytes(jwk, "d", _COORDINATE_BYTES))
        if key.public != public:
            raise KeyringError("JWK member 'd' does not belong to 'x' and 'y'")
        return key


SM2: Final = SM2Suite()
