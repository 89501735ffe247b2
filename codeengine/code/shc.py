"""SMART Health Cards (``shc:/``): decode and verify, with the clock passed in.

A card's QR text is ``shc:/`` and the numeric encoding of a compact JWS (each character as two
digits, its code minus 45), possibly split over several QR codes (``shc:/i/n/...``, one per
line when a terminal scans them all). The JWS is ES256-signed, its payload raw-DEFLATE
compressed (``zip: DEF``), its ``kid`` one of the issuer's keys. The verifier trusts the issuers
ops list in the SHC trust list (:class:`SHCTrustList`): each with its key set (JWKS) and the
revocation lists of its keys, which revoke a card by its ``rid``, for ever or for cards issued
before a time. Each failure raises the engine's ``VerificationError`` with the mapped reason
(docs/formats.md has the table).
"""

from __future__ import annotations

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_CHARS",
    "PREFIX",
    "SHCIssuer",
    "SHCToken",
    "SHCTrustList",
    "check_revocation",
    "check_signature",
    "check_window_at",
    "credential_of",
    "decode_jws",
    "numeric_to_jws",
    "verify_shc_at",
]

import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from codeengine.code.credential import Credential, CredentialFormat
from codeengine.code.errors import (
    BadSignature,
    Expired,
    KeyringError,
    MalformedCode,
    NotYetValid,
    Revoked,
    UnknownKeyId,
    UnsupportedAlgorithm,
)
from codeengine.code.inflate import inflate_bounded
from codeengine.code.suites import b64url_decode

PREFIX: Final = "shc:/"
"""What every SMART Health Card QR text starts with."""

MAX_TEXT_CHARS: Final = 16384
"""Longer text is refused unread: more than a card's QR codes hold, all chunks together."""

MAX_PAYLOAD_BYTES: Final = 262144
"""Inflated payloads beyond this are refused, so a small card cannot expand without bound."""

_SINGLE: Final = re.compile(r"shc:/([0-9]+)")
_CHUNK: Final = re.compile(r"shc:/([0-9]+)/([0-9]+)/([0-9]+)")
_MAX_CHUNKS: Final = 16
_DIGIT_OFFSET: Final = 45
_MAX_PAIR: Final = ord("z") - _DIGIT_OFFSET
# The card types of the vc.type list, most specific first; a card names one or more of them.
_TYPES: Final = ("immunization", "laboratory", "covid19", "health-card")
_TYPE_BASE: Final = "https://smarthealth.cards#"
_RID_METHOD: Final = "rid"
_DIGIT_VALUES: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_INVALID_PAIR: Final = 0
_PAIR_CHARS: Final = bytes(
    n + _DIGIT_OFFSET if n <= _MAX_PAIR else _INVALID_PAIR for n in range(256)
)


class SHCToken(NamedTuple):
    """A structurally valid card, its signature not yet checked."""

    kid: str
    alg: str
    signing_input: bytes
    signature: bytes
    payload: Mapping[str, Any]
    issuer: str
    nbf: float
    exp: float | None
    rid: str | None


@dataclass(frozen=True, slots=True)
class SHCIssuer:
    """A trusted issuer: its URL, its P-256 keys by kid, and the rids revoked per key.

    A revoked rid maps to None (every card with it) or to the time before which cards with it
    were issued revoked.
    """

    iss: str
    keys: Mapping[str, ec.EllipticCurvePublicKey]
    revoked: Mapping[str, Mapping[str, int | None]]

    @classmethod
    def from_json(cls, entry: object) -> SHCIssuer:
        """One ``issuers`` entry: ``{"iss", "jwks": {"keys": [...]}, "crls": [...]}``."""
        if not isinstance(entry, dict) or not isinstance(entry.get("iss"), str):
            raise KeyringError("SHC trust list: an issuer needs its 'iss' URL")
        iss: str = entry["iss"]
        jwks = entry.get("jwks")
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise KeyringError(f"SHC trust list: {iss}: 'jwks' must be a key set")
        keys = {kid: key for kid, key in (_jwk(jwk, iss) for jwk in jwks["keys"]) if key}
        if not keys:
            raise KeyringError(f"SHC trust list: {iss}: no ES256 key in its key set")
        crls = entry.get("crls", [])
        if not isinstance(crls, list):
            raise KeyringError(f"SHC trust list: {iss}: 'crls' must be a list")
        counters = {crl.get("kid"): crl.get("ctr") for crl in crls if isinstance(crl, dict)}
        revoked = dict(_crl(crl, iss) for crl in crls)
        _check_crl_versions(iss, jwks["keys"], counters)
        return cls(iss, MappingProxyType(keys), MappingProxyType(revoked))


