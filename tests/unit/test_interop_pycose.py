"""Interoperability with pycose: a terminal with any COSE library and our JWKS can verify codes.

pycose 1.1.0 cannot ``decode`` with cbor2 6, which returns arrays inside tags as tuples
(TimothyClaeys/pycose#141), so the tests hand pycose the COSE array that cbor2 reads, through
``Sign1Message.from_cose_obj``; everything after that is pycose's own code.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm
from pycose.keys.ec2 import EC2Key
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

from codeengine.code.base45 import b45decode
from codeengine.code.errors import BadSignature
from codeengine.code.keyring import Keyring
from codeengine.code.model import CodeKind, Colour
from codeengine.code.suites import ED25519, ES256, b64url_decode, deterministic_random
from codeengine.code.token import PREFIX, Claims, cose_to_token, encode, verify_at
from codeengine.code.trustlist import TrustList

NOW = 1_800_000_000
FIRST = Keyring.generate_at(NOW - 60, ED25519, deterministic_random(b"interop"))
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
RING = FIRST.rotate_at(NOW - 30, ES256, 600, deterministic_random(b"interop-es"))
# The current ES256 key, and the Ed25519 key it replaced (retired, still trusted).
SIGNING_KEYS = {"ES256": RING.current, "Ed25519": FIRST.current}
# What a terminal downloads: plain JSON, nothing of codeengine.
JWKS: dict[str, Any] = TrustList.from_keyring(RING).to_jwks()
CLAIMS = Claims(
    exp=NOW + 120,
    iat=NOW,
    cti=b"\x10\x20\x30\x40\x50\x60",
    subject=bytes(range(12)),
    kind=CodeKind.PERSON_SERVICE,
    city=320600,
    colour=Colour.GREEN,
    version=42,
)


def _pycose_key(jwk: dict[str, Any], private: bytes = b"") -> OKPKey | EC2Key:
    """A pycose key built from the JWK's members alone (plus ``d`` to sign)."""
    x = b64url_decode(jwk["x"])
    if jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519":
        return OKPKey(crv="ED25519", x=x, d=private)
    if jwk["kty"] == "EC" and jwk["crv"] == "P-256":
        return EC2Key(crv="P_256", x=x, y=b64url_decode(jwk["y"]), d=private)
    raise AssertionError(f"unexpected key type {jwk['kty']}")


def _pycose_message(token: str) -> Sign1Message:
    tagged = cbor2.loads(b45decode(token[len(PREFIX) :]))
    assert tagged.tag == Sign1Message.cbor_tag
    protected, unprotected, payload, signature = tagged.value
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    assert isinstance(message, Sign1Message)
    return message


def _jwk_for(kid: bytes) -> dict[str, Any]:
    matching: list[dict[str, Any]] = [k for k in JWKS["keys"] if b64url_decode(k["kid"]) == kid]
    (jwk,) = matching
    return jwk


@pytest.mark.parametrize("suite_name", sorted(SIGNING_KEYS))
def test_pycose_verifies_our_codes_with_the_jwks(suite_name: str) -> None:
    signing = SIGNING_KEYS[suite_name]
    token = encode(CLAIMS, signing)
    message = _pycose_message(token)
    kid = message.phdr[KID]
    jwk = _jwk_for(kid)
    assert message.phdr[Algorithm] is {"EdDSA": EdDSA, "ES256": Es256}[jwk["alg"]]
    message.key = _pycose_key(jwk)
    assert message.verify_signature()
    assert message.payload is not None
    claims = cbor2.loads(message.payload)
    assert claims == {
        4: CLAIMS.exp,
        6: CLAIMS.iat,
        7: CLAIMS.cti,
        -1: CLAIMS.subject,
        -2: [CodeKind.PERSON_SERVICE.value, 3206, Colour.GREEN.value, 42],
    }


def test_pycose_refuses_a_tampered_code() -> None:
    token = encode(CLAIMS, RING.current)
    message = _pycose_message(token)
    message.key = _pycose_key(_jwk_for(RING.current.kid))
    assert message.payload is not None
    message.payload = message.payload.replace(b"\x19\x0c\x86", b"\x19\x0c\x81")
    assert not message.verify_signature()


@pytest.mark.parametrize("suite_name", sorted(SIGNING_KEYS))
def test_a_pycose_signed_message_with_our_layout_verifies_here(suite_name: str) -> None:
    key = SIGNING_KEYS[suite_name]
    jwk = _jwk_for(key.kid)
    payload = cbor2.dumps(
        {4: NOW + 120, 6: NOW, 7: CLAIMS.cti, -1: CLAIMS.subject, -2: [2, 3206, 1, 42]},
        canonical=True,
    )
    message = Sign1Message(
        phdr={Algorithm: EdDSA if suite_name == "Ed25519" else Es256, KID: key.kid},
        payload=payload,
    )
    message.key = _pycose_key(jwk, key.private.secret.reveal())
    cose = message.encode(tag=True)
    trust = TrustList.from_jwks(JWKS)
    if suite_name == "ES256":
        # pycose signs with whichever s the nonce gives; this engine accepts only the low one
        # (docs/code-format.md), so both spellings are tried: the low verifies, the high not.
        s = int.from_bytes(cose[-32:], "big")
        low, high = sorted((s, P256_ORDER - s))
        with pytest.raises(BadSignature, match="low-S"):
            verify_at(cose_to_token(cose[:-32] + high.to_bytes(32, "big")), trust, NOW)
        cose = cose[:-32] + low.to_bytes(32, "big")
    assert verify_at(cose_to_token(cose), trust, NOW) == CLAIMS
    tampered = cose.replace(b"\x18\x2a", b"\x18\x2b")
    assert tampered != cose
    with pytest.raises(BadSignature):
        verify_at(cose_to_token(tampered), trust, NOW)
