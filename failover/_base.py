"""The failover client's error tree: its root, the problem base class and the groups.

:mod:`failover.errors` adds one class per reason code to these and is the module to import;
this one holds what those classes are built on, and the registry that maps each reason code to
its class as the classes are defined.
"""

from __future__ import annotations

__all__ = [
    "BY_REASON",
    "REQUEST_ID_HEADER",
    "AccessRefused",
    "CodeRefused",
    "Conflict",
    "FailoverError",
    "GatewayFailure",
    "InvalidIdentifier",
    "ListRefused",
    "RefusedRequest",
    "ServiceProblem",
    "TryLater",
    "UnexpectedAnswer",
    "UnknownEntity",
    "Unreachable",
]

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from codeengine.code.fencing import Role

REQUEST_ID_HEADER = "X-Request-Id"
BY_REASON: dict[str, type[ServiceProblem]] = {}
"""Each reason code's class, filled as the classes are defined."""


class FailoverError(Exception):
    """Root of every error the failover client raises on purpose."""


class Unreachable(FailoverError, ConnectionError):
    """No endpoint of the city answered within the request's budget (refused, no answer, or a
    timeout); the last transport error is the ``__cause__``. ``request_id`` is the
    ``X-Request-Id`` the attempts carried: an attempt that reached a service left log lines
    under it."""

    def __init__(self, detail: str, request_id: str | None = None) -> None:
        super().__init__(detail + (f" (request id {request_id})" if request_id else ""))
        self.request_id = request_id


class UnexpectedAnswer(FailoverError, ValueError):
    """A success whose body is not what the API documents (a proxy's page, a changed API)."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{status} answer: {what}")
        self.status = status


class ServiceProblem(FailoverError):
    """A service refused: a problem answer (status 400 and up) or a refused verdict.

    The class says the reason; an instance of this class itself carries a reason code this
    client does not know.
    """

    REASON: ClassVar[str | None] = None
    """The reason code this class stands for (None: the base classes)."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str = "",
        *,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        endpoint: Role | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        text = f"{status} {reason}".rstrip()
        if detail:
            text += f": {detail}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.endpoint = endpoint
        self.extra: Mapping[str, Any] = MappingProxyType(dict(extra or {}))
        """The problem body's other fields (``current_version``, ``writer``, ``colour``...)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        reason = cls.__dict__.get("REASON")
        if reason is None:
            return
        if reason in BY_REASON:
            raise TypeError(f"{cls.__name__}: {reason} already has {BY_REASON[reason].__name__}")
        BY_REASON[reason] = cls


class GatewayFailure(ServiceProblem):
    """An error status without the engine's problem body: a proxy or load balancer answered
    (``reason`` is "")."""


# The groups: what a caller can do about it.


class RefusedRequest(ServiceProblem, ValueError):
    """The request is wrong (a field, the body, the path): resending it changes nothing."""


class InvalidIdentifier(RefusedRequest):
    """The resident ID or unified social credit code is not valid (never echoed)."""


class AccessRefused(ServiceProblem, PermissionError):
    """The API key is missing or unknown, or its client lacks the operation's scope."""


class UnknownEntity(ServiceProblem, LookupError):
    """What the request names does not exist."""


class Conflict(ServiceProblem):
    """The request met the state of the store; read it again before deciding."""


class TryLater(ServiceProblem):
    """Nothing certain was done; ask again after ``retry_after_s`` (the client has already
    retried within its budget where a resend was safe)."""


class CodeRefused(ServiceProblem):
    """A scanned code was refused (raised by :meth:`failover.results.Verdict.check`)."""


class ListRefused(ServiceProblem, ValueError):
    """A signed trust or revocation list was refused (the ``LIST_*`` reasons of the terminal
    SDK, which checks the lists a terminal caches); keep the list held and fetch again."""
