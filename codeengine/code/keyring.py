"""Key ids, keys with validity, and the issuer's keyring: signing, staged and retired keys.

A key id is the first 8 bytes of the key's RFC 7638 JWK thumbprint, so it is derived from the
key itself and a trust list can check every id it is given. Validity is inclusive at both ends:
a key is valid at ``now`` when ``not_before <= now <= not_after``.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_KEY_LIFETIME_S",
    "KID_BYTES",
    "KeyId",
    "Keyring",
    "SigningKey",
    "TrustedKey",
    "jwk_thumbprint",
    "jwks_keys",
    "key_id",
    "parse_private_jwk",
    "parse_public_jwk",
    "private_jwk",
    "public_jwk",
]

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, NewType

from codeengine.code.errors import KeyringError, RotationPending
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import (
    PrivateKey,
    PublicKey,
    RandomSource,
    SigningSuite,
    SuiteRegistry,
    Verifier,
    b64url_decode,
    b64url_encode,
)

KeyId = NewType("KeyId", bytes)
"""8 bytes: the head of the key's RFC 7638 SHA-256 thumbprint."""

KID_BYTES: Final = 8
DEFAULT_KEY_LIFETIME_S: Final = 400 * 86_400
"""How long a new signing key stays valid unless rotated first: a yearly rotation with slack."""

_MAX_TIME: Final = 2**63 - 1
# The members a trust-list JWK carries beside its suite's key members.
_META_MEMBERS: Final = frozenset({"kid", "alg", "use", "nbf", "exp"})


def jwk_thumbprint(public: PublicKey) -> bytes:
    """The RFC 7638 SHA-256 thumbprint: required members, sorted, no whitespace."""
    members = public.suite.public_to_jwk(public)
    text = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).digest()


def key_id(public: PublicKey) -> KeyId:
    """The 8-byte key id of a public key."""
    return KeyId(jwk_thumbprint(public)[:KID_BYTES])


def _check_validity(not_before: int, not_after: int) -> None:
    for value in (not_before, not_after):
        if type(value) is not int or not 0 <= value <= _MAX_TIME:
            raise KeyringError("key validity bounds are integer seconds in [0, 2**63)")
    if not_before > not_after:
        raise KeyringError("a key's not_before is after its not_after")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key, its id and its validity: one entry of a trust list."""

    kid: KeyId
    public: PublicKey
    not_before: int
    not_after: int
    # The suite's verify bound to this key, prepared once: ``key.verify(signature, message)``.
    verify: Verifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_validity(self.not_before, self.not_after)
        if self.kid != key_id(self.public):
            raise KeyringError("the key id is not the thumbprint of the key")
        object.__setattr__(self, "verify", self.public.suite.verifier(self.public))

    @classmethod
    def of(cls, public: PublicKey, not_before: int, not_after: int) -> TrustedKey:
        """An entry for a public key, deriving its id."""
        return cls(key_id(public), public, not_before, not_after)

    @property
    def alg(self) -> int:
        """The COSE algorithm id of the key's suite."""
        return self.public.suite.cose_alg

    def valid_at(self, now: int) -> bool:
        """Whether ``now`` lies within the key's validity, both ends included."""
        return self.not_before <= now <= self.not_after


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The private key that signs new codes, with its id and validity."""

    kid: KeyId
    private: PrivateKey
    not_before: int
    not_after: int

    def __post_init__(self) -> None:
        _check_validity(self.not_before, self.not_after)
        if self.kid != key_id(self.private.public):
            raise KeyringError("the key id is not the thumbprint of the key")

    @classmethod
    def of(cls, private: PrivateKey, not_before: int, not_after: int) -> SigningKey:
        """A signing key for a private key, deriving its id."""
        return cls(key_id(private.public), private, not_before, not_after)

    @property
    def alg(self) -> int:
        """The COSE algorithm id of the key's suite."""
        return self.private.suite.cose_alg

    @property
    def trusted(self) -> TrustedKey:
        """The public half, as the trust list publishes it."""
        return TrustedKey(self.kid, self.private.public, self.not_before, self.not_after)

    def valid_at(self, now: int) -> bool:
        """Whether ``now`` lies within the key's validity, both ends included."""
        return self.not_before <= now <= self.not_after


