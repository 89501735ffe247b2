"""``OfflineVerifier``: the verdict a terminal can reach alone, with an injectable clock."""

from __future__ import annotations

__all__ = ["CachedList", "OfflineVerifier", "load_anchors", "load_foreign_trust"]

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from codeengine.code.credential import CredentialVerdict
from codeengine.code.errors import KeyringError, ListRefused, Reason
from codeengine.code.foreign import ForeignTrust, credential_verdict_at, load_foreign_trust
from codeengine.code.signedlist import (
    ListKind,
    SignedList,
    check_newer,
    revocations_from_json,
    verify_list_at,
)
from codeengine.code.suites import b64url_decode
from codeengine.code.token import DEFAULT_SKEW_S
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations, Verdict, offline_verdict_at

DEFAULT_MAX_AGE_S = 24 * 3600
"""How long a terminal may go on trusting a list fetched while it was online."""


def load_anchors(documents: Iterable[str | bytes]) -> TrustList:
    """The trust anchors a terminal is configured with, from one or more anchor JWKS documents
    (``trust-anchor.pub.json``; during a rotation, the old and the new one)."""
    keys = {}
    for document in documents:
        for key in TrustList.from_json(document):
            keys[key.kid] = key
    if not keys:
        raise KeyringError("no trust anchor given")
    return TrustList.of(keys.values())


@dataclass(frozen=True, slots=True)
class CachedList:
    """A trust list and revocation list as a terminal cached them, with when it fetched them.

    Built from signed lists (:meth:`from_signed`) it keeps them, so that the next fetch can be
    refused if it is older, and expires with the earlier of their expiries.
    """

    trust: TrustList
    revocations: Revocations
    fetched_at: int
    signed_trust: SignedList | None = None
    signed_revocations: SignedList | None = None

    @classmethod
    def from_documents(
        cls, trust_jwks: str | bytes, revocations: str | bytes | None, fetched_at: int
    ) -> CachedList:
        """Build from the unsigned ``/v1/trust`` and ``/v1/revocations`` answers."""
        trust = TrustList.from_json(trust_jwks)
        revoked = Revocations()
        if revocations is not None:
            revoked = _parse_revocations(json.loads(revocations))
        return cls(trust, revoked, fetched_at)

    @classmethod
    def from_signed(
        cls,
        trust_document: bytes,
        revocations_document: bytes,
        anchors: TrustList,
        fetched_at: int,
        *,
        held: CachedList | None = None,
    ) -> CachedList:
        """Build from ``/v1/trust/signed`` and ``/v1/revocations/signed``, checked under the
        ``anchors`` at ``fetched_at`` and against the lists ``held`` (rollback); ListRefused
        with a ``LIST_*`` reason otherwise (docs/code-format.md, section 12)."""
        held_trust, held_revocations = (
            (None, None)
            if held is None
            else _still_anchored(anchors, held.signed_trust, held.signed_revocations)
        )
        signed_trust = verify_list_at(
            trust_document, ListKind.TRUST, anchors, fetched_at, held=held_trust
        )
        signed_revocations = verify_list_at(
            revocations_document, ListKind.REVOCATIONS, anchors, fetched_at, held=held_revocations
        )
        try:
            trust = TrustList.from_json(signed_trust.content)
        except KeyringError as exc:
            raise ListRefused(f"trust list: {exc}", reason=Reason.LIST_MALFORMED) from None
        revoked = revocations_from_json(signed_revocations.content)
        return cls(trust, revoked, fetched_at, signed_trust, signed_revocations)

    @property
    def signed(self) -> bool:
        """Whether both lists came signed."""
        return self.signed_trust is not None and self.signed_revocations is not None

    @property
    def expires_at(self) -> int | None:
        """The earlier expiry of the signed lists, or None for unsigned ones."""
        if self.signed_trust is None or self.signed_revocations is None:
            return None
        return min(self.signed_trust.expires_at, self.signed_revocations.expires_at)


def _still_anchored(anchors: TrustList, *held: SignedList | None) -> tuple[SignedList | None, ...]:
    """The held lists whose anchor is still configured. A list signed by an anchor the terminal
    no longer trusts (removed after a compromise) sets no floor: its sequence may be one a thief
    made up to have every genuine list refused as older."""
    return tuple(
        signed if signed is not None and signed.anchor in anchors else None for signed in held
    )


