"""Write tests/vectors/tokens.json: known answers for the code format (docs/code-format.md).

The vectors are built here without ``codeengine``: claims are encoded with cbor2, signed with
``cryptography``, key ids are computed from RFC 7638 directly and the text is made with the
``base45`` package, so the unit tests compare two independent implementations of the format.
Every invalid case is built to fail in one way and carries the reason it must be refused with;
the ones about encoding are properly signed, so only a strict decoder refuses them.

Keys come from fixed seeds. ES256 signatures are normally randomized; here they use RFC 6979
deterministic ECDSA (still plain ES256 to any verifier), and each ES256 case also pins its
to-be-signed bytes, so the whole file regenerates byte for byte. SM2 codes (the national suite,
COSE alg -65537) are signed with ``gmalg``, a pure-Python SM2 that takes the nonce as an
argument: here a hash of the key and the message, so they too regenerate byte for byte, and the
engine (GmSSL underneath) verifies what another implementation signed.

Run: ``.venv/bin/python tools/make_vectors.py [OUTPUT]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import base45
import cbor2
import gmalg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "tokens.json"
NOW = 1_800_000_000
SKEW_S = 30
DAY_S = 86_400
PREFIX = "CE1:"

SOURCE = (
    "tools/make_vectors.py: CE1 codes (base45 RFC 9285 of a tagged COSE_Sign1 RFC 9052 over a "
    "CWT claims set RFC 8392, deterministic CBOR RFC 8949 4.2.1) built with cbor2, signed with "
    "pyca/cryptography (Ed25519; ES256 with RFC 6979 deterministic nonces) and gmalg (SM2 with "
    "SM3, ID 1234567812345678, r||s; nonce SHA-256 of scalar and message), key ids = first 8 "
    "bytes of the RFC 7638 SHA-256 thumbprint. Seeds: SHA-256('codeengine vectors/' + key "
    f"name). Verify at each case's now (default {NOW}) with skew {SKEW_S} s against trust_list."
)

EDDSA = -8
ES256 = -7
ES384 = -35
SM2SM3 = -65537
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SM2_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SM2_ID = b"1234567812345678"
KINDS = {"health": 1, "person_service": 2, "enterprise_service": 3, "fused": 4}
COLOURS = {"grey": 0, "green": 1, "yellow": 2, "red": 3}


class SM2Key:
    """An SM2 key pair as gmalg holds it: the scalar and the 64-byte public point x||y."""

    def __init__(self, scalar: int) -> None:
        self.scalar = scalar
        self.public = gmalg.SM2().generate_pk(scalar.to_bytes(32, "big"))[1:]

    def sign(self, message: bytes, signer_id: bytes = SM2_ID) -> tuple[int, int]:
        """SM2 with SM3 over ``message``, the nonce a hash of the key and the message."""
        nonce = hashlib.sha256(self.scalar.to_bytes(32, "big") + message).digest()
        k = int.from_bytes(nonce, "big") % (SM2_ORDER - 1) + 1
        signer = gmalg.SM2(
            self.scalar.to_bytes(32, "big"), signer_id, b"\x04" + self.public, rnd_fn=lambda _: k
        )
        r, s = signer.sign(message)
        return int.from_bytes(r, "big"), int.from_bytes(s, "big")


Key = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | SM2Key


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seed(name: str) -> bytes:
    """The 32-byte seed of a named test key."""
    return hashlib.sha256(b"codeengine vectors/" + name.encode()).digest()


def make_key(name: str, alg: int) -> Key:
    """A reproducible key: the seed is the Ed25519 private key, or reduced to a P-256 scalar."""
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed(name))
    if alg == SM2SM3:
        return SM2Key(int.from_bytes(seed(name), "big") % (SM2_ORDER - 2) + 1)
    scalar = int.from_bytes(seed(name), "big") % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def key_members(key: Key) -> dict[str, str]:
    """RFC 7638 required members of the public key."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    if isinstance(key, SM2Key):
        return {
            "crv": "SM2",
            "kty": "EC",
            "x": b64url(key.public[:32]),
            "y": b64url(key.public[32:]),
        }
    numbers = key.public_key().public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def kid_of(key: Key) -> bytes:
    """The first 8 bytes of the RFC 7638 thumbprint."""
    text = json.dumps(key_members(key), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()[:8]


def sign(key: Key, message: bytes) -> bytes:
    """Ed25519; ES256 as raw r||s with an RFC 6979 nonce and the low s (at most n/2); SM2."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, SM2Key):
        r, s = key.sign(message)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    s = min(s, P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def bstr(data: bytes) -> bytes:
    """A byte string in canonical CBOR."""
    return cbor2.dumps(data)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 Sig_structure for COSE_Sign1 with no external data."""
    return cbor2.dumps(["Signature1", protected, b"", payload], canonical=True)


def protected_header(alg: int, kid: bytes) -> bytes:
    """The canonical protected header {1: alg, 4: kid}."""
    return cbor2.dumps({1: alg, 4: kid}, canonical=True)


def claims_map(**overrides: Any) -> dict[int, Any]:
    """A claims set: a green health code of Nanjing issued at NOW, changed by ``overrides``."""
    values: dict[str, Any] = {
        "exp": NOW + 120,
        "iat": NOW,
        "cti": seed("cti")[:6],
        "subject": seed("subject")[:12],
        "kind": 1,
        "city": 3201,
        "colour": 1,
        "version": 65535,
    }
    values.update(overrides)
    status = [values["kind"], values["city"], values["colour"], values["version"]]
    return {4: values["exp"], 6: values["iat"], 7: values["cti"], -1: values["subject"], -2: status}


def payload_of(claims: dict[int, Any]) -> bytes:
    """The canonical claims set."""
    return cbor2.dumps(claims, canonical=True)


def assemble(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    """Tagged COSE_Sign1 bytes; asserts they equal cbor2's canonical encoding."""
    cose = b"\xd2\x84" + bstr(protected) + b"\xa0" + bstr(payload) + bstr(signature)
    expected = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]), canonical=True)
    assert cose == expected, "hand assembly disagrees with cbor2"
    return cose


