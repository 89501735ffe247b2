"""The error tree shared by the core, the services and the offline SDK.

Every error carries a stable ``reason`` code. APIs put it in problem bodies, the offline SDK
returns it to terminals and metrics label by it, so a reason code, once published, never changes
its meaning.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BadRequest",
    "BadSignature",
    "ClientClosed",
    "CodeEngineError",
    "CryptoUnavailable",
    "Expired",
    "InvalidIdentifier",
    "KeyringError",
    "ListRefused",
    "MalformedCode",
    "Moved",
    "NotAuthenticated",
    "NotWriter",
    "NotYetValid",
    "ProfileMismatch",
    "RateLimited",
    "Reason",
    "RecordTampered",
    "Revoked",
    "RotationPending",
    "StoreUnavailable",
    "TrustListStale",
    "UnknownKeyId",
    "UnknownSubject",
    "UnsupportedAlgorithm",
    "VerificationError",
    "VersionConflict",
    "WriteNotReplicated",
    "WrongCity",
]

from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes: the vocabulary of every refusal the engine gives."""

    # Decoding and verifying a code.
    VALID = "VALID"
    MALFORMED = "MALFORMED"
    UNSUPPORTED_ALG = "UNSUPPORTED_ALG"
    UNKNOWN_KID = "UNKNOWN_KID"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REVOKED = "REVOKED"
    WRONG_CITY = "WRONG_CITY"
    TRUST_LIST_STALE = "TRUST_LIST_STALE"
    # Signed lists (the trust list and the revocation list a terminal caches): why one was
    # refused, in the order the checks run (docs/code-format.md, section 12).
    LIST_UNSIGNED = "LIST_UNSIGNED"
    LIST_MALFORMED = "LIST_MALFORMED"
    LIST_UNKNOWN_ANCHOR = "LIST_UNKNOWN_ANCHOR"
    LIST_BAD_SIGNATURE = "LIST_BAD_SIGNATURE"
    LIST_WRONG_KIND = "LIST_WRONG_KIND"
    LIST_EXPIRED = "LIST_EXPIRED"
    LIST_ROLLBACK = "LIST_ROLLBACK"
    # Identifiers at the boundary.
    BAD_LENGTH = "BAD_LENGTH"
    BAD_CHARACTERS = "BAD_CHARACTERS"
    BAD_REGION = "BAD_REGION"
    BAD_BIRTH_DATE = "BAD_BIRTH_DATE"
    BAD_CHECK_DIGIT = "BAD_CHECK_DIGIT"
    # Keys.
    KEYRING = "KEYRING"
    ROTATION_PENDING = "ROTATION_PENDING"
    # Store.
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    NOT_REPLICATED = "NOT_REPLICATED"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    UNKNOWN_SUBJECT = "UNKNOWN_SUBJECT"
    RECORD_TAMPERED = "RECORD_TAMPERED"
    # Requests at the HTTP boundary.
    BAD_JSON = "BAD_JSON"
    INVALID_FIELD = "INVALID_FIELD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    MISSING_FIELD = "MISSING_FIELD"
    UNKNOWN_CITY = "UNKNOWN_CITY"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    MOVED = "MOVED"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    CLIENT_CLOSED = "CLIENT_CLOSED"
    INTERNAL = "INTERNAL"
    # Bulk conversion (赋码/转码 from the topic library): why a row was refused.
    UNKNOWN_RECORD_TYPE = "UNKNOWN_RECORD_TYPE"
    BAD_EVENT_TIME = "BAD_EVENT_TIME"
    BAD_SOURCE = "BAD_SOURCE"
    BAD_ROW = "BAD_ROW"
    BATCH_ROLLED_BACK = "BATCH_ROLLED_BACK"
    BATCH_RUNNING = "BATCH_RUNNING"
    UNKNOWN_BATCH = "UNKNOWN_BATCH"
    UNKNOWN_APPEAL = "UNKNOWN_APPEAL"
    # Card-code fusion.
    ALIAS_TAKEN = "ALIAS_TAKEN"
    UNKNOWN_ALIAS = "UNKNOWN_ALIAS"
    UNKNOWN_ALIAS_TYPE = "UNKNOWN_ALIAS_TYPE"
    APPEAL_DECIDED = "APPEAL_DECIDED"
    OVERLOADED = "OVERLOADED"
    # Per-city endpoints.
    NOT_WRITER = "NOT_WRITER"
    # Scans a terminal checked offline and sends later: why one was not logged.
    DUPLICATE = "DUPLICATE"
    SCAN_TOO_OLD = "SCAN_TOO_OLD"
    SCAN_IN_FUTURE = "SCAN_IN_FUTURE"


class CodeEngineError(Exception):
    """Root of every error the engine raises on purpose."""

    reason: Reason = Reason.MALFORMED

    def __init__(self, detail: str = "", *, reason: Reason | None = None) -> None:
        super().__init__(detail or self.__class__.__doc__ or "")
        if reason is not None:
            self.reason = reason

    @property
    def detail(self) -> str:
        """A human-readable explanation that never contains personal data."""
        return str(self)


class InvalidIdentifier(CodeEngineError, ValueError):
    """The resident ID or unified social credit code is not valid."""


class VerificationError(CodeEngineError):
    """A code was refused; ``reason`` says why."""


class MalformedCode(VerificationError, ValueError):
    """The text is not a well-formed code of a version this engine knows."""

    reason = Reason.MALFORMED


class UnsupportedAlgorithm(VerificationError):
    """The code is signed with an algorithm this verifier does not accept."""

    reason = Reason.UNSUPPORTED_ALG


