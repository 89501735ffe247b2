"""Signed lists: the trust list and the revocation list as a trust anchor signs them.

An offline terminal believes whatever trust list it holds, so the lists it fetches are signed by
a trust-anchor key that signs nothing else, and carry a sequence number and an expiry: a terminal
refuses a list that is unsigned, signed by a key it was not configured with, altered, expired,
or older than the one it holds (a rollback). ``docs/code-format.md`` section 12 is the normative
description; this module is its reference implementation. Reading is strict, as for codes: one
canonical encoding, and every refusal a ``ListRefused`` with a stable ``LIST_*`` reason.
"""

from __future__ import annotations

__all__ = [
    "ANCHOR_LIFETIME_S",
    "MAX_LIST_BYTES",
    "ListKind",
    "SignedList",
    "check_newer",
    "next_sequence",
    "read_list",
    "resign_due_at",
    "revocations_from_json",
    "revocations_json",
    "sign_list",
    "verify_list_at",
]

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from codeengine.code.errors import BadSignature, ListRefused, Reason
from codeengine.code.keyring import KID_BYTES, KeyId, SigningKey
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import SuiteRegistry, b64url_decode, b64url_encode
from codeengine.code.token import CTI_BYTES, sig_structure
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations

MAX_LIST_BYTES: Final = 8 * 1024 * 1024
"""Longer documents are refused before any parsing."""
ANCHOR_LIFETIME_S: Final = 5 * 366 * 86_400
"""How long a new trust anchor stays valid: terminals are configured with it once, by hand or
by a firmware update, so it lives for years; rotate it well before (docs/operations.md)."""

_MAX_UINT: Final = 2**64 - 1
_COSE_SIGN1_HEAD: Final = b"\xd2\x84"
_EMPTY_MAP: Final = b"\xa0"
# The smallest argument each long head form may carry: anything smaller had a shorter spelling.
_SHORTEST: Final = (24, 1 << 8, 1 << 16, 1 << 32)


class ListKind(IntEnum):
    """What a signed list carries (payload label -1)."""

    TRUST = 1
    """The trust list: the JWKS of ``GET /v1/trust``."""
    REVOCATIONS = 2
    """The revocation list: ``{"codes": [...], "keys": [...]}``."""


@dataclass(frozen=True, slots=True)
class SignedList:
    """A signed list: what it carries, its sequence and validity, the anchor that signed it."""

    kind: ListKind
    seq: int
    issued_at: int
    expires_at: int
    content: bytes
    """The exact bytes of the unsigned document (JSON) the list carries."""
    anchor: KeyId
    """The id of the trust anchor that signed it."""
    document: bytes
    """The whole tagged COSE_Sign1, as served and as a terminal stores it."""


def _refuse(reason: Reason, detail: str) -> ListRefused:
    return ListRefused(detail, reason=reason)


def _malformed(detail: str) -> ListRefused:
    return _refuse(Reason.LIST_MALFORMED, detail)


# Encoding ---------------------------------------------------------------------------------------


def _head(major: int, value: int) -> bytes:
    """A CBOR head in its shortest form."""
    if value < 24:
        return bytes((major << 5 | value,))
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | info,)) + value.to_bytes(size, "big")
    raise ValueError("a CBOR argument is below 2**64")


def _int(value: int) -> bytes:
    return _head(0, value) if value >= 0 else _head(1, -1 - value)


def _bstr(data: bytes) -> bytes:
    return _head(2, len(data)) + data


def _payload(kind: ListKind, seq: int, issued_at: int, expires_at: int, content: bytes) -> bytes:
    # Keys in bytewise order of their encodings: 0x04 (exp), 0x06 (iat), 0x20 (-1 kind),
    # 0x21 (-2 seq), 0x22 (-3 content).
    return b"".join(
        (
            b"\xa5\x04", _head(0, expires_at), b"\x06", _head(0, issued_at),
            b"\x20", _head(0, kind), b"\x21", _head(0, seq), b"\x22", _bstr(content),
        )
    )  # fmt: skip


def sign_list(
    kind: ListKind, content: bytes, seq: int, issued_at: int, expires_at: int, key: SigningKey
) -> SignedList:
    """Sign ``content`` (the unsigned document's bytes) as list ``seq``, valid until
    ``expires_at``, with a trust-anchor key."""
    for name, value in (("seq", seq), ("issued_at", issued_at), ("expires_at", expires_at)):
        if type(value) is not int or not 0 <= value <= _MAX_UINT:
            raise ValueError(f"{name} must be an integer in [0, 2**64)")
    if issued_at > expires_at:
        raise ValueError("a list cannot expire before it is issued")
    protected = b"".join((b"\xa2\x01", _int(key.alg), b"\x04", _bstr(key.kid)))
    payload = _payload(ListKind(kind), seq, issued_at, expires_at, bytes(content))
    signature = key.private.sign(sig_structure(protected, payload))
    document = b"".join(
        (_COSE_SIGN1_HEAD, _bstr(protected), _EMPTY_MAP, _bstr(payload), _bstr(signature))
    )
    if len(document) > MAX_LIST_BYTES:
        raise ValueError("the list is larger than a terminal reads")
    return SignedList(ListKind(kind), seq, issued_at, expires_at, bytes(content), key.kid, document)


