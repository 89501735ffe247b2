"""What the failover client raises: one class per reason code the services answer.

Every refusal of the engine carries a stable reason code (``codeengine.code.errors.Reason``),
in a problem body (``{"reason": ..., "detail": ...}``) or in a verdict. The typed methods of
:mod:`failover.services` raise the class of that code, so an app backend catches what it can act
on, by name or by group:

* :class:`RefusedRequest` (a ``ValueError``): the request is wrong; resending it changes nothing.
  :class:`InvalidIdentifier` groups the five identifier reasons.
* :class:`AccessRefused` (a ``PermissionError``): the API key is missing, unknown or lacks the
  scope.
* :class:`UnknownEntity` (a ``LookupError``): the subject, batch, appeal, alias or path is
  unknown, or the operation moved to another service (``Moved``).
* :class:`Conflict`: the request met the state of the store (a stale version, a decided
  appeal, a record whose seal fails...).
* :class:`TryLater`: nothing certain was done; ask again after ``retry_after_s``. The client
  has already waited out, within its budget, the refusals it may resend (load, rate, and the
  store's for idempotent calls) before it raises one of these.
* :class:`CodeRefused`: a scanned code was refused (from :meth:`Verdict.check`).
* :class:`ListRefused`: a signed trust or revocation list was refused (the terminal SDK's).

Every one carries ``status``, ``reason``, ``detail`` (for people: never personal data, the
services see to that), ``request_id`` (the ``X-Request-Id`` header, or the body's
``request_id`` of a 500), ``retry_after_s`` (the ``Retry-After`` header, in seconds) and the
``endpoint`` that answered. A reason code this client does not know (a newer service) raises
:class:`ServiceProblem` itself; an error status without a problem body (a proxy's page)
raises :class:`GatewayFailure`.
"""

from __future__ import annotations

__all__ = [
    "PROBLEM_CLASSES",
    "REQUEST_ID_HEADER",
    "AccessRefused",
    "AliasTaken",
    "AppealDecided",
    "BadBirthDate",
    "BadCharacters",
    "BadCheckDigit",
    "BadEventTime",
    "BadJSON",
    "BadLength",
    "BadRegion",
    "BadRow",
    "BadSignature",
    "BadSource",
    "BatchRolledBack",
    "BatchRunning",
    "BodyTooLarge",
    "ClientClosed",
    "CodeRefused",
    "Conflict",
    "DuplicateScan",
    "Expired",
    "FailoverError",
    "Forbidden",
    "GatewayFailure",
    "InternalError",
    "InvalidField",
    "InvalidIdentifier",
    "KeyringUnavailable",
    "ListBadSignature",
    "ListExpired",
    "ListMalformed",
    "ListRefused",
    "ListRollback",
    "ListUnknownAnchor",
    "ListUnsigned",
    "ListWrongKind",
    "MalformedCode",
    "MalformedRequest",
    "MethodNotAllowed",
    "MissingField",
    "Moved",
    "NotFound",
    "NotReplicated",
    "NotWriter",
    "NotYetValid",
    "Overloaded",
    "RateLimited",
    "RecordTampered",
    "RefusedRequest",
    "Revoked",
    "RotationPending",
    "ScanInFuture",
    "ScanTooOld",
    "ServiceProblem",
    "StoreUnavailable",
    "TrustListStale",
    "TryLater",
    "Unauthorized",
    "UnexpectedAnswer",
    "UnknownAlias",
    "UnknownAliasType",
    "UnknownAppeal",
    "UnknownBatch",
    "UnknownCity",
    "UnknownEntity",
    "UnknownField",
    "UnknownKeyId",
    "UnknownRecordType",
    "UnknownSubject",
    "Unreachable",
    "UnsupportedAlgorithm",
    "UnsupportedMediaType",
    "VersionConflict",
    "WrongCity",
    "problem_from",
]

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from codeengine.code.errors import Reason
from codeengine.code.fencing import Role
from failover._base import (
    BY_REASON,
    REQUEST_ID_HEADER,
    AccessRefused,
    CodeRefused,
    Conflict,
    FailoverError,
    GatewayFailure,
    InvalidIdentifier,
    ListRefused,
    RefusedRequest,
    ServiceProblem,
    TryLater,
    UnexpectedAnswer,
    UnknownEntity,
    Unreachable,
)
from failover.retry import header, retry_after_s

# One class per reason code, by group.


class BadJSON(RefusedRequest):
    """The body is not valid JSON (or msgpack)."""

    REASON = Reason.BAD_JSON


class InvalidField(RefusedRequest):
    """A field has the wrong type or value."""

    REASON = Reason.INVALID_FIELD


class UnknownField(RefusedRequest):
    """The body has a field the operation does not take."""

    REASON = Reason.UNKNOWN_FIELD


class MissingField(RefusedRequest):
    """A required field (or query parameter) is missing."""

    REASON = Reason.MISSING_FIELD


class UnknownCity(RefusedRequest):
    """The city is not a city of the province."""

    REASON = Reason.UNKNOWN_CITY


