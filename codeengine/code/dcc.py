"""The EU Digital COVID Certificate (``HC1:``): decode and verify, with the clock passed in.

The chain is the hcert specification's: the prefix ``HC1:``, base45, zlib, a COSE_Sign1
(optionally tagged 18, optionally wrapped in the CWT tag 61) whose payload is a CWT claims set
carrying the certificate in claim -260. It is signed (ES256 or PS256) by a document signer
certificate (DSC) that ops put in the DCC trust list (:class:`DCCTrustList`); the key id is the
first 8 bytes of the SHA-256 of the certificate, and the certificate's extended key usage may
limit it to vaccination, test or recovery statements. Each failure raises the engine's
``VerificationError`` with the mapped reason (docs/formats.md has the table).
"""

from __future__ import annotations

__all__ = [
    "DCC_TYPES",
    "MAX_COSE_BYTES",
    "MAX_TEXT_CHARS",
    "MIN_RSA_BITS",
    "PREFIX",
    "DCCClaims",
    "DCCSign1",
    "DCCSigner",
    "DCCTrustList",
    "check_key_usage",
    "check_signature",
    "check_window_at",
    "credential_of",
    "decode_cose",
    "decompress",
    "parse_claims",
    "parse_hcert",
    "unprefix",
    "verify_dcc_at",
]

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from codeengine.code.base45 import b45decode
from codeengine.code.cbor import Tag, loads
from codeengine.code.credential import Credential, CredentialFormat
from codeengine.code.dccschema import check_schema
from codeengine.code.errors import (
    BadSignature,
    Expired,
    KeyringError,
    MalformedCode,
    NotYetValid,
    UnknownKeyId,
    UnsupportedAlgorithm,
)
from codeengine.code.inflate import inflate_bounded
from codeengine.code.token import sig_structure

PREFIX: Final = "HC1:"
"""The context identifier of a DCC; any other (``HC2:``, ``HL0:``, none) is not one."""

MAX_TEXT_CHARS: Final = 8192
"""Longer text is refused unread: the largest QR code holds 4,296 alphanumeric characters."""

MIN_RSA_BITS: Final = 2048
"""A smaller RSA signer key is refused when the trust list is read (hcert 3.2: 2048 or more)."""

MAX_COSE_BYTES: Final = 65536
"""zlib output beyond this is refused, so a small compressed text cannot expand without bound."""

_ES256: Final = -7
_PS256: Final = -37
_HEADER_ALG: Final = 1
_HEADER_KID: Final = 4
_CLAIM_ISS: Final = 1
_CLAIM_EXP: Final = 4
_CLAIM_IAT: Final = 6
_CLAIM_HCERT: Final = -260
_HCERT_V1: Final = 1
_TAG_COSE_SIGN1: Final = 18
_TAG_CWT: Final = 61
_KID_BYTES: Final = 8

DCC_TYPES: Final = MappingProxyType({"v": "vaccination", "t": "test", "r": "recovery"})
"""The certificate's group key and the type it makes the certificate."""

# The extended-key-usage OIDs a DSC may carry to limit what it signs (hcert specification 5.1.1);
# both spellings are in use. A DSC with none of them may sign every type.
_KEY_USAGE: Final = MappingProxyType(
    {
        oid: kind
        for base in ("1.3.6.1.4.1.1847.2021.1", "1.3.6.1.4.1.0.1847.2021.1")
        for oid, kind in (
            (f"{base}.1", "test"),
            (f"{base}.2", "vaccination"),
            (f"{base}.3", "recovery"),
        )
    }
)


class DCCSign1(NamedTuple):
    """A structurally valid COSE_Sign1 of a DCC, its signature not yet checked."""

    alg: int
    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes


class DCCClaims(NamedTuple):
    """The CWT claims of a DCC: issuing country, issue and expiry time, the certificate."""

    issuer: str
    iat: int
    exp: int
    hcert: Mapping[str, object]
    type: str


