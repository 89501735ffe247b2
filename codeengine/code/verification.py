"""扫码/验码: the verdict on a scanned code, online, degraded or offline. Pure: no I/O, no clock.

Online, the store holds the token the issuer handed out, so a code that matches it needs no
signature check, and the answer carries the subject's *live* colour. A code the store does not
hold (superseded more than once, or lost in a failover) is accepted only on its signature.
When the store cannot be reached, the verdict rests on the signature alone and says so
(``degraded``), with the signed colour as of the code's issue time, or grey where policy says.
The offline SDK gives the same verdicts from a cached trust list and revocation list.
"""

from __future__ import annotations

__all__ = [
    "Revocations",
    "Verdict",
    "degraded_verdict_at",
    "offline_verdict_at",
    "online_verdict_at",
    "precheck_at",
    "refusal",
]

from dataclasses import dataclass, field
from functools import partial
from typing import Final, NamedTuple

from codeengine.code.errors import (
    Expired,
    NotYetValid,
    Reason,
    Revoked,
    UnsupportedAlgorithm,
    VerificationError,
    WrongCity,
)
from codeengine.code.model import CodeKind, Colour
from codeengine.code.registry import DEFAULT_SUITES
from codeengine.code.suites import b64url_encode
from codeengine.code.token import (
    Claims,
    DecodedCode,
    check_signature_at,
    check_window_at,
    decode,
    sig_structure,
)
from codeengine.code.trustlist import TrustList


@dataclass(frozen=True, slots=True)
class Revocations:
    """Revoked code ids (cti) and key ids, as the verifiers and terminals cache them."""

    codes: frozenset[bytes] = field(default_factory=frozenset)
    keys: frozenset[bytes] = field(default_factory=frozenset)


class Verdict(NamedTuple):
    """The answer to one scan. ``subject`` is for the scan log only, never shown to terminals.

    A tuple underneath: every scan makes one, and a tuple is the cheapest immutable record.
    """

    valid: bool
    reason: str
    checked_at: int
    colour: Colour | None = None
    kind: CodeKind | None = None
    city: int | None = None
    as_of: int | None = None
    degraded: bool = False
    subject_raw: bytes | None = None

    @property
    def subject(self) -> str | None:
        """The subject pseudonym the code names, once decoded (for the scan log)."""
        return None if self.subject_raw is None else b64url_encode(self.subject_raw)

    def to_json(self) -> dict[str, object]:
        """The API answer."""
        return {
            "valid": self.valid,
            "reason": self.reason,
            "colour": None if self.colour is None else self.colour.label,
            "kind": None if self.kind is None else self.kind.label,
            "city": self.city,
            "checked_at": self.checked_at,
            "as_of": self.as_of,
            "degraded": self.degraded,
        }


_VALID: Final = Reason.VALID.value
# The algorithms check_signature_with accepts by default, as one set lookup.
_ACCEPTED_ALGS: Final = frozenset(suite.cose_alg for suite in DEFAULT_SUITES)
_new_verdict: Final = partial(tuple.__new__, Verdict)


def refusal(exc: VerificationError, now: int, claims: Claims | None = None) -> Verdict:
    """The verdict for a refused code; what the code claims is echoed only once decoded."""
    if claims is None:
        return Verdict(False, exc.reason.value, now)
    return Verdict(False, exc.reason.value, now, None, claims.kind, claims.city, None, False,
                   claims.subject)  # fmt: skip


def precheck_at(
    text: str,
    trust: TrustList,
    revocations: Revocations,
    now: int,
    skew_s: int,
    *,
    terminal_city: int | None = None,
    cross_city: bool = True,
) -> DecodedCode | Verdict:
    """Every check that needs no store and no signature: decode, revocation, key, window, city.

    Returns the decoded code, or the refusal (with what the code claims, once decoded).
    """
    try:
        decoded = decode(text)
    except VerificationError as exc:
        return refusal(exc, now)
    claims = decoded.claims
    try:
        if decoded.kid in revocations.keys or claims.cti in revocations.codes:
            raise Revoked("the code or its key has been revoked")
        trust.key_at(decoded.kid, now)
        check_window_at(claims, now, skew_s)
        if not cross_city and terminal_city is not None and claims.city != terminal_city:
            raise WrongCity("the code was issued for another city")
    except VerificationError as exc:
        return refusal(exc, now, claims)
    return decoded


def _valid(claims: Claims, colour: Colour, now: int, as_of: int, degraded: bool) -> Verdict:
    return _new_verdict((True, _VALID, now, colour, claims.kind, claims.city, as_of, degraded,
                         claims.subject))  # fmt: skip


def online_verdict_at(
    decoded: DecodedCode,
    text: str,
    colour: Colour | None,
    handed_out: bool,
    trust: TrustList,
    now: int,
) -> Verdict:
    """The verdict once the store answered: the subject's live ``colour`` (None: the store
    holds no record of the subject).

    ``handed_out`` says that ``text`` is, to the letter, a display token the store holds for
    the subject (``DisplayedCode.accepts_at``): the issuer signed it, so its signature need
    not be checked again. Any other code stands on its signature.
    """
    claims = decoded.claims
    if colour is None:
        unknown = VerificationError("unknown subject", reason=Reason.UNKNOWN_SUBJECT)
        return refusal(unknown, now, claims)
    if not handed_out:
        try:
            check_signature_at(decoded, trust, now)
        except VerificationError as exc:
            return refusal(exc, now, claims)
    return _valid(claims, colour, now, now, degraded=False)


def degraded_verdict_at(decoded: DecodedCode, trust: TrustList, now: int, *, grey: bool) -> Verdict:
    """The verdict when the store is unreachable: the signature alone, marked degraded."""
    claims = decoded.claims
    try:
        check_signature_at(decoded, trust, now)
    except VerificationError as exc:
        return refusal(exc, now, claims)
    colour = Colour.GREY if grey else claims.colour
    return _valid(claims, colour, now, claims.iat, degraded=True)


def offline_verdict_at(
    text: str,
    trust: TrustList,
    revocations: Revocations,
    now: int,
    skew_s: int,
) -> Verdict:
    """The offline SDK's verdict: every check a terminal can make alone, the signed colour."""
    # precheck_at's steps without a city policy, then check_signature_with's, written out in one
    # frame: a terminal makes one of these per scan, and the calls between these small checks
    # cost about 0.5 µs of the SDK's 8 µs beside the signature. A property test holds this
    # function to those shared checks on valid, altered, revoked, unknown-key, early and late
    # codes, and codes of a suite the default registry does not accept.
    try:
        decoded = decode(text)
    except VerificationError as exc:
        return refusal(exc, now)
    alg, kid, claims, protected, payload, signature = decoded
    exp, iat, cti, subject, kind, city, colour, _ = claims
    try:
        if kid in revocations.keys or cti in revocations.codes:
            raise Revoked("the code or its key has been revoked")
        key = trust.key_at(kid, now)
        if now > exp + skew_s:
            raise Expired()
        if iat > now + skew_s:
            raise NotYetValid()
        if alg not in _ACCEPTED_ALGS or alg != key.public.suite.cose_alg:
            raise UnsupportedAlgorithm("the code's algorithm is not accepted or not its key's")
        key.verify(signature, sig_structure(protected, payload))
    except VerificationError as exc:
        return refusal(exc, now, claims)
    return _new_verdict((True, _VALID, now, colour, kind, city, iat, False, subject))