def _parse_revocations(document: Any) -> Revocations:
    if not isinstance(document, dict):
        raise KeyringError("a revocation list is a JSON object")
    codes, kids = document.get("codes", []), document.get("keys", [])
    if not isinstance(codes, list) or not isinstance(kids, list):
        raise KeyringError("revocation list members 'codes' and 'keys' are arrays")
    try:
        return Revocations(
            codes=frozenset(bytes.fromhex(str(c)) for c in codes),
            keys=frozenset(b64url_decode(str(k)) for k in kids),
        )
    except ValueError as exc:
        raise KeyringError("a revocation list entry is not a code id or key id") from exc


class OfflineVerifier:
    """Verifies codes against a cached list; ``clock`` returns seconds since the epoch.

    Given ``anchors`` (the trust-anchor public keys), it takes only signed lists: an unsigned
    one is refused (``LIST_UNSIGNED``) here and in :meth:`update`, and :meth:`refresh` checks
    each fetched pair against the anchors and against the lists it holds.
    """

    def __init__(
        self,
        cached: CachedList,
        *,
        max_age_s: int = DEFAULT_MAX_AGE_S,
        skew_s: int = DEFAULT_SKEW_S,
        clock: Callable[[], float] = time.time,
        anchors: TrustList | None = None,
        foreign: ForeignTrust | None = None,
    ) -> None:
        self._anchors = anchors
        self._foreign = foreign
        self._max_age_s = max_age_s
        self._skew_s = skew_s
        self._clock = clock
        self._check_signed(cached)
        self._install(cached)

    def _check_signed(self, cached: CachedList) -> None:
        anchors = self._anchors
        if anchors is None:
            return
        if cached.signed_trust is None or cached.signed_revocations is None:
            raise ListRefused(
                "this terminal takes only lists signed by its trust anchor",
                reason=Reason.LIST_UNSIGNED,
            )
        # Lists kept from before the anchors changed (one was removed after a compromise) are
        # not taken back: the terminal fetches a pair its anchors sign.
        if any(s.anchor not in anchors for s in (cached.signed_trust, cached.signed_revocations)):
            raise ListRefused(
                "the lists are not signed by a configured trust anchor",
                reason=Reason.LIST_UNKNOWN_ANCHOR,
            )

    def _install(self, cached: CachedList) -> None:
        self._cached = cached
        # The last second the lists may be used: their maximum age, or a signed list's expiry.
        valid_until = cached.fetched_at + self._max_age_s
        if cached.expires_at is not None:
            valid_until = min(valid_until, cached.expires_at)
        self._valid_until = valid_until

    @property
    def cached(self) -> CachedList:
        """The lists held now."""
        return self._cached

    def update(self, cached: CachedList) -> None:
        """Replace the cached lists (after a successful fetch); with anchors, only by signed
        lists no older than those held (ListRefused otherwise, and the old lists stay)."""
        self._check_signed(cached)
        if self._anchors is not None:
            assert cached.signed_trust is not None and cached.signed_revocations is not None
            now = int(self._clock())
            held_trust, held_revocations = (
                held if held is not None and now <= held.expires_at else None
                for held in _still_anchored(
                    self._anchors, self._cached.signed_trust, self._cached.signed_revocations
                )
            )
            check_newer(cached.signed_trust, held_trust)
            check_newer(cached.signed_revocations, held_revocations)
        self._install(cached)

    def refresh(self, trust_document: bytes, revocations_document: bytes) -> CachedList:
        """Check a freshly fetched pair of signed lists and hold them from now on.

        ListRefused says why a pair was refused (unsigned, another key, altered, expired, older
        than the lists held...); the lists held stay in use until their own expiry.
        """
        if self._anchors is None:
            raise ListRefused("no trust anchor configured", reason=Reason.LIST_UNKNOWN_ANCHOR)
        cached = CachedList.from_signed(
            trust_document,
            revocations_document,
            self._anchors,
            int(self._clock()),
            held=self._cached,
        )
        self._install(cached)
        return cached

    @property
    def stale(self) -> bool:
        """Whether the cached list is past its maximum age or its signed expiry."""
        return int(self._clock()) > self._valid_until

    def verify(self, text: str) -> Verdict | CredentialVerdict:
        """The verdict for a scanned text (a scanner's trailing CR/LF is ignored).

        Given ``foreign``, an ``HC1:`` or ``shc:/`` text is verified against its own trust list
        and answered with the format named; the engine's list ageing does not apply to it.
        """
        now = int(self._clock())
        if self._foreign is not None:
            credential = credential_verdict_at(text.rstrip("\r\n"), self._foreign, now)
            if credential is not None:
                return credential
        if now > self._valid_until:
            return Verdict(False, Reason.TRUST_LIST_STALE.value, now)
        cached = self._cached
        return offline_verdict_at(
            text.rstrip("\r\n"), cached.trust, cached.revocations, now, self._skew_s
        )
