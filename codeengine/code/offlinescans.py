"""Scans a terminal checked offline and sends later: how the verifier judges them again.

A terminal that lost its verifier answers scans from its cached lists and queues them; when
the network returns it sends them with the time each was scanned. The verifier believes that
time only within bounds (a terminal's clock may be wrong, or lie), checks each code again at
it with its own lists, and logs the scan with its own verdict, never the terminal's. Each
queued scan carries an id of the terminal's making, so that sending it again (a page reloaded
while it sent) logs it once.
"""

from __future__ import annotations

__all__ = ["SCAN_ID_PATTERN", "OfflineScan", "OfflineScanPolicy", "judge_at", "remember_for_s"]

import re
from dataclasses import dataclass

from codeengine.code.errors import Reason
from codeengine.code.token import MAX_TOKEN_CHARS, PREFIX
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations, Verdict, offline_verdict_at

SCAN_ID_PATTERN = "^[A-Za-z0-9_-]{16,43}$"
"""A scan id: 12 to 32 random bytes in unpadded base64url, made by the terminal."""
_SCAN_ID = re.compile(SCAN_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class OfflineScanPolicy:
    """How far the verifier believes a terminal's clock, and its city policy."""

    max_age_s: int
    future_s: int
    skew_s: int
    cross_city: bool = True


@dataclass(frozen=True, slots=True)
class OfflineScan:
    """One queued scan as the terminal sends it; ``at_ms`` is when it was scanned."""

    scan_id: str
    code: str
    terminal: str
    city: int
    at_ms: int
    venue: str = ""

    @staticmethod
    def valid_id(scan_id: str) -> bool:
        """Whether ``scan_id`` has the form of a scan id."""
        # fullmatch: a pattern's $ also matches before a trailing newline.
        return _SCAN_ID.fullmatch(scan_id) is not None


def judge_at(
    scan: OfflineScan,
    trust: TrustList,
    revocations: Revocations,
    now: int,
    policy: OfflineScanPolicy,
) -> Verdict | Reason:
    """The verdict at the scan's own time, or why the scan is not logged at all.

    A text that is not the engine's code, or does not decode as one, is MALFORMED and not
    logged: a terminal cannot have checked it offline, so it is no scan to account for.

    A scan older than ``max_age_s`` or later than ``future_s`` ahead of ``now`` is refused
    (SCAN_TOO_OLD, SCAN_IN_FUTURE): its time cannot be believed, and a verdict at it would
    be the terminal's choice. The lists are the verifier's current ones, so a key or code
    revoked since the scan answers REVOKED: the log says what the verifier holds now.
    """
    at = scan.at_ms // 1000
    if at < now - policy.max_age_s:
        return Reason.SCAN_TOO_OLD
    if at > now + policy.future_s:
        return Reason.SCAN_IN_FUTURE
    if not scan.code.startswith(PREFIX) or len(scan.code) > MAX_TOKEN_CHARS:
        # Not the engine's code (a DCC, a SMART Health Card, an alias card's number): nothing
        # here can check it, and it may hold personal data, so it is neither claimed nor logged.
        return Reason.MALFORMED
    verdict = offline_verdict_at(scan.code, trust, revocations, at, policy.skew_s)
    if verdict.reason == Reason.MALFORMED:
        # Garbage after the prefix: the same refusal, so that junk costs no store write.
        return Reason.MALFORMED
    if verdict.valid and not policy.cross_city and verdict.city != scan.city:
        return verdict._replace(valid=False, reason=Reason.WRONG_CITY.value)
    return verdict


def remember_for_s(scan: OfflineScan, now: int, policy: OfflineScanPolicy) -> int:
    """How long to remember a logged scan's id: until the scan would be refused as too old,
    so that every later send of it is either a known duplicate or SCAN_TOO_OLD, with a margin
    of ``future_s + skew_s`` for the clocks of the verifiers that judge the resend (another
    worker's clock may lag this one's by as much as the bounds allow)."""
    return max(1, scan.at_ms // 1000 + policy.max_age_s - now + 1 + policy.future_s + policy.skew_s)
