"""A seeded mix of codes for comparing two verifiers: valid, expired, altered, revoked, wrong key.

Every code is made by the engine's own code (``codeengine.code.token.encode`` with keyring keys
of each suite), and the lists are signed as the issuer publishes them (``sign_list`` over the
trust list's JWKS and ``revocations_json``), so what is compared is what terminals meet. Each
code carries the intent it was made with and the clock it is verified at; ``EXPECTED`` names the
reasons each intent may give, which holds the generator to what it means to make.

Seeded: claims, keys, intents and alterations repeat from run to run. Ed25519 signatures are
deterministic; ES256 and SM2 signing draws a fresh nonce, so alterations of the base45 text stay
in the characters before the signature, where every run gives the same outcome.
"""

from __future__ import annotations

__all__ = [
    "EXPECTED",
    "LISTS_AT",
    "NOW",
    "SKEW_S",
    "CodeMix",
    "Intent",
    "MixedCode",
    "make_mix",
]

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from codeengine.code.base45 import ALPHABET, b45decode
from codeengine.code.keyring import Keyring, SigningKey
from codeengine.code.model import CITIES, CodeKind, Colour
from codeengine.code.signedlist import ListKind, revocations_json, sign_list
from codeengine.code.sm2 import SM2
from codeengine.code.suites import ED25519, ES256, SigningSuite, deterministic_random
from codeengine.code.token import PREFIX, Claims, cose_to_token, decode, encode, sig_structure
from codeengine.code.trustlist import TrustList
from codeengine.code.verification import Revocations

NOW: Final = 1_800_000_000
"""The verification clock of every code but the stale-list ones (seconds)."""
SKEW_S: Final = 30
DISPLAY_S: Final = 120
DAY_S: Final = 86_400
LIST_TTL_S: Final = DAY_S
LISTS_AT: Final = NOW - 600
"""When the lists were signed and fetched: they go stale at ``LISTS_AT + LIST_TTL_S``."""
ES384: Final = -35
"""A COSE algorithm no verifier here accepts."""
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SUITES: Final[tuple[SigningSuite, ...]] = (ED25519, ES256, SM2)


class Intent(StrEnum):
    """What a code was made to be."""

    VALID = "valid"
    VALID_AT_EDGE = "valid-at-edge"
    """exp + skew == now, or iat == now + skew, or the lists' last second."""
    VALID_RETIRED_KEY = "valid-retired-key"
    """Signed by a retired key still inside its overlap."""
    SCANNER_SUFFIX = "valid-with-scanner-cr-lf"
    """A valid code as a scanner sends it, with a trailing CR, LF or both."""
    EXPIRED = "expired"
    EXPIRED_AND_ALTERED = "expired-and-tampered"
    """Expired and its signature altered: the offline verdict checks the window first."""
    NOT_YET_VALID = "not-yet-valid"
    PAYLOAD_BYTE = "tampered-payload-byte"
    HEADER_BYTE = "tampered-header-byte"
    SIGNATURE_BYTE = "tampered-signature-byte"
    HIGH_S = "tampered-es256-high-s"
    TEXT_CHAR = "tampered-base45-char"
    TRUNCATED = "truncated"
    FOREIGN_TEXT = "foreign-text"
    """Not a code: another scheme's prefix, a lower-case or missing prefix, a space, non-ASCII."""
    REVOKED_CODE = "revoked-code"
    REVOKED_KEY = "revoked-key"
    UNTRUSTED_KEY = "untrusted-key"
    WRONG_KEY_FOR_KID = "wrong-key-for-kid"
    ALG_MISMATCH = "alg-mismatch"
    KEY_EXPIRED = "key-expired"
    KEY_NOT_YET_VALID = "key-not-yet-valid"
    STALE_LISTS = "stale-lists"


