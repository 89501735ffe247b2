"""Write tests/vectors/signed_lists.json: known answers for signed lists (docs/code-format.md 12).

Built here without ``codeengine``, as tools/make_vectors.py builds the code vectors: payloads
are encoded with cbor2, signed with ``cryptography``, key ids computed from RFC 7638 directly,
so the unit tests compare two independent implementations of the format. Every refused case is
built to fail in one way and carries the reason a terminal must give; the ones about encoding
are properly signed, so only a strict reader refuses them.

Keys come from fixed seeds (SHA-256 of ``codeengine vectors/`` + the key's name); ES256
signatures use RFC 6979 deterministic nonces, so the file regenerates byte for byte.

Run: ``.venv/bin/python tools/make_list_vectors.py [OUTPUT]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "signed_lists.json"
NOW = 1_800_000_000
DAY_S = 86_400
ANCHOR_NBF = 1_797_408_000
ANCHOR_EXP = 1_955_174_400
SEQ = 1_800_000_000_000
EDDSA = -8
ES256 = -7
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KINDS = {"trust": 1, "revocations": 2}

SOURCE = (
    "tools/make_list_vectors.py: signed lists (a tagged COSE_Sign1 RFC 9052, protected "
    "{1: alg, 4: kid}, payload {4: exp, 6: iat, -1: kind, -2: seq, -3: content} in deterministic "
    "CBOR RFC 8949 4.2.1) built with cbor2, signed with pyca/cryptography (Ed25519; ES256 with "
    "RFC 6979 nonces), key ids = first 8 bytes of the RFC 7638 SHA-256 thumbprint. Seeds: "
    "SHA-256('codeengine vectors/' + key name). Check each case's document_hex as a list of "
    "kind `kind` at `now` against `anchors`, holding the list `held_hex` if given; `expect` is "
    "VALID or the refusal's reason."
)

Key = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


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
    scalar = int.from_bytes(seed(name), "big") % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def key_members(key: Key) -> dict[str, str]:
    """RFC 7638 required members of the public key."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
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


def jwk(key: Key, alg: int) -> dict[str, Any]:
    """The anchor's public JWK as a terminal is configured with it."""
    name = "EdDSA" if alg == EDDSA else "ES256"
    meta = {"kid": b64url(kid_of(key)), "alg": name, "use": "sig"}
    return {**key_members(key), **meta, "nbf": ANCHOR_NBF, "exp": ANCHOR_EXP}


