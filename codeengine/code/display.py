"""亮码: display. Which token a subject's app shows now, and when a new one must be signed.

A displayed code lives ``ttl_s`` seconds and is replaced once it passes half-life, so a
screenshot goes stale quickly while a busy app re-signs at most once per half-life. The store
keeps the current token and a digest of the one before it: during a refresh both are on screens,
and online verification accepts either until it expires. Pure: time and randomness are arguments.
"""

from __future__ import annotations

__all__ = [
    "DisplayedCode",
    "body_accepts_at",
    "claims_for_at",
    "is_current_at",
    "refresh_at",
    "successor_at",
    "token_digest",
]

import hashlib
import hmac
from typing import Any, NamedTuple

import msgpack

from codeengine.code.errors import CodeEngineError
from codeengine.code.model import CodeKind, Colour
from codeengine.code.pseudonym import subject_bytes
from codeengine.code.status import SubjectRecord
from codeengine.code.token import CTI_BYTES, MAX_TOKEN_CHARS, Claims

_COLOURS = {int(colour): colour for colour in Colour}
_new_tuple = tuple.__new__


def token_digest(token: str) -> bytes:
    """The 16-byte digest by which the store remembers a replaced token."""
    return hashlib.sha256(token.encode()).digest()[:16]


def refresh_at(iat: int, ttl_s: int) -> int:
    """When a token issued at ``iat`` should be replaced: its half-life."""
    return iat + ttl_s // 2


class DisplayedCode(NamedTuple):
    """The subject's current display token as the store holds it (a tuple: read per request)."""

    token: str
    cti: bytes
    iat: int
    exp: int
    colour: Colour
    version: int
    previous_digest: bytes = b""
    """SHA-256 (first 16 bytes) of the token this one replaced, while that one is unexpired."""
    previous_exp: int = 0
    kid: bytes = b""
    """The key that signed ``token``: after a rotation takes effect, the token is replaced."""

    def pack(self) -> bytes:
        """msgpack, with short field names: this is stored for every displaying subject."""
        fields: dict[str, Any] = {"t": self.token, "i": self.cti, "ia": self.iat, "e": self.exp}
        fields |= {"c": int(self.colour), "v": self.version}
        if self.previous_digest:
            fields |= {"pd": self.previous_digest, "pe": self.previous_exp}
        if self.kid:
            fields["k"] = self.kid
        return msgpack.packb(fields)  # type: ignore[no-any-return]

    @classmethod
    def unpack(cls, raw: bytes) -> DisplayedCode:
        """Read a stored value; a value the engine did not write raises CodeEngineError."""
        try:
            f: dict[str, Any] = msgpack.unpackb(raw)
            # Every field given, as a tuple: skips the generated __new__ (a read per request).
            return _new_tuple(cls, (
                str(f["t"]),
                bytes(f["i"]),
                int(f["ia"]),
                int(f["e"]),
                _COLOURS[f["c"]],
                int(f["v"]),
                bytes(f.get("pd", b"")),
                int(f.get("pe", 0)),
                bytes(f.get("k", b"")),
            ))  # fmt: skip
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise CodeEngineError("stored display token is corrupt") from exc

    def accepts_at(self, token: str, now: int) -> bool:
        """Whether ``token`` is, to the letter, the current token or the unexpired previous one.

        The whole text is compared, not the code id: a code altered anywhere (signature, colour,
        city) is not the one the issuer handed out and must stand on its signature instead.
        """
        if hmac.compare_digest(token.encode(), self.token.encode()):
            return True
        if not self.previous_digest or now > self.previous_exp:
            return False
        return hmac.compare_digest(token_digest(token), self.previous_digest)


def _token_head(size: int) -> bytes:
    """How ``DisplayedCode.pack`` starts its first field: the key ``t`` and the head of a
    ``size``-byte string (msgpack fixstr, str 8 or str 16)."""
    if size < 32:
        return b"\xa1t" + bytes([0xA0 | size])
    if size < 256:
        return b"\xa1t\xd9" + bytes([size])
    return b"\xa1t\xda" + size.to_bytes(2, "big")


_FIXMAP = range(0x80, 0x90)
_TOKEN_HEADS = [_token_head(size) for size in range(MAX_TOKEN_CHARS + 1)]
"""Every head a code's token can have, made once (a verify reads one per scan)."""


def body_accepts_at(body: bytes, token: str, now: int) -> bool:
    """``DisplayedCode.unpack(body).accepts_at(token, now)``, for a body whose seal held.

    A verify asks this of every scan, and the scanned code is almost always the current token:
    that is read where ``pack`` puts it (the map's first field) without unpacking the rest,
    0.1 against 1.9 µs (timeit). Anything else (the previous token, another layout) takes the
    full reading, so the answer is the same either way (a property test holds them equal).
    """
    encoded = token.encode()
    size = len(encoded)
    head = _TOKEN_HEADS[size] if size <= MAX_TOKEN_CHARS else _token_head(size)
    start = 1 + len(head)
    if (
        body
        and body[0] in _FIXMAP
        and body.startswith(head, 1)
        and hmac.compare_digest(body[start : start + len(encoded)], encoded)
    ):
        return True
    return DisplayedCode.unpack(body).accepts_at(token, now)


def is_current_at(
    shown: DisplayedCode | None,
    record: SubjectRecord,
    now: int,
    ttl_s: int,
    signing_kid: bytes | None = None,
) -> bool:
    """Whether ``shown`` may be handed out again: same status, before its half-life, and
    (given ``signing_kid``) signed by the key that signs now, so a rotation's switch, and the
    revocation of the old key that may follow it, reach every displayed code at once."""
    return (
        shown is not None
        and shown.colour == record.colour_at(now)
        and shown.version == record.version
        and shown.iat <= now < refresh_at(shown.iat, ttl_s)
        and (signing_kid is None or shown.kid == signing_kid)
    )


def claims_for_at(
    record: SubjectRecord, now: int, ttl_s: int, cti: bytes, kind: CodeKind | None = None
) -> Claims:
    """The claims of a new display token for the subject's current status (of ``kind``)."""
    if len(cti) != CTI_BYTES:
        raise ValueError(f"cti must be {CTI_BYTES} random bytes")
    return Claims(
        exp=now + ttl_s,
        iat=now,
        cti=cti,
        subject=subject_bytes(record.subject),
        kind=record.kind if kind is None else kind,
        city=record.city,
        colour=record.colour_at(now),
        version=record.version,
    )


def successor_at(
    shown: DisplayedCode | None, token: str, claims: Claims, now: int, kid: bytes = b""
) -> DisplayedCode:
    """The stored value after signing ``token``: it becomes current, the old one previous."""
    keep_previous = shown is not None and shown.exp >= now
    return DisplayedCode(
        token=token,
        cti=claims.cti,
        iat=claims.iat,
        exp=claims.exp,
        colour=claims.colour,
        version=claims.version,
        previous_digest=token_digest(shown.token) if keep_previous and shown else b"",
        previous_exp=shown.exp if keep_previous and shown else 0,
        kid=kid,
    )