_WINDOW: Final = frozenset({"EXPIRED", "NOT_YET_VALID"})
EXPECTED: Final[dict[Intent, frozenset[str]]] = {
    Intent.VALID: frozenset({"VALID"}),
    Intent.VALID_AT_EDGE: frozenset({"VALID"}),
    Intent.VALID_RETIRED_KEY: frozenset({"VALID"}),
    Intent.SCANNER_SUFFIX: frozenset({"VALID"}),
    Intent.EXPIRED: frozenset({"EXPIRED"}),
    Intent.EXPIRED_AND_ALTERED: frozenset({"EXPIRED"}),
    Intent.NOT_YET_VALID: frozenset({"NOT_YET_VALID"}),
    # A flipped payload byte breaks the structure, or moves exp or iat (the offline verdict
    # checks the window before the signature), or leaves a claims set the signature misses.
    Intent.PAYLOAD_BYTE: frozenset({"MALFORMED", "BAD_SIGNATURE"}) | _WINDOW,
    Intent.HEADER_BYTE: frozenset({"MALFORMED", "UNSUPPORTED_ALG", "UNKNOWN_KID"}),
    Intent.SIGNATURE_BYTE: frozenset({"BAD_SIGNATURE"}),
    Intent.HIGH_S: frozenset({"BAD_SIGNATURE"}),
    Intent.TEXT_CHAR: frozenset({"MALFORMED", "BAD_SIGNATURE", "UNSUPPORTED_ALG", "UNKNOWN_KID"})
    | _WINDOW,
    Intent.TRUNCATED: frozenset({"MALFORMED"}),
    Intent.FOREIGN_TEXT: frozenset({"MALFORMED"}),
    Intent.REVOKED_CODE: frozenset({"REVOKED"}),
    Intent.REVOKED_KEY: frozenset({"REVOKED"}),
    Intent.UNTRUSTED_KEY: frozenset({"UNKNOWN_KID"}),
    Intent.WRONG_KEY_FOR_KID: frozenset({"BAD_SIGNATURE"}),
    Intent.ALG_MISMATCH: frozenset({"UNSUPPORTED_ALG"}),
    Intent.KEY_EXPIRED: frozenset({"UNKNOWN_KID"}),
    Intent.KEY_NOT_YET_VALID: frozenset({"UNKNOWN_KID"}),
    Intent.STALE_LISTS: frozenset({"TRUST_LIST_STALE"}),
}

# How often each intent is drawn; a quarter of the codes are plainly valid.
_WEIGHTS: Final = {
    Intent.VALID: 24,
    Intent.VALID_AT_EDGE: 4,
    Intent.VALID_RETIRED_KEY: 4,
    Intent.SCANNER_SUFFIX: 3,
    Intent.EXPIRED: 6,
    Intent.EXPIRED_AND_ALTERED: 3,
    Intent.NOT_YET_VALID: 4,
    Intent.PAYLOAD_BYTE: 8,
    Intent.HEADER_BYTE: 4,
    Intent.SIGNATURE_BYTE: 6,
    Intent.HIGH_S: 3,
    Intent.TEXT_CHAR: 8,
    Intent.TRUNCATED: 4,
    Intent.FOREIGN_TEXT: 3,
    Intent.REVOKED_CODE: 5,
    Intent.REVOKED_KEY: 3,
    Intent.UNTRUSTED_KEY: 4,
    Intent.WRONG_KEY_FOR_KID: 4,
    Intent.ALG_MISMATCH: 3,
    Intent.KEY_EXPIRED: 3,
    Intent.KEY_NOT_YET_VALID: 3,
    Intent.STALE_LISTS: 3,
}


@dataclass(frozen=True, slots=True)
class MixedCode:
    """One scanned text, the suite of the key that made it, its intent and its clock."""

    index: int
    suite: str
    intent: Intent
    text: str
    now: int


@dataclass(frozen=True, slots=True)
class CodeMix:
    """The codes, and the signed lists and anchor JWKS a terminal verifies them with."""

    codes: tuple[MixedCode, ...]
    anchors_jwks: str
    trust_document: bytes
    revocations_document: bytes


@dataclass(frozen=True, slots=True)
class _SuiteKeys:
    """One suite's keys: those the trust list carries, and two it must not believe."""

    current: SigningKey
    retired: SigningKey
    expired: SigningKey
    staged: SigningKey
    revoked: SigningKey
    untrusted: SigningKey
    impostor: SigningKey

    def keyring(self) -> Keyring:
        """The keyring an issuer would publish: current, staged next, and the retired keys."""
        retired = (self.retired.trusted, self.expired.trusted, self.revoked.trusted)
        return Keyring(self.current, retired, self.staged)


def _suite_keys(suite: SigningSuite) -> _SuiteKeys:
    def key(name: str, not_before: int, not_after: int) -> SigningKey:
        seed = f"codeengine agreement/{suite.jose_alg}/{name}".encode()
        return SigningKey.of(suite.generate(deterministic_random(seed)), not_before, not_after)

    far = NOW + 365 * DAY_S
    return _SuiteKeys(
        current=key("current", NOW - 30 * DAY_S, far),
        retired=key("retired", NOW - 90 * DAY_S, NOW + DAY_S),
        expired=key("expired", NOW - 90 * DAY_S, NOW - 1),
        staged=key("staged", NOW + 1, far + DAY_S),
        revoked=key("revoked", NOW - 90 * DAY_S, far),
        untrusted=key("untrusted", NOW - 30 * DAY_S, far),
        impostor=key("impostor", NOW - 30 * DAY_S, far),
    )


