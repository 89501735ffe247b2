"""The trust list: the published JWKS (RFC 7517) of public keys with their validity.

Terminals cache it and look keys up by id on every scan, so lookup is one dict access. Reading a
document is strict: anything not exactly in the published format is a KeyringError naming the
problem, because a lenient reader here would decide which signatures a terminal believes.
"""

from __future__ import annotations

__all__ = ["TrustList"]

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from codeengine.code.errors import KeyringError, UnknownKeyId
from codeengine.code.keyring import (
    KeyId,
    Keyring,
    TrustedKey,
    jwks_keys,
    parse_public_jwk,
    public_jwk,
)
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import SuiteRegistry

_MAX_DOCUMENT_CHARS = 1_000_000


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise KeyringError("the JSON repeats a member name")
    return dict(pairs)


def _reject_constant(name: str) -> object:
    raise KeyringError(f"the JSON holds a non-standard number: {name}")


@dataclass(frozen=True, slots=True)
class TrustList:
    """The public keys a verifier trusts, each with its validity."""

    keys: tuple[TrustedKey, ...]
    _by_kid: dict[bytes, TrustedKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kid: dict[bytes, TrustedKey] = {}
        for key in self.keys:
            if key.kid in by_kid:
                raise KeyringError(f"key id {key.kid.hex()} appears twice in the trust list")
            by_kid[key.kid] = key
        object.__setattr__(self, "_by_kid", by_kid)

    @classmethod
    def of(cls, keys: Iterable[TrustedKey]) -> TrustList:
        """A trust list of these keys."""
        return cls(tuple(keys))

    @classmethod
    def from_keyring(cls, keyring: Keyring) -> TrustList:
        """The trust list an issuer publishes for its keyring."""
        return cls(keyring.public_keys())

    @classmethod
    def from_jwks(cls, document: object, suites: SuiteRegistry = DEFAULT_SUITES) -> TrustList:
        """Read a parsed JWKS strictly; KeyringError names the first problem."""
        keys: list[TrustedKey] = []
        for index, jwk in enumerate(jwks_keys(document)):
            try:
                keys.append(parse_public_jwk(jwk, suites))
            except KeyringError as exc:
                raise KeyringError(f"keys[{index}]: {exc}") from exc
        return cls(tuple(keys))

    @classmethod
    def from_json(cls, text: str | bytes, suites: SuiteRegistry = DEFAULT_SUITES) -> TrustList:
        """Parse JWKS JSON text strictly (no repeated names, no NaN) and read it."""
        if len(text) > _MAX_DOCUMENT_CHARS:
            raise KeyringError("the trust list document is too large")
        try:
            document = json.loads(
                text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
            )
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors.
            if isinstance(exc, KeyringError):
                raise
            raise KeyringError("the trust list is not valid JSON") from exc
        return cls.from_jwks(document, suites)

    def to_jwks(self) -> dict[str, object]:
        """The JWKS document, keys in list order."""
        return {"keys": [public_jwk(key) for key in self.keys]}

    def to_json(self) -> str:
        """The JWKS as compact JSON with sorted members: byte-stable for publishing and caching."""
        return json.dumps(self.to_jwks(), sort_keys=True, separators=(",", ":"))

    def get(self, kid: bytes) -> TrustedKey | None:
        """The key with this id, whatever its validity, or None."""
        return self._by_kid.get(kid)

    def key_at(self, kid: KeyId | bytes, now: int) -> TrustedKey:
        """The key with this id if it is valid at ``now``, else raise UnknownKeyId."""
        key = self._by_kid.get(kid)
        if key is None:
            raise UnknownKeyId("the key id is not in the trust list")
        if not key.not_before <= now <= key.not_after:
            raise UnknownKeyId("the key is not valid at this time")
        return key

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self.keys)

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, bytes) and kid in self._by_kid