def _check_crl_versions(iss: str, jwks: list[Any], counters: Mapping[object, object]) -> None:
    """Refuse a key set whose keys announce a revocation list (``crlVersion``) that the entry
    lacks or holds in an older version: verifiers SHALL check it, and a trust list without it
    would pass every card the issuer revoked."""
    for jwk in jwks:
        version = jwk.get("crlVersion") if isinstance(jwk, dict) else None
        if version is None:
            continue
        kid = jwk.get("kid")
        counter = counters.get(kid)
        if kid not in counters:
            raise KeyringError(
                f"SHC trust list: {iss}: key {kid} has a revocation list (crlVersion {version}); "
                "add it to 'crls'"
            )
        if not isinstance(counter, int) or not isinstance(version, int) or counter < version:
            raise KeyringError(
                f"SHC trust list: {iss}: the revocation list of key {kid} is older (ctr "
                f"{counter}) than its key set announces (crlVersion {version})"
            )


def _jwk(jwk: object, iss: str) -> tuple[str, ec.EllipticCurvePublicKey | None]:
    """A kid and its P-256 key; None for a key that cannot sign a card (another kty or curve)."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        raise KeyringError(f"SHC trust list: {iss}: every key needs a kid")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        return jwk["kid"], None
    try:
        x, y = b64url_decode(str(jwk["x"])), b64url_decode(str(jwk["y"]))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("a P-256 coordinate is 32 bytes")
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except (KeyError, ValueError) as exc:
        raise KeyringError(f"SHC trust list: {iss}: key {jwk['kid']} is not a P-256 key") from exc
    return jwk["kid"], key


def _crl(crl: object, iss: str) -> tuple[str, Mapping[str, int | None]]:
    if (
        not isinstance(crl, dict)
        or not isinstance(crl.get("kid"), str)
        or crl.get("method") != _RID_METHOD
        or not isinstance(crl.get("rids"), list)
    ):
        raise KeyringError(f"SHC trust list: {iss}: a CRL needs kid, method 'rid' and rids")
    revoked: dict[str, int | None] = {}
    for entry in crl["rids"]:
        rid, dot, before = str(entry).partition(".")
        if not rid or (dot and not before.isdigit()):
            raise KeyringError(f"SHC trust list: {iss}: a revoked rid is not rid[.timestamp]")
        # The same rid listed for ever and up to a time: for ever wins.
        held = revoked.get(rid, 0)
        revoked[rid] = None if not dot or held is None else max(int(before), held)
    return crl["kid"], MappingProxyType(revoked)


@dataclass(frozen=True, slots=True)
class SHCTrustList:
    """The issuers a verifier trusts, by their ``iss`` URL."""

    issuers: Mapping[str, SHCIssuer]

    @classmethod
    def of(cls, issuers: Iterable[SHCIssuer]) -> SHCTrustList:
        """A trust list of these issuers."""
        return cls(MappingProxyType({issuer.iss: issuer for issuer in issuers}))

    @classmethod
    def from_json(cls, document: str | bytes) -> SHCTrustList:
        """Parse ``{"issuers": [...]}``; KeyringError naming the problem."""
        try:
            parsed = json.loads(document)
        except ValueError as exc:
            raise KeyringError("SHC trust list: not JSON") from exc
        entries = parsed.get("issuers") if isinstance(parsed, dict) else None
        if not isinstance(entries, list):
            raise KeyringError("SHC trust list: 'issuers' must be a list")
        return cls.of(SHCIssuer.from_json(entry) for entry in entries)

    def __len__(self) -> int:
        return len(self.issuers)


def _digits_to_text(digits: str) -> str:
    """The text of the numeric encoding; ``digits`` holds only the digits 0-9 (the caller's
    pattern says so)."""
    if len(digits) % 2:
        raise MalformedCode("SHC: an odd number of digits")
    # Every pair at once, as the base45 decoder does its triplets: the tens digits and the ones
    # digits each become one big integer of one byte a digit, and 10 * tens + ones is then
    # every pair's value in its own byte (at most 99: no carry). A card has about a thousand
    # pairs, and a Python loop over them cost more than the signature.
    values = digits.encode("ascii").translate(_DIGIT_VALUES)
    tens, ones = int.from_bytes(values[0::2], "big"), int.from_bytes(values[1::2], "big")
    text = (10 * tens + ones).to_bytes(len(values) // 2, "big").translate(_PAIR_CHARS)
    if _INVALID_PAIR in text:
        raise MalformedCode("SHC: a digit pair outside the numeric encoding")
    return text.decode("ascii")


def numeric_to_jws(text: str) -> str:
    """The compact JWS of a scanned ``shc:/`` text: one QR code, or all chunks of a split card
    (one per line, in any order); MalformedCode otherwise."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise MalformedCode(f"a SMART Health Card starts with {PREFIX!r}")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedCode("too long to be a SMART Health Card")
    lines = text.split()
    if len(lines) == 1 and (single := _SINGLE.fullmatch(lines[0])):
        return _digits_to_text(single.group(1))
    chunks: dict[int, str] = {}
    total = 0
    for line in lines:
        match = _CHUNK.fullmatch(line)
        if match is None:
            raise MalformedCode("SHC: not shc:/DIGITS nor shc:/INDEX/TOTAL/DIGITS")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count <= _MAX_CHUNKS or (total and count != total):
            raise MalformedCode("SHC: chunk numbers do not add up")
        if index in chunks:
            raise MalformedCode("SHC: a chunk given twice")
        total = count
        chunks[index] = match.group(3)
    if len(chunks) != total:
        raise MalformedCode(f"SHC: {total - len(chunks)} of {total} chunks missing")
    return _digits_to_text("".join(chunks[i] for i in range(1, total + 1)))


