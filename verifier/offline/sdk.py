"""``OfflineVerifier``: the verdict a terminal can reach alone, with an injectable clock."""

from __future__ import annotations

__all__ = ["CachedList", "OfflineVerifier"]

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeengine.code.errors import KeyringError, Reason
from codeengine.code.suites import b64url_decode
from codeengine.code.token import DEFAULT_SKEW_S
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations, Verdict, offline_verdict_at

DEFAULT_MAX_AGE_S = 24 * 3600
"""How long a terminal may go on trusting a list fetched while it was online."""


@dataclass(frozen=True, slots=True)
class CachedList:
    """A trust list and revocation list as a terminal cached them, with when it fetched them."""

    trust: TrustList
    revocations: Revocations
    fetched_at: int

    @classmethod
    def from_documents(
        cls, trust_jwks: str | bytes, revocations: str | bytes | None, fetched_at: int
    ) -> CachedList:
        """Build from the verifier's ``/v1/trust`` and ``/v1/revocations`` answers."""
        trust = TrustList.from_json(trust_jwks)
        revoked = Revocations()
        if revocations is not None:
            revoked = _parse_revocations(json.loads(revocations))
        return cls(trust, revoked, fetched_at)


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
    """Verifies codes against a cached list; ``clock`` returns seconds since the epoch."""

    def __init__(
        self,
        cached: CachedList,
        *,
        max_age_s: int = DEFAULT_MAX_AGE_S,
        skew_s: int = DEFAULT_SKEW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cached = cached
        self._max_age_s = max_age_s
        self._skew_s = skew_s
        self._clock = clock

    def update(self, cached: CachedList) -> None:
        """Replace the cached lists (after a successful fetch)."""
        self._cached = cached

    @property
    def stale(self) -> bool:
        """Whether the cached list is older than its maximum age."""
        return int(self._clock()) - self._cached.fetched_at > self._max_age_s

    def verify(self, text: str) -> Verdict:
        """The verdict for a scanned text (a scanner's trailing CR/LF is ignored)."""
        now = int(self._clock())
        cached = self._cached
        if now - cached.fetched_at > self._max_age_s:
            return Verdict(False, Reason.TRUST_LIST_STALE.value, now)
        return offline_verdict_at(
            text.rstrip("\r\n"), cached.trust, cached.revocations, now, self._skew_s
        )