class UnknownAliasType(RefusedRequest):
    """The alias type is not one of the service's fusion file."""

    REASON = Reason.UNKNOWN_ALIAS_TYPE


class BodyTooLarge(RefusedRequest):
    """The body is over the operation's limit."""

    REASON = Reason.BODY_TOO_LARGE


class UnsupportedMediaType(RefusedRequest):
    """The body is not of a media type the operation takes."""

    REASON = Reason.UNSUPPORTED_MEDIA_TYPE


class MalformedRequest(RefusedRequest):
    """The bytes sent are not valid HTTP/1.1."""

    REASON = Reason.MALFORMED_REQUEST


class MethodNotAllowed(RefusedRequest):
    """The path exists, not with this method."""

    REASON = Reason.METHOD_NOT_ALLOWED


class UnknownRecordType(RefusedRequest):
    """A batch row names a record type the rules do not know."""

    REASON = Reason.UNKNOWN_RECORD_TYPE


class BadEventTime(RefusedRequest):
    """A batch row's event time is not ISO 8601 with an offset or Unix seconds."""

    REASON = Reason.BAD_EVENT_TIME


class BadSource(RefusedRequest):
    """A batch row's source is empty or too long."""

    REASON = Reason.BAD_SOURCE


class BadRow(RefusedRequest):
    """A batch row cannot be read."""

    REASON = Reason.BAD_ROW


class BadLength(InvalidIdentifier):
    """The identifier has the wrong length."""

    REASON = Reason.BAD_LENGTH


class BadCharacters(InvalidIdentifier):
    """The identifier has characters it may not have."""

    REASON = Reason.BAD_CHARACTERS


class BadRegion(InvalidIdentifier):
    """The identifier's region code is not a region."""

    REASON = Reason.BAD_REGION


class BadBirthDate(InvalidIdentifier):
    """The resident ID's birth date is not a date, or in the future."""

    REASON = Reason.BAD_BIRTH_DATE


class BadCheckDigit(InvalidIdentifier):
    """The identifier's check digit does not match."""

    REASON = Reason.BAD_CHECK_DIGIT


class Unauthorized(AccessRefused):
    """No valid API key was presented (401)."""

    REASON = Reason.UNAUTHORIZED


class Forbidden(AccessRefused):
    """The API key's client lacks the scope the operation needs (403)."""

    REASON = Reason.FORBIDDEN


class UnknownSubject(UnknownEntity):
    """No subject with that pseudonym has been generated."""

    REASON = Reason.UNKNOWN_SUBJECT


class UnknownBatch(UnknownEntity):
    """No batch with that id has been imported."""

    REASON = Reason.UNKNOWN_BATCH


class UnknownAppeal(UnknownEntity):
    """No appeal with that id."""

    REASON = Reason.UNKNOWN_APPEAL


class UnknownAlias(UnknownEntity):
    """The alias credential is bound to nobody."""

    REASON = Reason.UNKNOWN_ALIAS


class Moved(UnknownEntity):
    """The operation moved to another service (410): ``moved_to`` names what to ask there."""

    REASON = Reason.MOVED

    @property
    def moved_to(self) -> str | None:
        """The operation the service named, e.g. ``GET /v1/records/counts``."""
        value = self.extra.get("moved_to")
        return value if isinstance(value, str) else None


class NotFound(UnknownEntity):
    """No route serves the path."""

    REASON = Reason.NOT_FOUND