def _head(major: int, value: int) -> bytes:
    """A CBOR head in its shortest form (docs/code-format.md, section 5)."""
    if value < 24:
        return bytes((major << 5 | value,))
    size = next(n for n in (1, 2, 4, 8) if value < 1 << (8 * n))
    return bytes((major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[size],)) + value.to_bytes(size, "big")


def _bstr(data: bytes) -> bytes:
    return _head(2, len(data)) + data


def _signed_under(header_alg: int, kid: bytes, payload: bytes, signer: SigningKey) -> str:
    """A code whose header names ``header_alg`` and ``kid``, signed by ``signer``'s suite."""
    alg = _head(0, header_alg) if header_alg >= 0 else _head(1, -1 - header_alg)
    protected = b"\xa2\x01" + alg + b"\x04" + _bstr(kid)
    signature = signer.private.sign(sig_structure(protected, payload))
    cose = b"\xd2\x84" + _bstr(protected) + b"\xa0" + _bstr(payload) + _bstr(signature)
    return cose_to_token(cose)


class _Maker:
    """Draws claims and makes each intent's code; collects the code ids to revoke."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.keys = {suite.jose_alg: _suite_keys(suite) for suite in SUITES}
        self.revoked_codes: set[bytes] = set()

    def claims(self, now: int, intent: Intent) -> Claims:
        rng = self.rng
        if intent in (Intent.EXPIRED, Intent.EXPIRED_AND_ALTERED):
            exp = now - SKEW_S - 1 - rng.choice((0, rng.randrange(1, 10**6)))
            iat = exp - DISPLAY_S
        elif intent is Intent.NOT_YET_VALID:
            iat = now + SKEW_S + 1 + rng.choice((0, rng.randrange(1, 10**6)))
            exp = iat + DISPLAY_S
        elif intent is Intent.VALID_AT_EDGE:
            iat, exp = rng.choice(
                ((now - SKEW_S - DISPLAY_S, now - SKEW_S), (now + SKEW_S, now + SKEW_S + DISPLAY_S))
            )
        else:
            iat = now - rng.randrange(0, DISPLAY_S + 1)
            exp = iat + DISPLAY_S
        version = rng.choice((0, rng.randrange(1, 24), rng.randrange(24, 2**16), 2**32 - 1))
        return Claims(exp, iat, rng.randbytes(6), rng.randbytes(12), rng.choice(list(CodeKind)),
                      rng.choice(list(CITIES)), rng.choice(list(Colour)), version)  # fmt: skip

    def make(self, suite: SigningSuite, intent: Intent, now: int) -> str:
        """The text of one code of ``intent``, as verified at ``now``."""
        rng = self.rng
        keys = self.keys[suite.jose_alg]
        claims = self.claims(now, intent)
        signer = {
            Intent.VALID_RETIRED_KEY: keys.retired,
            Intent.REVOKED_KEY: keys.revoked,
            Intent.UNTRUSTED_KEY: keys.untrusted,
            Intent.KEY_EXPIRED: keys.expired,
            Intent.KEY_NOT_YET_VALID: keys.staged,
        }.get(intent, keys.current)
        text = encode(claims, signer)
        if intent is Intent.REVOKED_CODE:
            self.revoked_codes.add(claims.cti)
        elif intent is Intent.WRONG_KEY_FOR_KID:
            text = _signed_under(suite.cose_alg, keys.current.kid, decode(text).payload,
                                 keys.impostor)  # fmt: skip
        elif intent is Intent.ALG_MISMATCH:
            others = [s for s in SUITES if s is not suite]
            other = rng.choice(others)
            header_alg = rng.choice((other.cose_alg, ES384))
            signer = self.keys[other.jose_alg].current
            text = _signed_under(header_alg, keys.current.kid, decode(text).payload, signer)
        elif intent in _ALTERATIONS:
            text = _ALTERATIONS[intent](rng, text)
        return text


def _cose(text: str) -> bytes:
    return b45decode(text[len(PREFIX) :])


def _signed_bytes(cose: bytes) -> int:
    """How many leading bytes of a code are not its signature (the signature is its tail)."""
    return len(cose) - (len(decode(cose_to_token(cose)).signature))


def _flip(data: bytes, at: int, rng: random.Random) -> bytes:
    return data[:at] + bytes((data[at] ^ rng.randrange(1, 256),)) + data[at + 1 :]


def _payload_byte(rng: random.Random, text: str) -> str:
    cose = _cose(text)
    decoded = decode(text)
    start = cose.index(decoded.payload, 4 + len(decoded.protected))
    return cose_to_token(_flip(cose, start + rng.randrange(len(decoded.payload)), rng))


def _header_byte(rng: random.Random, text: str) -> str:
    cose = _cose(text)
    protected = decode(text).protected
    return cose_to_token(_flip(cose, 3 + rng.randrange(len(protected)), rng))


def _signature_byte(rng: random.Random, text: str) -> str:
    cose = _cose(text)
    return cose_to_token(_flip(cose, len(cose) - 1 - rng.randrange(64), rng))


def _high_s(rng: random.Random, text: str) -> str:
    """ES256's twin signature (r, n - s): mathematically valid, refused for its high s."""
    cose = _cose(text)
    s = int.from_bytes(cose[-32:], "big")
    return cose_to_token(cose[:-32] + (P256_ORDER - s).to_bytes(32, "big"))


