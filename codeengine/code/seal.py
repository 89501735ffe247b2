"""Seals: the MAC that makes a stored value trustworthy to the services that read it.

Anyone who can write Redis could otherwise change what a code answers. Every value the services
trust when they read a subject (its record, its display tokens) is written with a seal that the
writing service computes with a key Redis never sees, not even as a script argument. A stored
value is its msgpack body followed by a trailer that is itself a msgpack ``bin 8`` of 20 bytes
(so the whole value still reads as msgpack objects): the key id (4 bytes) and the first 16
bytes of HMAC-SHA-256 (RFC 4868 truncation; HMAC-SM3 in the national profile, the keyset's
``mac``) over the key id, a context that names the value
(what it is and whose: a record copied to another subject's key does not open) and the body.

Pure: the keys are arguments, read from files by ``codeengine.keyfiles``.
"""

from __future__ import annotations

__all__ = [
    "KID_BYTES",
    "MAC_KEY_BYTES",
    "TAG_BYTES",
    "TRAILER_BYTES",
    "MACKeyset",
    "alias_context",
    "keyed_mac",
    "mac",
    "marker_context",
    "open_sealed",
    "record_context",
    "seal",
    "token_context",
]

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codeengine.code.errors import KeyringError, RecordTampered
from codeengine.code.macs import MACAlgorithm, PreparedMAC, mac_once, prepare
from codeengine.code.model import CodeKind

MAC_KEY_BYTES = 32
KID_BYTES = 4
TAG_BYTES = 16
_TRAILER_HEAD = b"\xc4" + bytes([KID_BYTES + TAG_BYTES])  # msgpack bin 8, 20 bytes
TRAILER_BYTES = len(_TRAILER_HEAD) + KID_BYTES + TAG_BYTES


@dataclass(frozen=True, slots=True, repr=False)
class MACKeyset:
    """MAC keys by key id, and the one that seals new values (``current``).

    Old keys stay in the set after a rotation so that values sealed with them keep opening.
    """

    current: bytes
    keys: Mapping[bytes, bytes]
    mac: MACAlgorithm = MACAlgorithm.HMAC_SHA256
    """The profile's MAC; the key file does not say, the ``crypto.profile`` setting does."""
    pads: Mapping[bytes, PreparedMAC] = field(init=False, compare=False)
    """Each key prepared once (its hash states after the HMAC pads, RFC 2104): copying them
    per MAC costs 0.9 µs against 1.8 µs through the hmac module (the display and verify
    paths check two seals a request)."""

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringError("the current MAC key id is not in the keyset")
        for kid, key in self.keys.items():
            if len(kid) != KID_BYTES or len(key) < MAC_KEY_BYTES:
                raise KeyringError(f"MAC key {kid.hex()} is malformed")
        pads = {kid: prepare(self.mac, key) for kid, key in self.keys.items()}
        object.__setattr__(self, "pads", pads)

    def __repr__(self) -> str:
        kids = sorted(k.hex() for k in self.keys)
        return f"MACKeyset(current={self.current.hex()}, kids={kids}, mac={self.mac.value})"

    def key(self, kid: bytes) -> bytes | None:
        """The key with this id, or None."""
        return self.keys.get(kid)

    def with_key(self, kid: bytes, key: bytes) -> MACKeyset:
        """The keyset with ``key`` added as the current key (a rotation)."""
        if kid in self.keys:
            raise KeyringError(f"MAC key id {kid.hex()} is taken")
        return MACKeyset(kid, {**self.keys, kid: key}, self.mac)

    def to_document(self) -> dict[str, Any]:
        """The keyset as its JSON file holds it (hex)."""
        return {
            "current": self.current.hex(),
            "keys": {kid.hex(): key.hex() for kid, key in self.keys.items()},
        }

    @classmethod
    def from_document(
        cls, document: Any, mac: MACAlgorithm = MACAlgorithm.HMAC_SHA256
    ) -> MACKeyset:
        """Read a keyset file's JSON, for the profile's ``mac``; KeyringError names what is
        wrong (never a key)."""
        try:
            keys = {bytes.fromhex(k): bytes.fromhex(v) for k, v in document["keys"].items()}
            return cls(bytes.fromhex(document["current"]), keys, mac)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise KeyringError(f"malformed MAC keyset: {type(exc).__name__}") from exc


def record_context(subject: str) -> bytes:
    """What a subject record's seal binds besides its body: the kind of value and the subject."""
    return b"ce/record\x00" + subject.encode() + b"\x00"


_OWN_KINDS = frozenset({int(CodeKind.HEALTH), int(CodeKind.ENTERPRISE_SERVICE)})
"""The kinds stored under a subject's plain token key (codeengine.store.keyspace.token_key)."""


def alias_context(alias: str) -> bytes:
    """What an alias key's seal binds: the alias hash it is stored under."""
    return b"ce/alias\x00" + alias.encode() + b"\x00"


def marker_context(marker_key: str) -> bytes:
    """What an operation marker's seal binds: the key it is stored under (subject and op)."""
    return b"ce/marker\x00" + marker_key.encode() + b"\x00"


def token_context(subject: str, kind: int | None) -> bytes:
    """What a display token's seal binds: the subject and which of its token keys holds it."""
    slot = 0 if kind is None or kind in _OWN_KINDS else kind
    return b"ce/token\x00" + subject.encode() + b"\x00" + str(slot).encode() + b"\x00"


def mac(
    key: bytes,
    kid: bytes,
    context: bytes,
    body: bytes,
    algorithm: MACAlgorithm = MACAlgorithm.HMAC_SHA256,
) -> bytes:
    """The truncated HMAC (the profile's ``algorithm``) over the key id, context and body."""
    return mac_once(algorithm, key, kid + context + body)[:TAG_BYTES]


def keyed_mac(keys: MACKeyset, kid: bytes, context: bytes, body: bytes) -> bytes:
    """:func:`mac` with the keyset's own algorithm and prepared keys (half the time)."""
    return keys.pads[kid].digest(kid + context + body)[:TAG_BYTES]


def seal(keys: MACKeyset, context: bytes, body: bytes) -> bytes:
    """``body`` with its trailer: the current key id and the MAC."""
    kid = keys.current
    return body + _TRAILER_HEAD + kid + keyed_mac(keys, kid, context, body)


def open_sealed(keys: MACKeyset, context: bytes, raw: bytes) -> bytes:
    """The body of a sealed value; RecordTampered when its seal does not hold."""
    if len(raw) <= TRAILER_BYTES or raw[-TRAILER_BYTES : -KID_BYTES - TAG_BYTES] != _TRAILER_HEAD:
        raise RecordTampered("stored value carries no seal")
    kid = raw[-KID_BYTES - TAG_BYTES : -TAG_BYTES]
    pads = keys.pads.get(kid)
    if pads is None:
        raise RecordTampered("stored value is sealed with an unknown key")
    body = raw[:-TRAILER_BYTES]
    if not hmac.compare_digest(pads.digest(kid + context + body)[:TAG_BYTES], raw[-TAG_BYTES:]):
        raise RecordTampered("stored value's seal does not match")
    return body