class VersionConflict(Conflict):
    """``if_version`` is no longer current; :attr:`current_version` is."""

    REASON = Reason.VERSION_CONFLICT

    @property
    def current_version(self) -> int | None:
        """The subject's status version now, as the problem body says."""
        value = self.extra.get("current_version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class RotationPending(Conflict):
    """A staged key rotation has not taken effect yet."""

    REASON = Reason.ROTATION_PENDING


class BatchRolledBack(Conflict):
    """The batch id was rolled back and cannot be imported again."""

    REASON = Reason.BATCH_ROLLED_BACK


class BatchRunning(Conflict):
    """The batch id is being imported by another run."""

    REASON = Reason.BATCH_RUNNING


class AppealDecided(Conflict):
    """The appeal has been decided otherwise already: a decision is final."""

    REASON = Reason.APPEAL_DECIDED


class AliasTaken(Conflict):
    """The alias is bound to another subject (which one is never said)."""

    REASON = Reason.ALIAS_TAKEN


class RecordTampered(Conflict):
    """The subject's stored record fails its seal: what it shows is grey until ops restore it."""

    REASON = Reason.RECORD_TAMPERED


class RateLimited(TryLater):
    """The API client is over its rate."""

    REASON = Reason.RATE_LIMITED


class Overloaded(TryLater):
    """Every endpoint refused for load before doing any work."""

    REASON = Reason.OVERLOADED


class StoreUnavailable(TryLater):
    """The store did not answer in time; an idempotent request was retried within the budget."""

    REASON = Reason.STORE_UNAVAILABLE


class NotReplicated(TryLater):
    """The write reached the store but no replica confirmed it: resend it (same ``op_id``)."""

    REASON = Reason.NOT_REPLICATED


class NotWriter(TryLater):
    """Neither endpoint held the city's write lease within the budget (a takeover running)."""

    REASON = Reason.NOT_WRITER

    @property
    def writer(self) -> str | None:
        """The endpoint the service named as the lease holder, if it named one."""
        value = self.extra.get("writer")
        return value if isinstance(value, str) else None


class KeyringUnavailable(TryLater):
    """The endpoint has no usable signing key or trust list loaded (503 ``KEYRING``)."""

    REASON = Reason.KEYRING


class InternalError(ServiceProblem):
    """The service failed unexpectedly (500); ``request_id`` names its log line."""

    REASON = Reason.INTERNAL


class ClientClosed(ServiceProblem):
    """The service saw this client go away before its body had arrived (499)."""

    REASON = Reason.CLIENT_CLOSED


class MalformedCode(CodeRefused):
    """The scanned text is not a well-formed code."""

    REASON = Reason.MALFORMED


class UnsupportedAlgorithm(CodeRefused):
    """The code is signed with an algorithm the verifier does not accept."""

    REASON = Reason.UNSUPPORTED_ALG


class UnknownKeyId(CodeRefused):
    """The code names a key that is not in the trust list, or not valid then."""

    REASON = Reason.UNKNOWN_KID


class BadSignature(CodeRefused):
    """The signature does not match the code."""

    REASON = Reason.BAD_SIGNATURE


class Expired(CodeRefused):
    """The code has expired."""

    REASON = Reason.EXPIRED


class NotYetValid(CodeRefused):
    """The code was issued in the future, beyond the clock-skew allowance."""

    REASON = Reason.NOT_YET_VALID


class Revoked(CodeRefused):
    """The code, or the key that signed it, has been revoked."""

    REASON = Reason.REVOKED


class WrongCity(CodeRefused):
    """The code is of another city and this verifier takes its own only."""

    REASON = Reason.WRONG_CITY


class TrustListStale(CodeRefused):
    """The trust list is older than its maximum age."""

    REASON = Reason.TRUST_LIST_STALE


# An offline scan's refusals, per scan of POST /v1/scans/offline (never a problem body).


class DuplicateScan(CodeRefused):
    """The offline scan's id was logged before: this send logged nothing again."""

    REASON = Reason.DUPLICATE


class ScanTooOld(CodeRefused):
    """The offline scan's time is older than the verifier believes (``offline_scan_max_age_s``)."""

    REASON = Reason.SCAN_TOO_OLD


class ScanInFuture(CodeRefused):
    """The offline scan's time is ahead of the verifier's clock beyond ``offline_scan_future_s``."""

    REASON = Reason.SCAN_IN_FUTURE


# The signed lists' reasons are spelled out: they are checked where the lists are read (the
# terminal SDK), and a service never answers them in a problem.


class ListUnsigned(ListRefused):
    """The list carries no signature."""

    REASON = "LIST_UNSIGNED"


class ListMalformed(ListRefused):
    """The signed list cannot be read."""

    REASON = "LIST_MALFORMED"


class ListUnknownAnchor(ListRefused):
    """The list is signed by a key that is not one of the terminal's trust anchors."""

    REASON = "LIST_UNKNOWN_ANCHOR"


class ListBadSignature(ListRefused):
    """The list's signature does not match its content."""

    REASON = "LIST_BAD_SIGNATURE"


class ListWrongKind(ListRefused):
    """A trust list where a revocation list was expected, or the other way round."""

    REASON = "LIST_WRONG_KIND"


class ListExpired(ListRefused):
    """The signed list is past its expiry."""

    REASON = "LIST_EXPIRED"


class ListRollback(ListRefused):
    """The list is older than one the terminal already holds."""

    REASON = "LIST_ROLLBACK"


PROBLEM_CLASSES: Mapping[str, type[ServiceProblem]] = MappingProxyType(BY_REASON)
"""The class of each reason code, by the code."""


def problem_from(
    status: int,
    document: object,
    headers: Mapping[str, str],
    endpoint: Role | None = None,
    sent_request_id: str | None = None,
) -> ServiceProblem:
    """The exception for an error answer: ``document`` is its parsed body (None if not JSON).

    Its ``request_id`` is the answer's ``X-Request-Id``, else the body's ``request_id``, else
    ``sent_request_id``, the id the request carried (an answer from something other than the
    engine has none of its own)."""
    body: Mapping[str, Any] = document if isinstance(document, dict) else {}
    reason = body.get("reason")
    request_id = header(headers, REQUEST_ID_HEADER) or body.get("request_id") or sent_request_id
    wait_s = retry_after_s(headers)
    if not isinstance(reason, str) or not reason:
        return GatewayFailure(
            status, "", request_id=_text(request_id), retry_after_s=wait_s, endpoint=endpoint
        )
    cls = BY_REASON.get(reason, ServiceProblem)
    detail = body.get("detail")
    extra = {k: v for k, v in body.items() if k not in ("reason", "detail", "request_id")}
    return cls(
        status,
        reason,
        detail if isinstance(detail, str) else "",
        request_id=_text(request_id),
        retry_after_s=wait_s,
        endpoint=endpoint,
        extra=extra,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