def _b64url_json(part: str, what: str) -> Any:
    try:
        return json.loads(b64url_decode(part))
    except ValueError:
        raise MalformedCode(f"SHC: the {what} is not base64url JSON") from None


def _inflate(data: bytes) -> bytes:
    return inflate_bounded(data, -zlib.MAX_WBITS, MAX_PAYLOAD_BYTES, "SHC: the payload's DEFLATE")


def _numeric_date(value: object, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise MalformedCode(f"SHC: {what} must be a NumericDate")


def decode_jws(jws: str) -> SHCToken:
    """Parse a card's compact JWS: header, inflated payload, signature; not yet verified."""
    parts = jws.split(".")
    if len(parts) != 3:
        raise MalformedCode("SHC: not a compact JWS of three parts")
    header = _b64url_json(parts[0], "JWS header")
    if not isinstance(header, dict) or not isinstance(header.get("kid"), str):
        raise MalformedCode("SHC: the JWS header names no kid")
    if header.get("zip") != "DEF":
        raise MalformedCode("SHC: the payload must be DEFLATE-compressed (zip: DEF)")
    try:
        compressed, signature = b64url_decode(parts[1]), b64url_decode(parts[2])
        payload = json.loads(_inflate(compressed))
    except ValueError:
        raise MalformedCode("SHC: the payload or signature is not base64url JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("iss"), str):
        raise MalformedCode("SHC: the payload names no issuer")
    vc = payload.get("vc")
    if not isinstance(vc, dict) or not isinstance(vc.get("type"), list):
        raise MalformedCode("SHC: the payload has no vc with its types")
    rid = vc.get("rid")
    if rid is not None and not isinstance(rid, str):
        raise MalformedCode("SHC: rid must be a string")
    exp = payload.get("exp")
    return SHCToken(
        header["kid"],
        str(header.get("alg")),
        f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature,
        payload,
        payload["iss"],
        _numeric_date(payload.get("nbf"), "nbf"),
        None if exp is None else _numeric_date(exp, "exp"),
        rid,
    )


def check_signature(token: SHCToken, trust: SHCTrustList) -> SHCIssuer:
    """The trusted issuer whose key verifies the card; the engine's refusal otherwise."""
    if token.alg != "ES256":
        raise UnsupportedAlgorithm("a SMART Health Card is signed with ES256")
    issuer = trust.issuers.get(token.issuer)
    key = None if issuer is None else issuer.keys.get(token.kid)
    if issuer is None or key is None:
        raise UnknownKeyId("the card's issuer or key is not in the SHC trust list")
    signature = token.signature
    if len(signature) != 64:
        raise BadSignature("an ES256 signature is 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, token.signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignature("the card's signature does not verify") from None
    return issuer


def check_revocation(token: SHCToken, issuer: SHCIssuer) -> None:
    """Refuse a card whose rid its key's revocation list holds (for its issue time)."""
    if token.rid is None:
        return
    revoked = issuer.revoked.get(token.kid, {})
    if token.rid not in revoked:
        return
    before = revoked[token.rid]
    if before is None or token.nbf < before:
        raise Revoked("the card has been revoked by its issuer")


def check_window_at(token: SHCToken, now: int, skew_s: int = 0) -> None:
    """Refuse a card not yet valid at ``now`` or expired, beyond ``skew_s`` seconds."""
    if token.nbf > now + skew_s:
        raise NotYetValid("the card is not valid yet")
    if token.exp is not None and now > token.exp + skew_s:
        raise Expired("the card has expired")


def credential_of(token: SHCToken) -> Credential:
    """What a card is, for the verdict: its most specific type, dates and issuer URL."""
    types = {str(t).removeprefix(_TYPE_BASE) for t in token.payload["vc"]["type"]}
    kind = next((t for t in _TYPES if t in types), "health-card")
    expires = None if token.exp is None else int(token.exp)
    return Credential(CredentialFormat.SHC, kind, int(token.nbf), expires, token.issuer)


def verify_shc_at(text: str, trust: SHCTrustList, now: int, skew_s: int = 0) -> Credential:
    """Verify a scanned ``shc:/`` text at ``now``: what it is, or the engine's refusal."""
    token = decode_jws(numeric_to_jws(text))
    issuer = check_signature(token, trust)
    check_revocation(token, issuer)
    check_window_at(token, now, skew_s)
    return credential_of(token)