@dataclass(frozen=True, slots=True)
class DCCSigner:
    """A document signer certificate ops trust, with the types its key usage allows."""

    kid: bytes
    certificate: x509.Certificate
    types: frozenset[str] | None
    """The types the DSC may sign (from its extended key usage), or None for all."""

    @classmethod
    def from_der(cls, der: bytes) -> DCCSigner:
        """A signer from its DER certificate; KeyringError if it is not an ES256 or RSA one."""
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise KeyringError("DCC trust list: not a DER X.509 certificate") from exc
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey) and not (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            raise KeyringError("DCC trust list: a signer key must be P-256 or RSA")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise KeyringError(
                f"DCC trust list: an RSA signer key has at least {MIN_RSA_BITS} bits"
            )
        return cls(
            hashlib.sha256(der).digest()[:_KID_BYTES], certificate, _usage_types(certificate)
        )


def _usage_types(certificate: x509.Certificate) -> frozenset[str] | None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        # An extended key usage with no OID at all (seen in issuers' test certificates) limits
        # nothing, like none.
        return None
    types = frozenset(_KEY_USAGE[o.dotted_string] for o in usage if o.dotted_string in _KEY_USAGE)
    return types or None


@dataclass(frozen=True, slots=True)
class DCCTrustList:
    """The DSCs a verifier trusts, by key id (several may share one: each is tried)."""

    signers: Mapping[bytes, tuple[DCCSigner, ...]]

    @classmethod
    def of(cls, signers: Iterable[DCCSigner]) -> DCCTrustList:
        """A trust list of these signers."""
        by_kid: dict[bytes, tuple[DCCSigner, ...]] = {}
        for signer in signers:
            by_kid[signer.kid] = (*by_kid.get(signer.kid, ()), signer)
        return cls(MappingProxyType(by_kid))

    @classmethod
    def from_json(cls, document: str | bytes) -> DCCTrustList:
        """Parse ``{"certificates": ["<base64 DER>", ...]}``; KeyringError naming the problem."""
        try:
            parsed = json.loads(document)
        except ValueError as exc:
            raise KeyringError("DCC trust list: not JSON") from exc
        entries = parsed.get("certificates") if isinstance(parsed, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise KeyringError("DCC trust list: 'certificates' must be a list of base64 strings")
        try:
            ders = [base64.b64decode(entry, validate=True) for entry in entries]
        except binascii.Error as exc:
            raise KeyringError("DCC trust list: a certificate is not base64") from exc
        return cls.of(DCCSigner.from_der(der) for der in ders)

    def __len__(self) -> int:
        return sum(len(signers) for signers in self.signers.values())


def unprefix(text: str) -> str:
    """The base45 text after ``HC1:``; MalformedCode for any other or no prefix."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise MalformedCode(f"a DCC starts with {PREFIX!r}")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedCode("too long to be a DCC")
    return text[len(PREFIX) :]


def decompress(data: bytes) -> bytes:
    """The zlib-inflated COSE bytes; MalformedCode if not zlib, truncated or too large."""
    return inflate_bounded(data, zlib.MAX_WBITS, MAX_COSE_BYTES, "DCC: the zlib stream")


def _header(data: object, what: str) -> Mapping[object, object]:
    if isinstance(data, bytes):
        decoded = loads(data) if data else {}
        if not isinstance(decoded, dict):
            raise MalformedCode(f"DCC: the {what} header is not a map")
        return decoded
    if not isinstance(data, dict):
        raise MalformedCode(f"DCC: the {what} header is not a map")
    return data


def decode_cose(data: bytes) -> DCCSign1:
    """Parse the COSE_Sign1 (tags 61 and 18 optional); the signature is not checked."""
    item = loads(data)
    if isinstance(item, Tag) and item.number == _TAG_CWT:
        item = item.value
    if isinstance(item, Tag) and item.number == _TAG_COSE_SIGN1:
        item = item.value
    if not isinstance(item, list) or len(item) != 4:
        raise MalformedCode("DCC: not a COSE_Sign1 (an array of four)")
    protected_bytes, unprotected, payload, signature = item
    if not isinstance(protected_bytes, bytes):
        raise MalformedCode("DCC: the protected header is not a byte string")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise MalformedCode("DCC: the payload and the signature are byte strings")
    protected = _header(protected_bytes, "protected")
    unprotected_map = _header(unprotected, "unprotected")
    # A header in the protected bucket is signed, so it wins over the unprotected one.
    alg = protected.get(_HEADER_ALG, unprotected_map.get(_HEADER_ALG))
    kid = protected.get(_HEADER_KID, unprotected_map.get(_HEADER_KID))
    if type(alg) is not int:
        raise MalformedCode("DCC: no algorithm in the COSE header")
    if not isinstance(kid, bytes):
        raise MalformedCode("DCC: no key id in the COSE header")
    return DCCSign1(alg, kid, protected_bytes, payload, signature)


def _numeric_date(value: object, what: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value >= 0:
        return int(value)
    raise MalformedCode(f"DCC: {what} must be a NumericDate")


def parse_hcert(data: bytes) -> Mapping[str, object]:
    """The certificate from its CBOR, bare or in the CWT claims set (-260) that carries it;
    MalformedCode if it is neither."""
    value = loads(data)
    if isinstance(value, dict) and _CLAIM_HCERT in value:
        return parse_claims(data).hcert
    return _hcert_map(value)


def _hcert_map(value: object) -> Mapping[str, object]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise MalformedCode("DCC: the certificate is not a map with text keys")
    return value


def parse_claims(payload: bytes) -> DCCClaims:
    """The CWT claims; MalformedCode without iss-less times or the hcert v1 claim."""
    claims = loads(payload)
    if not isinstance(claims, dict):
        raise MalformedCode("DCC: the payload is not a CWT claims map")
    hcert = claims.get(_CLAIM_HCERT)
    if not isinstance(hcert, dict) or _HCERT_V1 not in hcert:
        raise MalformedCode("DCC: no hcert claim (-260) with a version 1 certificate")
    certificate = _hcert_map(hcert[_HCERT_V1])
    groups = [key for key in DCC_TYPES if key in certificate]
    issuer = claims.get(_CLAIM_ISS, "")
    return DCCClaims(
        issuer if isinstance(issuer, str) else "",
        _numeric_date(claims.get(_CLAIM_IAT), "iat"),
        _numeric_date(claims.get(_CLAIM_EXP), "exp"),
        certificate,
        DCC_TYPES[groups[0]] if len(groups) == 1 else "",
    )


def _verify_with(sign1: DCCSign1, signer: DCCSigner) -> bool:
    key = signer.certificate.public_key()
    message = sig_structure(sign1.protected, sign1.payload)
    try:
        if sign1.alg == _ES256 and isinstance(key, ec.EllipticCurvePublicKey):
            if len(sign1.signature) != 64:
                return False
            der = encode_dss_signature(
                int.from_bytes(sign1.signature[:32], "big"),
                int.from_bytes(sign1.signature[32:], "big"),
            )
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
            return True
        if sign1.alg == _PS256 and isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            key.verify(sign1.signature, message, pss, hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    raise UnsupportedAlgorithm("the DCC's algorithm is not its signer's key type")


def check_signature(sign1: DCCSign1, trust: DCCTrustList) -> DCCSigner:
    """The trusted signer whose key verifies the signature; the engine's refusal otherwise."""
    if sign1.alg not in (_ES256, _PS256):
        raise UnsupportedAlgorithm("a DCC is accepted signed with ES256 or PS256")
    signers = trust.signers.get(sign1.kid)
    if not signers:
        raise UnknownKeyId("the DCC's signer is not in the DCC trust list")
    for signer in signers:
        if _verify_with(sign1, signer):
            return signer
    raise BadSignature("the DCC's signature does not verify")


def check_key_usage(signer: DCCSigner, claims: DCCClaims) -> None:
    """Refuse a certificate type the signer's extended key usage does not allow it to sign."""
    if signer.types is not None and claims.type not in signer.types:
        raise UnknownKeyId("the DCC's signer may not sign this type of certificate")


def check_window_at(claims: DCCClaims, now: int, skew_s: int = 0) -> None:
    """Refuse a DCC expired at ``now``, or issued after it, beyond ``skew_s`` seconds."""
    if now > claims.exp + skew_s:
        raise Expired("the DCC has expired")
    if claims.iat > now + skew_s:
        raise NotYetValid("the DCC was issued after the verifier's clock")


def verify_dcc_at(text: str, trust: DCCTrustList, now: int, skew_s: int = 0) -> Credential:
    """Verify a scanned ``HC1:`` text at ``now``: what it is, or the engine's refusal.

    The order: prefix, base45, zlib, COSE, claims (MALFORMED), algorithm, signer, signature,
    key usage, schema, then the time window, so that only a signed certificate is called
    expired.
    """
    sign1 = decode_cose(decompress(b45decode(unprefix(text))))
    claims = parse_claims(sign1.payload)
    signer = check_signature(sign1, trust)
    check_key_usage(signer, claims)
    check_schema(claims.hcert)
    check_window_at(claims, now, skew_s)
    return credential_of(claims)


def credential_of(claims: DCCClaims) -> Credential:
    """What a DCC is, for the verdict: its type, dates and issuing country."""
    return Credential(CredentialFormat.DCC, claims.type, claims.iat, claims.exp, claims.issuer)