def sign(key: Key, message: bytes) -> bytes:
    """Ed25519, or ES256 as raw r||s with an RFC 6979 nonce and the low s."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    der = key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    s = min(s, P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def payload_of(
    kind: int, seq: int, content: bytes, iat: int = NOW, exp: int = NOW + DAY_S
) -> bytes:
    """The canonical payload map."""
    return cbor2.dumps({4: exp, 6: iat, -1: kind, -2: seq, -3: content}, canonical=True)


def cose(key: Key, alg: int, payload: bytes, *, protected: bytes | None = None) -> bytes:
    """The tagged COSE_Sign1 over ``payload`` (and ``protected``, default {1: alg, 4: kid})."""
    if protected is None:
        protected = cbor2.dumps({1: alg, 4: kid_of(key)}, canonical=True)
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload], canonical=True)
    signature = sign(key, to_sign)
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]), canonical=True)


class Vectors:
    """The keys and the cases being built."""

    def __init__(self) -> None:
        self.anchor = make_key("trust-anchor", EDDSA)
        self.p256 = make_key("trust-anchor-p256", ES256)
        self.other = make_key("another-anchor", EDDSA)
        self.cases: list[dict[str, Any]] = []

    def add(
        self, case_id: str, why: str, kind: str, document: bytes, expect: str, **extra: Any
    ) -> None:
        """One case; ``now`` defaults to NOW."""
        case = {"id": case_id, "why": why, "kind": kind, "now": extra.pop("now", NOW)}
        case.update(document_hex=document.hex(), expect=expect, **extra)
        self.cases.append(case)


REVOKED = json.dumps(
    {"codes": ["02e7330eb96d"], "keys": ["P_YqIuFAZCw"]}, separators=(",", ":")
).encode()
NONE_REVOKED = b'{"codes":[],"keys":[]}'


def trust_content(v: Vectors) -> bytes:
    """A trust list JWKS (the code keys are not the point here: one anchor-unrelated key)."""
    key = make_key("ed25519-current", EDDSA)
    member: dict[str, Any] = {**key_members(key), "kid": b64url(kid_of(key)), "alg": "EdDSA"}
    member |= {"use": "sig", "nbf": ANCHOR_NBF, "exp": 1_831_536_000}
    return json.dumps({"keys": [member]}, sort_keys=True, separators=(",", ":")).encode()


def add_valid(v: Vectors) -> bytes:
    """Valid lists of both kinds and both suites; the worked example of the format document."""
    example = cose(v.anchor, EDDSA, payload_of(2, SEQ, REVOKED))
    v.add("valid-revocations-ed25519", "the worked example, section 12.4", "revocations",
          example, "VALID", seq=SEQ, content=REVOKED.decode())  # fmt: skip
    trust = trust_content(v)
    v.add("valid-trust-ed25519", "a trust list", "trust",
          cose(v.anchor, EDDSA, payload_of(1, SEQ, trust)), "VALID", seq=SEQ,
          content=trust.decode())  # fmt: skip
    v.add("valid-revocations-es256", "an ES256 anchor", "revocations",
          cose(v.p256, ES256, payload_of(2, SEQ + 1, NONE_REVOKED)), "VALID", seq=SEQ + 1,
          content=NONE_REVOKED.decode())  # fmt: skip
    v.add("valid-at-expiry", "the last second of its validity", "revocations", example,
          "VALID", now=NOW + DAY_S, seq=SEQ, content=REVOKED.decode())  # fmt: skip
    return example


def add_refusals(v: Vectors, example: bytes) -> None:
    """One way to fail each."""
    v.add("unsigned-json", "the unsigned document itself", "revocations", REVOKED,
          "LIST_UNSIGNED")  # fmt: skip
    untagged = cbor2.loads(example).value
    v.add("unsigned-untagged", "a COSE_Sign1 without its tag 18", "revocations",
          cbor2.dumps(untagged, canonical=True), "LIST_UNSIGNED")  # fmt: skip
    v.add("unknown-anchor", "signed by a key the terminal was not given", "revocations",
          cose(v.other, EDDSA, payload_of(2, SEQ, REVOKED)), "LIST_UNKNOWN_ANCHOR")  # fmt: skip
    v.add("anchor-not-yet-valid", "before the anchor's nbf", "revocations",
          cose(v.anchor, EDDSA, payload_of(2, SEQ, REVOKED, iat=ANCHOR_NBF - DAY_S)),
          "LIST_UNKNOWN_ANCHOR", now=ANCHOR_NBF - 1)  # fmt: skip
    wrong_alg = cbor2.dumps({1: ES256, 4: kid_of(v.anchor)}, canonical=True)
    v.add("anchor-with-another-alg", "the Ed25519 anchor's kid with ES256 in the header",
          "revocations", cose(v.anchor, EDDSA, payload_of(2, SEQ, REVOKED), protected=wrong_alg),
          "LIST_UNKNOWN_ANCHOR")  # fmt: skip
    at = example.index(b"02e7330eb96d")
    v.add("tampered-content", "a revoked code id changed after signing", "revocations",
          example[:at] + b"02e7330eb96e" + example[at + 12 :], "LIST_BAD_SIGNATURE")  # fmt: skip
    v.add("tampered-signature", "the signature's last bit flipped", "revocations",
          example[:-1] + bytes((example[-1] ^ 1,)), "LIST_BAD_SIGNATURE")  # fmt: skip
    v.add("wrong-kind", "a revocation list asked for as the trust list", "trust", example,
          "LIST_WRONG_KIND")  # fmt: skip
    v.add("expired", "the second after its exp", "revocations", example, "LIST_EXPIRED",
          now=NOW + DAY_S + 1)  # fmt: skip


def add_rollback(v: Vectors, example: bytes) -> None:
    """Against the list held."""
    newer = cose(v.anchor, EDDSA, payload_of(2, SEQ + 1, NONE_REVOKED))
    v.add("rollback-older", "the terminal holds a newer list", "revocations", example,
          "LIST_ROLLBACK", held_hex=newer.hex())  # fmt: skip
    twin = cose(v.anchor, EDDSA, payload_of(2, SEQ, NONE_REVOKED))
    v.add("rollback-same-seq", "another list with the sequence held", "revocations", twin,
          "LIST_ROLLBACK", held_hex=example.hex())  # fmt: skip
    v.add("same-list-again", "the very list held, fetched again", "revocations", example,
          "VALID", held_hex=example.hex(), seq=SEQ, content=REVOKED.decode())  # fmt: skip
    v.add("newer-than-held", "a list newer than the one held", "revocations", newer, "VALID",
          held_hex=example.hex(), seq=SEQ + 1, content=NONE_REVOKED.decode())  # fmt: skip
    ahead = cose(v.anchor, EDDSA, payload_of(2, 2**62, NONE_REVOKED, iat=NOW - 2 * DAY_S,
                                               exp=NOW - DAY_S))  # fmt: skip
    v.add("held-expired-sets-no-floor", "the list held, numbered far ahead, expired a day ago",
          "revocations", example, "VALID", held_hex=ahead.hex(), seq=SEQ,
          content=REVOKED.decode())  # fmt: skip


def add_encoding(v: Vectors) -> None:
    """Correctly signed, wrongly encoded: only a strict reader refuses these (LIST_MALFORMED)."""
    exp, iat = NOW + DAY_S, NOW
    kid = kid_of(v.anchor)

    def signed(payload: bytes, protected: bytes | None = None) -> bytes:
        return cose(v.anchor, EDDSA, payload, protected=protected)

    times = b"\x04\x1a" + exp.to_bytes(4, "big") + b"\x06\x1a" + iat.to_bytes(4, "big")
    fields = (
        times,
        b"\x20\x02",
        b"\x21\x1b" + SEQ.to_bytes(8, "big"),
        b"\x22" + cbor2.dumps(b"{}"),
    )
    cases = {
        "seq-not-shortest": b"\xa5" + fields[0] + fields[1] + b"\x21\x1b" + (7).to_bytes(8, "big")
        + fields[3],
        "keys-out-of-order": b"\xa5" + fields[1] + fields[0] + fields[2] + fields[3],
        "unknown-kind": b"\xa5" + fields[0] + b"\x20\x03" + fields[2] + fields[3],
        "content-as-text": b"\xa5" + fields[0] + fields[1] + fields[2] + b"\x22\x62{}",
        "extra-claim": b"\xa6" + fields[0] + fields[1] + fields[2] + fields[3] + b"\x23\x00",
        "iat-after-exp": b"\xa5\x04\x1a" + iat.to_bytes(4, "big") + b"\x06\x1a"
        + exp.to_bytes(4, "big") + fields[1] + fields[2] + fields[3],
        "indefinite-content": b"\xa5" + fields[0] + fields[1] + fields[2] + b"\x22\x5f\x42{}\xff",
    }  # fmt: skip
    for name, payload in cases.items():
        v.add(name, "properly signed, not in the one encoding", "revocations", signed(payload),
              "LIST_MALFORMED")  # fmt: skip
    good = fields[0] + fields[1] + fields[2] + fields[3]
    extra_header = cbor2.dumps({1: EDDSA, 3: "application/cbor", 4: kid}, canonical=True)
    v.add("extra-header-parameter", "a content type in the protected header", "revocations",
          signed(b"\xa5" + good, extra_header), "LIST_MALFORMED")  # fmt: skip
    document = signed(b"\xa5" + good)
    v.add("trailing-byte", "a byte after the COSE_Sign1", "revocations", document + b"\x00",
          "LIST_MALFORMED")  # fmt: skip
    protected = cbor2.dumps({1: EDDSA, 4: kid}, canonical=True)
    to_sign = cbor2.dumps(["Signature1", protected, b"", b"\xa5" + good], canonical=True)
    unprotected_kid = cbor2.dumps(
        cbor2.CBORTag(18, [protected, {4: kid}, b"\xa5" + good, sign(v.anchor, to_sign)]),
        canonical=True,
    )
    v.add("unprotected-header", "the kid repeated in the unprotected header", "revocations",
          unprotected_kid, "LIST_MALFORMED")  # fmt: skip


def build() -> dict[str, Any]:
    """The whole vector document."""
    v = Vectors()
    example = add_valid(v)
    add_refusals(v, example)
    add_rollback(v, example)
    add_encoding(v)
    ids = [case["id"] for case in v.cases]
    assert len(set(ids)) == len(ids), "duplicate case id"
    return {
        "source": SOURCE,
        "now": NOW,
        "anchors": {"keys": [jwk(v.anchor, EDDSA), jwk(v.p256, ES256)]},
        "kinds": KINDS,
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