@dataclass(frozen=True, slots=True)
class Keyring:
    """One current signing key, at most one staged next key, and retired keys that still verify.

    A staged rotation publishes the next key before anything is signed with it: terminals that
    cache the trust list for its maximum age learn the key before they meet a code it signed.
    Retired keys keep only their public half: nothing signs with them again.
    """

    current: SigningKey
    retired: tuple[TrustedKey, ...] = ()
    next: SigningKey | None = None

    def __post_init__(self) -> None:
        kids = [self.current.kid, *(key.kid for key in self.retired)]
        if self.next is not None:
            kids.append(self.next.kid)
            if self.next.not_before <= self.current.not_before:
                raise KeyringError("the next key must start after the current one")
        if len(set(kids)) != len(kids):
            raise KeyringError("a key id appears twice in the keyring")

    @classmethod
    def generate_at(
        cls,
        now: int,
        suite: SigningSuite,
        random_bytes: RandomSource,
        *,
        lifetime_s: int = DEFAULT_KEY_LIFETIME_S,
    ) -> Keyring:
        """A keyring with one fresh signing key, valid from ``now`` for ``lifetime_s``."""
        return cls(SigningKey.of(suite.generate(random_bytes), now, now + lifetime_s))

    def rotate_at(
        self,
        now: int,
        suite: SigningSuite,
        overlap_s: int,
        random_bytes: RandomSource,
        *,
        lifetime_s: int = DEFAULT_KEY_LIFETIME_S,
        activate_in_s: int = 0,
    ) -> Keyring:
        """Make a new signing key; the old one verifies for ``overlap_s`` after the switch.

        With ``activate_in_s`` > 0 the new key is staged: published now, signing from
        ``now + activate_in_s`` (pass the trust list's maximum age). ``overlap_s`` must cover the
        longest token lifetime plus the trust list's maximum age, or codes signed just before the
        switch would be refused before they expire.
        """
        for name, value in (("overlap", overlap_s), ("activation delay", activate_in_s)):
            if type(value) is not int or value < 0:
                raise KeyringError(f"the rotation {name} is a non-negative number of seconds")
        ring = self.promote_at(now)
        if ring.next is not None:
            if activate_in_s:
                raise RotationPending("a staged rotation is pending; it must take effect first")
            # An emergency rotation replaces a staged key: it has not signed anything yet.
            ring = Keyring(ring.current, ring.retired)
        switch = now + activate_in_s
        fresh = SigningKey.of(suite.generate(random_bytes), switch, switch + lifetime_s)
        old = ring.current
        if activate_in_s == 0:
            retiring = TrustedKey(old.kid, old.private.public, old.not_before, now + overlap_s)
            return Keyring(fresh, (retiring, *ring.retired))
        staying = SigningKey(old.kid, old.private, old.not_before, switch + overlap_s)
        return Keyring(staying, ring.retired, fresh)

    def promote_at(self, now: int) -> Keyring:
        """The keyring once a staged key's time has come: it signs, the old key retires."""
        if self.next is None or self.next.not_before > now:
            return self
        return Keyring(self.next, (self.current.trusted, *self.retired))

    def prune_at(self, now: int) -> Keyring:
        """Drop retired keys whose validity has ended."""
        return replace(self, retired=tuple(k for k in self.retired if k.not_after >= now))

    def signing_key_at(self, now: int) -> SigningKey:
        """The key that signs at ``now``, or KeyringError if none is valid (rotate first)."""
        key = self.promote_at(now).current
        if not key.valid_at(now):
            raise KeyringError("the current signing key is not valid now; rotate the keyring")
        return key

    def public_keys(self) -> tuple[TrustedKey, ...]:
        """Every key a verifier should trust: current, staged next, retired."""
        staged = () if self.next is None else (self.next.trusted,)
        return (self.current.trusted, *staged, *self.retired)

    def to_private_jwks(self) -> dict[str, object]:
        """A JWKS for persistence: signing keys with ``d``, retired keys public only."""
        signing = [self.current] if self.next is None else [self.current, self.next]
        return {
            "keys": [*(private_jwk(k) for k in signing), *(public_jwk(k) for k in self.retired)],
        }

    @classmethod
    def from_private_jwks(cls, document: object, suites: SuiteRegistry = DEFAULT_SUITES) -> Keyring:
        """Read ``to_private_jwks`` output: one key with ``d`` signs, a second is staged."""
        keys = jwks_keys(document)
        signing: list[SigningKey] = []
        retired: list[TrustedKey] = []
        for index, jwk in enumerate(keys):
            try:
                if isinstance(jwk, dict) and "d" in jwk:
                    signing.append(parse_private_jwk(jwk, suites))
                else:
                    retired.append(parse_public_jwk(jwk, suites))
            except KeyringError as exc:
                raise KeyringError(f"keys[{index}]: {exc}") from exc
        if len(signing) not in (1, 2):
            raise KeyringError("a keyring JWKS needs one or two keys with 'd' (signing, next)")
        signing.sort(key=lambda key: key.not_before)
        staged = signing[1] if len(signing) == 2 else None
        return cls(signing[0], tuple(retired), staged)


