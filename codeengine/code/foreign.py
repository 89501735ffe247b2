"""扫码 of other issuers' credentials: the verdict on a scanned ``HC1:`` or ``shc:/`` text.

The offline SDK and ``POST /v1/verify`` both call :func:`credential_verdict_at` with what ops
configured (:class:`ForeignTrust`: the DCC and SHC trust lists and the colour policy) and the
clock. A credential whose format the policy names no colour for is refused ``MALFORMED``, as
by a verifier that reads no such format; one whose trust list is empty is ``UNKNOWN_KID``.
"""

from __future__ import annotations

__all__ = [
    "MAX_SCAN_CHARS",
    "ForeignTrust",
    "credential_format",
    "credential_verdict_at",
    "load_foreign_trust",
]

import tomllib
from dataclasses import dataclass, field
from typing import Final

from codeengine.code import dcc, shc
from codeengine.code.base45 import b45decode
from codeengine.code.credential import (
    FORMATS,
    ColourPolicy,
    Credential,
    CredentialFormat,
    CredentialVerdict,
    credential_refusal,
)
from codeengine.code.dccschema import check_schema
from codeengine.code.errors import MalformedCode, Reason, VerificationError
from codeengine.code.token import MAX_TOKEN_CHARS

MAX_SCAN_CHARS: Final = max(MAX_TOKEN_CHARS, dcc.MAX_TEXT_CHARS, shc.MAX_TEXT_CHARS)
"""The longest scanned text a verifier reads: a SMART Health Card's chunks, all together."""


@dataclass(frozen=True, slots=True)
class ForeignTrust:
    """What a verifier trusts of other issuers, and the colour each credential type shows."""

    policy: ColourPolicy
    dcc: dcc.DCCTrustList = field(default_factory=lambda: dcc.DCCTrustList.of(()))
    shc: shc.SHCTrustList = field(default_factory=lambda: shc.SHCTrustList.of(()))
    skew_s: int = 0
    """Clock skew allowed on the credentials' own dates (they count in days, not seconds)."""


def load_foreign_trust(
    policy: str,
    *,
    dcc_trust: str | bytes | None = None,
    shc_trust: str | bytes | None = None,
) -> ForeignTrust:
    """What a verifier needs to read EU DCCs and SMART Health Cards: the colour policy (the
    text of a ``credentials.toml``) and the trust list ops keep for each format (the documents
    of docs/formats.md; None: trust nobody); KeyringError or ValueError naming the problem."""
    try:
        parsed = tomllib.loads(policy)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"credential policy: {exc}") from None
    return ForeignTrust(
        ColourPolicy.from_document(parsed),
        dcc.DCCTrustList.from_json(dcc_trust) if dcc_trust is not None else dcc.DCCTrustList.of(()),
        shc.SHCTrustList.from_json(shc_trust) if shc_trust is not None else shc.SHCTrustList.of(()),
    )


_BY_PREFIX: Final = tuple((fmt.prefix, fmt) for fmt in FORMATS)


def credential_format(text: str) -> CredentialFormat | None:
    """The credential format a scanned text is in by its prefix, or None (an engine code)."""
    for prefix, fmt in _BY_PREFIX:
        if text.startswith(prefix):
            return fmt
    return None


def credential_verdict_at(text: str, trust: ForeignTrust, now: int) -> CredentialVerdict | None:
    """The verdict on a scanned credential at ``now``, or None if the text is not one."""
    fmt = credential_format(text)
    if fmt is None:
        return None
    if not trust.policy.accepts(fmt):
        refused = MalformedCode("this verifier reads no credentials of that format")
        return credential_refusal(fmt, refused, now)
    if fmt is CredentialFormat.DCC:
        return _dcc_verdict_at(text, trust, now)
    return _shc_verdict_at(text, trust, now)


def _valid(credential: Credential, trust: ForeignTrust, now: int) -> CredentialVerdict:
    colour = trust.policy.colour_of(credential)
    return CredentialVerdict(True, Reason.VALID.value, now, credential.format, colour, credential)


def _dcc_verdict_at(text: str, trust: ForeignTrust, now: int) -> CredentialVerdict:
    # The steps of dcc.verify_dcc_at, so that a refusal after the signature held can say what
    # the certificate is, and one before it says nothing of unsigned content.
    signed: Credential | None = None
    try:
        sign1 = dcc.decode_cose(dcc.decompress(b45decode(dcc.unprefix(text))))
        claims = dcc.parse_claims(sign1.payload)
        signer = dcc.check_signature(sign1, trust.dcc)
        signed = dcc.credential_of(claims)
        dcc.check_key_usage(signer, claims)
        check_schema(claims.hcert)
        dcc.check_window_at(claims, now, trust.skew_s)
    except VerificationError as exc:
        return credential_refusal(CredentialFormat.DCC, exc, now, signed)
    return _valid(signed, trust, now)


def _shc_verdict_at(text: str, trust: ForeignTrust, now: int) -> CredentialVerdict:
    # shc.verify_shc_at's steps, for the same reason as the DCC's.
    signed: Credential | None = None
    try:
        token = shc.decode_jws(shc.numeric_to_jws(text))
        issuer = shc.check_signature(token, trust.shc)
        signed = shc.credential_of(token)
        shc.check_revocation(token, issuer)
        shc.check_window_at(token, now, trust.skew_s)
    except VerificationError as exc:
        return credential_refusal(CredentialFormat.SHC, exc, now, signed)
    return _valid(signed, trust, now)