def _text_char(rng: random.Random, text: str) -> str:
    # Three characters of base45 carry two bytes: stay before the first that carries a
    # signature byte, whose value would change with the signing nonce.
    limit = len(PREFIX) + _signed_bytes(_cose(text)) // 2 * 3
    at = rng.randrange(len(PREFIX), limit)
    replacement = rng.choice([c for c in ALPHABET if c != text[at]] + ["a", "_"])
    return text[:at] + replacement + text[at + 1 :]


def _truncated(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(0, len(text))]


def _scanner_suffix(rng: random.Random, text: str) -> str:
    return text + rng.choice(("\r", "\n", "\r\n", "\n\n"))


def _foreign_text(rng: random.Random, text: str) -> str:
    body = text[len(PREFIX) :]
    return rng.choice(
        (
            "HC1:" + body,
            "ce1:" + body,
            body,
            " " + text,
            text + " ",
            text + "\t",
            text[:-1] + "\u00c9",
            PREFIX + body + body,
            PREFIX + "".join(rng.choice(ALPHABET) for _ in range(len(body))),
        )
    )


_ALTERATIONS: Final = {
    Intent.PAYLOAD_BYTE: _payload_byte,
    Intent.HEADER_BYTE: _header_byte,
    Intent.SIGNATURE_BYTE: _signature_byte,
    Intent.EXPIRED_AND_ALTERED: _signature_byte,
    Intent.HIGH_S: _high_s,
    Intent.TEXT_CHAR: _text_char,
    Intent.TRUNCATED: _truncated,
    Intent.SCANNER_SUFFIX: _scanner_suffix,
    Intent.FOREIGN_TEXT: _foreign_text,
}


def _clock(rng: random.Random, intent: Intent) -> int:
    """The clock a code is verified at: NOW, past the lists' expiry, or at its last second."""
    if intent is Intent.STALE_LISTS:
        return LISTS_AT + LIST_TTL_S + 1 + rng.choice((0, rng.randrange(1, DAY_S)))
    if intent is Intent.VALID_AT_EDGE and rng.random() < 0.25:
        return LISTS_AT + LIST_TTL_S
    return NOW


def make_mix(count: int, seed: int = 23) -> CodeMix:
    """``count`` codes across the three suites, with the signed lists that judge them."""
    rng = random.Random(seed)
    maker = _Maker(rng)
    intents = list(_WEIGHTS)
    weights = list(_WEIGHTS.values())
    codes = []
    for index in range(count):
        suite = SUITES[index % len(SUITES)]
        intent = rng.choices(intents, weights)[0]
        while intent is Intent.HIGH_S and suite is not ES256:
            intent = rng.choices(intents, weights)[0]
        now = _clock(rng, intent)
        text = maker.make(suite, intent, now)
        codes.append(MixedCode(index, suite.jose_alg, intent, text, now))
    trust = TrustList.of(
        key for keys in maker.keys.values() for key in keys.keyring().public_keys()
    )
    revoked = Revocations(
        codes=frozenset(maker.revoked_codes),
        keys=frozenset(keys.revoked.kid for keys in maker.keys.values()),
    )
    anchor = Keyring.generate_at(LISTS_AT - DAY_S, ED25519, deterministic_random(b"anchor"))
    signing = anchor.current
    expires = LISTS_AT + LIST_TTL_S
    signed_trust = sign_list(
        ListKind.TRUST, trust.to_json().encode(), 7, LISTS_AT, expires, signing
    )
    signed_revocations = sign_list(
        ListKind.REVOCATIONS, revocations_json(revoked), 7, LISTS_AT, expires, signing
    )
    return CodeMix(
        tuple(codes),
        TrustList.from_keyring(anchor).to_json(),
        signed_trust.document,
        signed_revocations.document,
    )