class UnknownKeyId(VerificationError):
    """The code names a key that is not in the trust list, or not valid at that time."""

    reason = Reason.UNKNOWN_KID


class BadSignature(VerificationError):
    """The signature does not match the code's contents."""

    reason = Reason.BAD_SIGNATURE


class Expired(VerificationError):
    """The code's expiry is in the past, beyond the allowed clock skew."""

    reason = Reason.EXPIRED


class NotYetValid(VerificationError):
    """The code was issued in the future, beyond the allowed clock skew."""

    reason = Reason.NOT_YET_VALID


class CryptoUnavailable(CodeEngineError, RuntimeError):
    """The linked cryptography library lacks an algorithm the configured profile needs."""

    reason = Reason.INTERNAL


class KeyringError(CodeEngineError, ValueError):
    """A key or trust list could not be loaded, created or rotated."""

    reason = Reason.KEYRING


class ProfileMismatch(KeyringError):
    """The store was seeded in another cryptographic profile than the setting names.

    Never served past: a pseudonym computed under the other profile's MAC finds no subject.
    """


class StoreUnavailable(CodeEngineError, ConnectionError):
    """The store did not answer within its deadline; the operation may be retried."""

    reason = Reason.STORE_UNAVAILABLE


class WriteNotReplicated(StoreUnavailable):
    """The write reached the primary but no replica confirmed it, so it is not acknowledged.

    Resending the same write is safe: status writes are idempotent by operation id.
    """

    reason = Reason.NOT_REPLICATED


class VersionConflict(CodeEngineError):
    """A compare-and-set named a version that is no longer current."""

    reason = Reason.VERSION_CONFLICT

    def __init__(self, current_version: int, detail: str = "") -> None:
        super().__init__(detail or f"current version is {current_version}")
        self.current_version = current_version


class UnknownSubject(CodeEngineError, LookupError):
    """No subject with that pseudonym has been generated."""

    reason = Reason.UNKNOWN_SUBJECT


class BadRequest(CodeEngineError, ValueError):
    """The request is malformed: bad JSON, a missing, unknown or invalid field."""

    reason = Reason.INVALID_FIELD


class ClientClosed(CodeEngineError, ConnectionError):
    """The client went away before its request body had all arrived: nobody is left to
    answer, and nothing on the server failed."""

    reason = Reason.CLIENT_CLOSED


class NotWriter(StoreUnavailable):
    """This endpoint does not hold its city's write lease: send the write to ``writer``.

    A 503, like every store outage: the write changed nothing and may be resent, here later or
    at once to the endpoint that holds the lease.
    """

    reason = Reason.NOT_WRITER

    def __init__(self, detail: str = "", *, writer: str = "") -> None:
        super().__init__(detail or "this endpoint does not hold the city's write lease")
        self.writer = writer


class Moved(CodeEngineError):
    """The operation moved to another service: ``to`` names the operation to ask there."""

    reason = Reason.MOVED

    def __init__(self, detail: str = "", *, to: str) -> None:
        super().__init__(detail or f"moved: ask {to}")
        self.to = to


class NotAuthenticated(CodeEngineError):
    """No valid API key was presented."""

    reason = Reason.UNAUTHORIZED


class AccessDenied(CodeEngineError):
    """The API key is valid but its client lacks the scope this operation needs."""

    reason = Reason.FORBIDDEN


class RateLimited(CodeEngineError):
    """The client sent more requests than its rate allows; retry after ``retry_after_s``."""

    reason = Reason.RATE_LIMITED

    def __init__(self, retry_after_s: int, detail: str = "") -> None:
        super().__init__(detail or f"rate limit exceeded; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RotationPending(KeyringError):
    """A staged rotation has not taken effect yet; rotate again after it has."""

    reason = Reason.ROTATION_PENDING


class Revoked(VerificationError):
    """The code, or the key that signed it, has been revoked."""

    reason = Reason.REVOKED


class WrongCity(VerificationError):
    """The code was issued for another city and this verifier accepts only its own."""

    reason = Reason.WRONG_CITY


class TrustListStale(VerificationError):
    """The cached trust list is older than its maximum age; fetch it again."""

    reason = Reason.TRUST_LIST_STALE


class ListRefused(CodeEngineError, ValueError):
    """A signed trust or revocation list was refused; ``reason`` says why (``LIST_*``).

    Whatever the reason, a terminal keeps the list it holds and fetches again later.
    """

    reason = Reason.LIST_MALFORMED


class BatchConflict(CodeEngineError):
    """A batch id that cannot be used now: rolled back, or being imported by another run."""

    reason = Reason.BATCH_RUNNING


class UnknownBatch(CodeEngineError, LookupError):
    """No batch with that id has been imported."""

    reason = Reason.UNKNOWN_BATCH


class UnknownAppeal(CodeEngineError, LookupError):
    """No appeal with that id."""

    reason = Reason.UNKNOWN_APPEAL


class AppealDecided(CodeEngineError):
    """The appeal has been decided already: a decision is final."""

    reason = Reason.APPEAL_DECIDED


class AliasTaken(CodeEngineError):
    """The alias is bound to another subject (which one is never said)."""

    reason = Reason.ALIAS_TAKEN


class RecordTampered(CodeEngineError):
    """A stored record, display token or audit entry does not carry the seal its writer gave it.

    Something other than the engine wrote it (or it was sealed with a key this process does not
    hold): its content cannot be trusted, so verify answers grey and writes refuse to build on it.
    """

    reason = Reason.RECORD_TAMPERED