def text(cose: bytes) -> str:
    """Token text of COSE bytes."""
    encoded: bytes = base45.b45encode(cose)
    return PREFIX + encoded.decode("ascii")


class Vectors:
    """The keys, trust list and cases being built."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {
            name: make_key(name, alg)
            for name, alg in [
                ("ed25519-current", EDDSA),
                ("es256-current", ES256),
                ("sm2-current", SM2SM3),
                ("ed25519-retired", EDDSA),
                ("ed25519-expired", EDDSA),
                ("ed25519-future", EDDSA),
                ("ed25519-untrusted", EDDSA),
            ]
        }
        self.validity = {
            "ed25519-current": (NOW - 30 * DAY_S, NOW + 365 * DAY_S),
            "es256-current": (NOW - 30 * DAY_S, NOW + 365 * DAY_S),
            "sm2-current": (NOW - 30 * DAY_S, NOW + 365 * DAY_S),
            # Retired by a rotation at NOW - 300 with a 900 s overlap: still verifies.
            "ed25519-retired": (NOW - 400 * DAY_S, NOW + 600),
            "ed25519-expired": (NOW - 800 * DAY_S, NOW - 1),
            "ed25519-future": (NOW + 3600, NOW + 400 * DAY_S),
        }
        self.cases: list[dict[str, Any]] = []

    def alg(self, name: str) -> int:
        """The COSE alg of a named key."""
        key = self.keys[name]
        if isinstance(key, SM2Key):
            return SM2SM3
        return EDDSA if isinstance(key, ed25519.Ed25519PrivateKey) else ES256

    def trust_list(self) -> dict[str, Any]:
        """The JWKS every case verifies against."""
        keys = []
        for name, (nbf, exp) in self.validity.items():
            key = self.keys[name]
            keys.append(
                {
                    **key_members(key),
                    "kid": b64url(kid_of(key)),
                    "alg": {EDDSA: "EdDSA", ES256: "ES256", SM2SM3: "SM2SM3"}[self.alg(name)],
                    "use": "sig",
                    "nbf": nbf,
                    "exp": exp,
                }
            )
        return {"keys": keys}

    def signed(
        self,
        key_name: str = "ed25519-current",
        *,
        payload: bytes | None = None,
        protected: bytes | None = None,
    ) -> tuple[bytes, bytes, bytes]:
        """(protected, payload, COSE bytes) signed by a named key."""
        key = self.keys[key_name]
        if protected is None:
            protected = protected_header(self.alg(key_name), kid_of(key))
        if payload is None:
            payload = payload_of(claims_map())
        signature = sign(key, sig_structure(protected, payload))
        return protected, payload, assemble(protected, payload, signature)

    def add(self, case_id: str, token: str, expect: str, why: str, **extra: Any) -> None:
        """Record one case."""
        self.cases.append(
            {"id": case_id, "token": token, "now": extra.pop("now", NOW), "expect": expect}
            | {"why": why}
            | extra
        )

    def valid(
        self, case_id: str, why: str, key_name: str = "ed25519-current", **claim: Any
    ) -> None:
        """A valid case, with its claims as the API shows them and its bytes in hex."""
        now = claim.pop("now", NOW)
        cmap = claims_map(**claim)
        protected, payload, cose = self.signed(key_name, payload=payload_of(cmap))
        kind = {v: k for k, v in KINDS.items()}[cmap[-2][0]]
        colour = {v: k for k, v in COLOURS.items()}[cmap[-2][2]]
        claims = {
            "exp": cmap[4],
            "iat": cmap[6],
            "cti": cmap[7].hex(),
            "subject": b64url(cmap[-1]),
            "kind": kind,
            "city": cmap[-2][1] * 100,
            "colour": colour,
            "version": cmap[-2][3],
        }
        extra: dict[str, Any] = {"claims": claims, "cose_hex": cose.hex()}
        if self.alg(key_name) in (ES256, SM2SM3):
            extra["tbs_hex"] = sig_structure(protected, payload).hex()
        self.add(
            case_id,
            text(cose),
            "VALID",
            why,
            now=now,
            kid=b64url(kid_of(self.keys[key_name])),
            **extra,
        )


def add_valid(v: Vectors) -> None:
    """Codes that verify."""
    v.valid("valid-ed25519-health-green", "Ed25519, the default suite")
    v.valid("valid-es256-health-yellow", "ES256 (raw r||s)", "es256-current", colour=2, version=7)
    v.valid("valid-sm2-health-green", "SM2 with SM3 (national suite, raw r||s)", "sm2-current")
    v.valid("valid-sm2-fused-red", "SM2, fused code", "sm2-current", kind=4, city=3210, colour=3)
    v.valid("valid-ed25519-person-service", "person service code", kind=2, city=3205, version=0)
    v.valid("valid-ed25519-enterprise-grey", "enterprise code, grey", kind=3, city=3213, colour=0)
    v.valid("valid-ed25519-fused-red", "fused code, red", kind=4, city=3210, colour=3, version=1)
    v.valid("valid-retired-key-in-overlap", "retired key before its exp", "ed25519-retired")
    v.valid("valid-at-expiry-plus-skew", "now == exp + skew is still valid", now=NOW + 120 + SKEW_S)
    v.valid(
        "valid-iat-within-skew",
        "iat == now + skew is still valid",
        iat=NOW + SKEW_S,
        exp=NOW + SKEW_S + 120,
    )
    for version in (23, 24, 255, 256, 65536):
        v.valid(f"valid-version-{version}", "a head-size boundary", version=version)
    v.valid("valid-exp-eight-byte", "exp = 2**32 takes the 8-byte form", exp=2**32)
    v.valid("valid-max-version", "version 2**32 - 1", version=2**32 - 1)


def add_text_cases(v: Vectors) -> None:
    """Steps 1 and 2: prefix and base45."""
    good = v.cases[0]["token"]
    body = good[len(PREFIX) :]
    v.add("malformed-empty", "", "MALFORMED", "empty text")
    v.add("malformed-prefix-missing", body, "MALFORMED", "no prefix")
    v.add("malformed-prefix-lowercase", "ce1:" + body, "MALFORMED", "prefix is case-sensitive")
    v.add("malformed-prefix-version", "CE2:" + body, "MALFORMED", "unknown format version")
    v.add("malformed-prefix-hc1", "HC1:" + body, "MALFORMED", "another scheme's prefix")
    v.add("malformed-leading-space", " " + good, "MALFORMED", "text before the prefix")
    v.add("malformed-base45-lowercase", PREFIX + body.lower(), "MALFORMED", "not in alphabet")
    v.add("malformed-base45-trailing-newline", good + "\n", "MALFORMED", "newline after text")
    v.add("malformed-base45-dangling-char", good + "0", "MALFORMED", "length = 1 mod 3")
    v.add(
        "malformed-base45-triplet-overflow",
        PREFIX + "GGW" + body[3:],
        "MALFORMED",
        "triplet GGW = 65536 > 65535",
    )
    v.add("malformed-base45-pair-overflow", good + "GG", "MALFORMED", "final pair GG = 736 > 255")
    v.add("malformed-base45-non-ascii", good[:-1] + "\u00c9", "MALFORMED", "non-ASCII character")
    v.add("malformed-too-long", PREFIX + "0" * 600, "MALFORMED", "longer than any code")


def payload_variants() -> list[tuple[str, bytes, str]]:
    """Signed payloads that break the claims structure or its canonical encoding."""
    base = payload_of(claims_map())
    status = cbor2.dumps([1, 3201, 1, 65535])
    exp_long = base.replace(
        b"\x04\x1a" + (NOW + 120).to_bytes(4, "big"), b"\x04\x1b" + (NOW + 120).to_bytes(8, "big")
    )
    assert exp_long != base
    indefinite = base.replace(b"\x84" + status[1:], b"\x9f" + status[1:] + b"\xff")
    assert indefinite != base
    cmap = claims_map()
    unsorted = b"\xa5" + b"".join(cbor2.dumps(k) + cbor2.dumps(cmap[k]) for k in (6, 4, 7, -1, -2))
    as_float = dict(cmap)
    as_float[4] = float(NOW + 120)
    with_bool = dict(cmap)
    with_bool[-2] = [1, 3201, True, 65535]
    cti_text = dict(cmap)
    cti_text[7] = "abcdef"
    extra = dict(cmap)
    extra[1] = "CE"
    missing = {k: v for k, v in cmap.items() if k != 6}
    return [
        ("noncanonical-exp-long-form", exp_long, "exp as an 8-byte integer"),
        ("noncanonical-indefinite-array", indefinite, "status as indefinite-length array"),
        ("noncanonical-unsorted-map", unsorted, "claims keys out of order"),
        ("noncanonical-indefinite-map", b"\xbf" + base[1:] + b"\xff", "indefinite-length map"),
        ("wrong-type-exp-float", payload_of(as_float), "exp as a float"),
        ("wrong-type-colour-bool", payload_of(with_bool), "colour as true"),
        ("wrong-type-cti-text", payload_of(cti_text), "cti as a text string"),
        ("wrong-extra-claim", payload_of(extra), "an extra claim (iss)"),
        ("wrong-missing-claim", payload_of(missing), "no iat"),
        ("wrong-city-outside-province", payload_of(claims_map(city=3301)), "city 330100"),
        ("wrong-city-six-digit", payload_of(claims_map(city=320100)), "six-digit city on wire"),
        ("wrong-colour-unknown", payload_of(claims_map(colour=4)), "colour 4"),
        ("wrong-kind-unknown", payload_of(claims_map(kind=9)), "kind 9"),
        ("wrong-version-too-large", payload_of(claims_map(version=2**32)), "version 2**32"),
        ("wrong-cti-short", payload_of(claims_map(cti=b"\x01" * 5)), "5-byte cti"),
        ("wrong-subject-long", payload_of(claims_map(subject=b"\x01" * 13)), "13-byte subject"),
        ("wrong-iat-after-exp", payload_of(claims_map(iat=NOW + 121)), "iat after exp"),
        ("wrong-negative-exp", payload_of(claims_map(exp=-1, iat=0)), "exp as negative int"),
        ("wrong-payload-not-map", cbor2.dumps([1, 2, 3]), "payload is an array"),
    ]


def add_structure_cases(v: Vectors) -> None:
    """Step 3: COSE and claims structure, exact types, canonical encoding."""
    for case_id, payload, why in payload_variants():
        _, _, cose = v.signed(payload=payload)
        v.add(f"malformed-{case_id}", text(cose), "MALFORMED", why)
    kid = kid_of(v.keys["ed25519-current"])
    protected, payload, cose = v.signed()
    signature = cose[-64:]
    wrappers = [
        ("untagged", cose[1:], "COSE_Sign1 without tag 18"),
        ("extra-tag", b"\xd9\xd9\xf7" + cose, "self-described CBOR tag around it"),
        ("trailing-byte", cose + b"\x00", "a byte after the structure"),
        (
            "protected-long-length",
            b"\xd2\x84\x58" + bytes((len(protected),)) + protected + cose[2 + 1 + len(protected) :],
            "protected bstr length in 2 bytes",
        ),
        (
            "unprotected-not-empty",
            b"\xd2\x84" + bstr(protected) + cbor2.dumps({4: kid}) + bstr(payload) + bstr(signature),
            "kid repeated unprotected",
        ),
        ("array-of-five", b"\xd2\x85" + cose[2:] + b"\xa0", "array of five"),
        (
            "detached-payload",
            b"\xd2\x84" + bstr(protected) + b"\xa0\xf6" + bstr(signature),
            "nil (detached) payload",
        ),
    ]
    for case_id, data, why in wrappers:
        v.add(f"malformed-{case_id}", text(data), "MALFORMED", why)
    headers = [
        ("alg-text", cbor2.dumps({1: "EdDSA", 4: kid}, canonical=True), "alg as text"),
        ("kid-short", cbor2.dumps({1: EDDSA, 4: kid[:7]}, canonical=True), "7-byte kid"),
        ("kid-text", cbor2.dumps({1: EDDSA, 4: b64url(kid)}, canonical=True), "kid as text"),
        ("header-extra", cbor2.dumps({1: EDDSA, 3: 0, 4: kid}, canonical=True), "content type"),
        ("header-unsorted", b"\xa2\x04\x48" + kid + b"\x01\x27", "kid before alg"),
        ("header-alg-long-form", b"\xa2\x01\x38\x07\x04\x48" + kid, "alg -8 in 2 bytes"),
    ]
    for case_id, header, why in headers:
        _, _, data = v.signed(protected=header)
        v.add(f"malformed-{case_id}", text(data), "MALFORMED", why)


def add_key_cases(v: Vectors) -> None:
    """Steps 4 to 7: algorithm, key id, key validity, signature."""
    current = kid_of(v.keys["ed25519-current"])
    _, _, data = v.signed(protected=protected_header(ES384, current))
    v.add("unsupported-alg-es384", text(data), "UNSUPPORTED_ALG", "alg -35 is not accepted")
    _, _, data = v.signed(protected=protected_header(ES256, current))
    v.add(
        "unsupported-alg-mismatch",
        text(data),
        "UNSUPPORTED_ALG",
        "header says ES256, the key is Ed25519",
    )
    _, _, data = v.signed("ed25519-untrusted")
    v.add("unknown-kid", text(data), "UNKNOWN_KID", "key not in the trust list")
    _, _, data = v.signed("ed25519-expired")
    v.add("unknown-kid-key-expired", text(data), "UNKNOWN_KID", "key past its exp")
    _, _, data = v.signed("ed25519-future")
    v.add("unknown-kid-key-not-yet-valid", text(data), "UNKNOWN_KID", "key before its nbf")
    v.add(
        "unknown-kid-retired-after-overlap",
        text(v.signed("ed25519-retired")[2]),
        "UNKNOWN_KID",
        "retired key after its exp",
        now=NOW + 601,
    )

    protected, _, cose = v.signed(payload=payload_of(claims_map(colour=3)))
    green = payload_of(claims_map(colour=1))
    tampered = b"\xd2\x84" + bstr(protected) + b"\xa0" + bstr(green) + cose[-66:]
    v.add(
        "bad-signature-tampered-payload",
        text(tampered),
        "BAD_SIGNATURE",
        "red code's payload turned green",
    )
    flipped = cose[:-1] + bytes((cose[-1] ^ 0x01,))
    v.add("bad-signature-flipped-bit", text(flipped), "BAD_SIGNATURE", "last signature bit")
    short = cose[:-66] + bstr(cose[-64:-1])
    v.add("bad-signature-63-bytes", text(short), "BAD_SIGNATURE", "signature one byte short")

    es_protected, es_payload, es_cose = v.signed("es256-current")
    es_flipped = es_cose[:-1] + bytes((es_cose[-1] ^ 0x01,))
    v.add(
        "bad-signature-es256-flipped-bit",
        text(es_flipped),
        "BAD_SIGNATURE",
        "ES256, last bit of s",
        tbs_hex=sig_structure(es_protected, es_payload).hex(),
    )
    key = v.keys["es256-current"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(
        sig_structure(es_protected, es_payload),
        ec.ECDSA(hashes.SHA256(), deterministic_signing=True),
    )
    es_der = es_cose[:-66] + bstr(der)
    v.add(
        "bad-signature-es256-der",
        text(es_der),
        "BAD_SIGNATURE",
        "a valid signature, but DER instead of raw r||s",
    )
    r, s = es_cose[-64:-32], int.from_bytes(es_cose[-32:], "big")
    es_high = es_cose[:-64] + r + (P256_ORDER - s).to_bytes(32, "big")
    v.add(
        "bad-signature-es256-high-s",
        text(es_high),
        "BAD_SIGNATURE",
        "the valid signature's twin (r, n - s): mathematically valid, but s above n/2",
        tbs_hex=sig_structure(es_protected, es_payload).hex(),
    )


def add_sm2_cases(v: Vectors) -> None:
    """Steps 4 and 7 for the national suite: its algorithm, ID, digest and signature encoding."""
    key = v.keys["sm2-current"]
    assert isinstance(key, SM2Key)
    protected, payload, cose = v.signed("sm2-current")
    tbs = sig_structure(protected, payload)
    head = cose[:-64]

    def case(case_id: str, signature: bytes, expect: str, why: str) -> None:
        data = head[:-2] + bstr(signature) if len(signature) != 64 else head + signature
        v.add(case_id, text(data), expect, why, tbs_hex=tbs.hex())

    r, s = int.from_bytes(cose[-64:-32], "big"), int.from_bytes(cose[-32:], "big")
    case("bad-signature-sm2-flipped-bit", cose[-64:-1] + bytes((cose[-1] ^ 1,)), "BAD_SIGNATURE",
         "SM2, last bit of s")  # fmt: skip
    twin = cose[-64:-32] + (SM2_ORDER - s).to_bytes(32, "big")
    case("bad-signature-sm2-twin", twin, "BAD_SIGNATURE",
         "(r, n - s): SM2 has no ECDSA-like twin, t = r + s changes")  # fmt: skip
    case("bad-signature-sm2-der", cbor2.dumps([r, s]), "BAD_SIGNATURE", "r and s as CBOR, not r||s")
    other_id = key.sign(tbs, b"ALICE123@YAHOO.COM")
    case("bad-signature-sm2-other-id", b"".join(n.to_bytes(32, "big") for n in other_id),
         "BAD_SIGNATURE", "signed with another signer ID in Z_A")  # fmt: skip
    case("bad-signature-sm2-r-is-n", SM2_ORDER.to_bytes(32, "big") + cose[-32:], "BAD_SIGNATURE",
         "r = n is out of range [1, n-1]")  # fmt: skip
    case("bad-signature-sm2-s-zero", cose[-64:-32] + bytes(32), "BAD_SIGNATURE", "s = 0")
    ed_kid = kid_of(v.keys["ed25519-current"])
    _, _, data = v.signed(protected=protected_header(SM2SM3, ed_kid))
    v.add("unsupported-alg-sm2-on-ed25519-key", text(data), "UNSUPPORTED_ALG",
          "header says SM2, the key is Ed25519")  # fmt: skip
    _, _, data = v.signed("sm2-current", protected=protected_header(EDDSA, kid_of(key)))
    v.add("unsupported-alg-eddsa-on-sm2-key", text(data), "UNSUPPORTED_ALG",
          "header says EdDSA, the key is SM2")  # fmt: skip


def add_window_cases(v: Vectors) -> None:
    """Step 8: the time window with the clock-skew allowance."""
    _, _, data = v.signed()
    v.add("expired", text(data), "EXPIRED", "now == exp + skew + 1", now=NOW + 120 + SKEW_S + 1)
    _, _, data = v.signed(payload=payload_of(claims_map(iat=NOW + SKEW_S + 1, exp=NOW + 200)))
    v.add("not-yet-valid", text(data), "NOT_YET_VALID", "iat == now + skew + 1")


def build() -> dict[str, Any]:
    """The whole vector document."""
    v = Vectors()
    add_valid(v)
    add_text_cases(v)
    add_structure_cases(v)
    add_key_cases(v)
    add_sm2_cases(v)
    add_window_cases(v)
    ids = [case["id"] for case in v.cases]
    assert len(set(ids)) == len(ids), "duplicate case id"
    return {
        "source": SOURCE,
        "now": NOW,
        "skew_s": SKEW_S,
        "trust_list": v.trust_list(),
        "cases": v.cases,
    }


def render(document: dict[str, Any]) -> str:
    """The file's text: stable key order, two-space indent, ASCII, final newline."""
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str]) -> int:
    """Write the vectors to OUTPUT or the path given."""
    output = Path(argv[1]) if len(argv) > 1 else OUTPUT
    output.write_text(render(build()), encoding="ascii")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