def jwks_keys(document: object) -> list[object]:
    """The ``keys`` array of a JWKS document, which must have no other member."""
    if not isinstance(document, dict):
        raise KeyringError("a JWKS must be a JSON object")
    if set(document) != {"keys"}:
        raise KeyringError("a JWKS must have exactly the member 'keys'")
    keys = document["keys"]
    if not isinstance(keys, list):
        raise KeyringError("JWKS member 'keys' must be an array")
    return keys


def _meta(key: TrustedKey | SigningKey, suite: SigningSuite) -> dict[str, object]:
    return {
        "kid": b64url_encode(key.kid),
        "alg": suite.jose_alg,
        "use": "sig",
        "nbf": key.not_before,
        "exp": key.not_after,
    }


def public_jwk(key: TrustedKey) -> dict[str, object]:
    """The trust-list JWK of a key: its suite's members plus kid, alg, use, nbf and exp."""
    suite = key.public.suite
    return {**suite.public_to_jwk(key.public), **_meta(key, suite)}


def private_jwk(key: SigningKey) -> dict[str, object]:
    """The persisted JWK of a signing key: the public JWK plus ``d``."""
    suite = key.private.suite
    return {**suite.private_to_jwk(key.private), **_meta(key, suite)}


def _int_member(jwk: Mapping[str, object], name: str) -> int:
    value = jwk.get(name)
    # bool is an int subclass; JSON true must not pass for a timestamp.
    if type(value) is not int:
        raise KeyringError(f"JWK member {name!r} must be an integer")
    return value


def _parse_meta(jwk: object, suites: SuiteRegistry) -> tuple[dict[str, object], SigningSuite]:
    if not isinstance(jwk, dict) or not all(isinstance(name, str) for name in jwk):
        raise KeyringError("a JWK must be a JSON object")
    alg = jwk.get("alg")
    if not isinstance(alg, str):
        raise KeyringError("JWK member 'alg' must be a string")
    suite = suites.by_jose_alg(alg)
    if suite is None:
        raise KeyringError(f"JWK member 'alg' names no accepted suite: {alg[:20]!r}")
    if jwk.get("use") != "sig":
        raise KeyringError("JWK member 'use' must be 'sig'")
    return jwk, suite


def _check_kid_and_members(
    jwk: Mapping[str, object], public: PublicKey, key_members: set[str]
) -> KeyId:
    unknown = set(jwk) - key_members - _META_MEMBERS
    if unknown:
        raise KeyringError(f"JWK has unknown members: {sorted(unknown)}"[:200])
    text = jwk.get("kid")
    if not isinstance(text, str):
        raise KeyringError("JWK member 'kid' must be a string")
    try:
        kid = b64url_decode(text)
    except ValueError as exc:
        raise KeyringError("JWK member 'kid' is not unpadded base64url") from exc
    if kid != key_id(public):
        raise KeyringError("JWK member 'kid' is not the thumbprint of the key it carries")
    return KeyId(kid)


def parse_public_jwk(jwk: object, suites: SuiteRegistry = DEFAULT_SUITES) -> TrustedKey:
    """Read one trust-list JWK strictly; KeyringError names the first problem."""
    members, suite = _parse_meta(jwk, suites)
    if "d" in members:
        raise KeyringError("a trust-list JWK must not carry the private member 'd'")
    public = suite.public_from_jwk(members)
    kid = _check_kid_and_members(members, public, set(suite.public_to_jwk(public)))
    not_before, not_after = _int_member(members, "nbf"), _int_member(members, "exp")
    return TrustedKey(kid, public, not_before, not_after)


def parse_private_jwk(jwk: object, suites: SuiteRegistry = DEFAULT_SUITES) -> SigningKey:
    """Read one persisted signing-key JWK (with ``d``) strictly."""
    members, suite = _parse_meta(jwk, suites)
    private = suite.private_from_jwk(members)
    kid = _check_kid_and_members(members, private.public, set(suite.private_to_jwk(private)))
    not_before, not_after = _int_member(members, "nbf"), _int_member(members, "exp")
    return SigningKey(kid, private, not_before, not_after)