# Decoding ---------------------------------------------------------------------------------------


def _argument(buf: bytes, pos: int, major: int, what: str) -> tuple[int, int]:
    """The argument of the head at ``pos``, which must be of ``major`` type; shortest form."""
    if pos >= len(buf):
        raise _malformed(f"{what}: truncated")
    initial = buf[pos]
    if initial >> 5 != major:
        raise _malformed(f"{what}: wrong CBOR type")
    info = initial & 0x1F
    if info < 24:
        return info, pos + 1
    if info > 27:
        raise _malformed(f"{what}: indefinite length or reserved CBOR head")
    end = pos + 1 + (1 << (info - 24))
    if end > len(buf):
        raise _malformed(f"{what}: truncated")
    value = int.from_bytes(buf[pos + 1 : end], "big")
    if value < _SHORTEST[info - 24]:
        raise _malformed(f"{what}: not in its shortest form")
    return value, end


def _read_uint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    return _argument(buf, pos, 0, what)


def _read_int(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] >> 5 == 1:
        negated, end = _argument(buf, pos, 1, what)
        return -1 - negated, end
    return _argument(buf, pos, 0, what)


def _read_bstr(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    length, start = _argument(buf, pos, 2, what)
    end = start + length
    if end > len(buf):
        raise _malformed(f"{what}: truncated")
    return buf[start:end], end


def _expect(buf: bytes, pos: int, expected: bytes, what: str) -> int:
    if buf[pos : pos + len(expected)] != expected:
        raise _malformed(what)
    return pos + len(expected)


@dataclass(frozen=True, slots=True)
class _Parsed:
    alg: int
    signed: SignedList
    protected: bytes
    payload: bytes
    signature: bytes


def _parse(document: bytes) -> _Parsed:
    if not isinstance(document, bytes):
        raise _refuse(Reason.LIST_UNSIGNED, "a signed list is bytes (a COSE_Sign1)")
    if len(document) > MAX_LIST_BYTES:
        raise _malformed("the list is larger than a terminal reads")
    if not document.startswith(_COSE_SIGN1_HEAD):
        raise _refuse(Reason.LIST_UNSIGNED, "not a signed list (a tagged COSE_Sign1)")
    protected, pos = _read_bstr(document, 2, "protected header")
    pos = _expect(document, pos, _EMPTY_MAP, "the unprotected header must be an empty map")
    payload, pos = _read_bstr(document, pos, "payload")
    signature, pos = _read_bstr(document, pos, "signature")
    if pos != len(document):
        raise _malformed("trailing bytes after the COSE_Sign1")

    at = _expect(protected, 0, b"\xa2\x01", "protected header: must be the map {1: alg, 4: kid}")
    alg, at = _read_int(protected, at, "alg")
    at = _expect(protected, at, b"\x04" + bytes((0x40 | KID_BYTES,)), "kid: must be 8 bytes")
    kid = protected[at : at + KID_BYTES]
    if len(kid) != KID_BYTES or at + KID_BYTES != len(protected):
        raise _malformed("protected header: kid truncated or trailing bytes")

    at = _expect(payload, 0, b"\xa5\x04", "payload: must be a map of five, starting with exp (4)")
    exp, at = _read_uint(payload, at, "exp")
    at = _expect(payload, at, b"\x06", "payload: expected iat (6)")
    iat, at = _read_uint(payload, at, "iat")
    at = _expect(payload, at, b"\x20", "payload: expected kind (-1)")
    kind, at = _read_uint(payload, at, "kind")
    at = _expect(payload, at, b"\x21", "payload: expected seq (-2)")
    seq, at = _read_uint(payload, at, "seq")
    at = _expect(payload, at, b"\x22", "payload: expected content (-3)")
    content, at = _read_bstr(payload, at, "content")
    if at != len(payload):
        raise _malformed("payload: trailing bytes")
    if kind not in ListKind._value2member_map_:
        raise _malformed("payload: unknown kind")
    if iat > exp:
        raise _malformed("payload: iat is after exp")
    signed = SignedList(ListKind(kind), seq, iat, exp, content, KeyId(kid), document)
    return _Parsed(alg, signed, protected, payload, signature)


def read_list(document: bytes) -> SignedList:
    """A signed list's fields, its structure checked but not its signature (the publisher reads
    what it stored with this); ListRefused if it is not one."""
    return _parse(document).signed


def check_newer(new: SignedList, held: SignedList | None) -> None:
    """Refuse ``new`` (``LIST_ROLLBACK``) unless it is newer than ``held`` or the very same."""
    if held is None:
        return
    if new.kind != held.kind:
        raise ValueError("compare lists of one kind")
    if new.seq > held.seq or new.document == held.document:
        return
    raise _refuse(
        Reason.LIST_ROLLBACK,
        f"sequence {new.seq} is not newer than {held.seq}, the list already held",
    )


def verify_list_at(
    document: bytes,
    kind: ListKind,
    anchors: TrustList,
    now: int,
    *,
    held: SignedList | None = None,
    suites: SuiteRegistry = DEFAULT_SUITES,
) -> SignedList:
    """A terminal's check of a fetched list, in the order of code-format.md section 12.

    ``anchors`` are the trust-anchor public keys the terminal was configured with, ``held`` the
    list of this kind it holds now (None for none). Raises ListRefused with the reason.
    """
    parsed = _parse(document)
    signed = parsed.signed
    anchor = anchors.get(signed.anchor)
    if anchor is None or not anchor.valid_at(now):
        raise _refuse(Reason.LIST_UNKNOWN_ANCHOR, "not signed by a trust anchor valid now")
    if suites.by_cose_alg(parsed.alg) is None or anchor.alg != parsed.alg:
        raise _refuse(Reason.LIST_UNKNOWN_ANCHOR, "the algorithm is not its anchor's")
    try:
        anchor.verify(parsed.signature, sig_structure(parsed.protected, parsed.payload))
    except BadSignature:
        raise _refuse(Reason.LIST_BAD_SIGNATURE, "the signature does not match") from None
    if signed.kind != kind:
        raise _refuse(
            Reason.LIST_WRONG_KIND, f"a {signed.kind.name.lower()} list, not {kind.name.lower()}"
        )
    if now > signed.expires_at:
        raise _refuse(Reason.LIST_EXPIRED, f"the list expired at {signed.expires_at}")
    # A held list past its own expiry sets no floor: any list still valid was signed after it.
    # Without this, a sequence pushed far ahead once (through the store) would have a terminal
    # refuse every genuine list for good.
    check_newer(signed, held if held is not None and now <= held.expires_at else None)
    return signed


# The publisher's rules --------------------------------------------------------------------------


def next_sequence(stored: int, now_ms: int) -> int:
    """The next list's sequence: above every one before, and at least the time in ms.

    The time floor keeps sequences rising after the store is restored from a backup that holds
    an older sequence: terminals that hold a newer list would otherwise refuse every new one.
    """
    return max(stored + 1, now_ms)


def resign_due_at(stored: SignedList | None, content: bytes, anchor: KeyId, now: int) -> bool:
    """Whether a new signature is due: no list yet, another content or anchor, or past half
    its validity (so a terminal that fetches now and then never holds an expired list)."""
    if stored is None or stored.content != content or stored.anchor != anchor:
        return True
    return now >= stored.issued_at + (stored.expires_at - stored.issued_at) // 2


# The revocation list's document -----------------------------------------------------------------


def revocations_json(revocations: Revocations) -> bytes:
    """The revocation list as a signed list carries it: ``{"codes": [...], "keys": [...]}``,
    code ids in lower-case hex and key ids in base64url, each sorted; compact JSON."""
    document = {
        "codes": sorted(cti.hex() for cti in revocations.codes),
        "keys": sorted(b64url_encode(kid) for kid in revocations.keys),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def revocations_from_json(content: bytes, *, extra: frozenset[str] = frozenset()) -> Revocations:
    """Read a revocation list strictly: members ``codes`` and ``keys`` (and ``extra``), each an
    array of ids; ListRefused(LIST_MALFORMED) names the first problem."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise _malformed("the revocation list is not valid JSON") from exc
    if not isinstance(document, dict) or not {"codes", "keys"} <= set(document) <= {
        "codes",
        "keys",
        *extra,
    }:
        raise _malformed("a revocation list is an object with the members 'codes' and 'keys'")
    codes, kids = document["codes"], document["keys"]
    if not isinstance(codes, list) or not isinstance(kids, list):
        raise _malformed("revocation list members 'codes' and 'keys' are arrays")
    try:
        return Revocations(
            codes=frozenset(_code_id(c) for c in codes), keys=frozenset(_key_id(k) for k in kids)
        )
    except ValueError as exc:
        raise _malformed("a revocation list entry is not a code id or key id") from exc


_HEX: Final = frozenset("0123456789abcdef")


def _code_id(value: object) -> bytes:
    # Lower-case hex of the 6-byte cti, as revocations_json writes it: one spelling an id.
    if not isinstance(value, str) or len(value) != 2 * CTI_BYTES or not _HEX.issuperset(value):
        raise ValueError("not a code id")
    return bytes.fromhex(value)


def _key_id(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a key id")
    kid = b64url_decode(value)
    if len(kid) != KID_BYTES:
        raise ValueError("not a key id")
    return kid
