"""One exception class per reason code the services answer, and the problems they are built from.

The reason codes are read from the code itself: the ``Reason`` vocabulary, the problem schema
of the OpenAPI documents the services publish, and every reason literal that the web layer and
the services write into a body by hand (the overload refusal is one). A code added to any of
them without its class fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codeengine.code.errors import Reason
from codeengine.code.fencing import Role
from failover import errors
from failover.errors import (
    PROBLEM_CLASSES,
    AccessRefused,
    CodeRefused,
    Conflict,
    GatewayFailure,
    InvalidIdentifier,
    ListRefused,
    NotWriter,
    Overloaded,
    RefusedRequest,
    ServiceProblem,
    TryLater,
    UnknownEntity,
    VersionConflict,
    problem_from,
)

ROOT = Path(__file__).resolve().parents[2]
GROUPS = (
    ServiceProblem,
    GatewayFailure,
    RefusedRequest,
    InvalidIdentifier,
    AccessRefused,
    UnknownEntity,
    Conflict,
    TryLater,
    CodeRefused,
    ListRefused,
)
_LITERAL = re.compile(r"""["']reason["']\s*:\s*["']([A-Z][A-Z_]+)["']""")


def answered_reasons() -> set[str]:
    """Every reason code a service can put in an answer, found in the code and its documents."""
    reasons = {reason.value for reason in Reason}
    for document in sorted((ROOT / "docs" / "openapi").glob("*.json")):
        schemas = json.loads(document.read_text())["components"]["schemas"]
        reasons |= set(schemas["Problem"]["properties"]["reason"]["enum"])
    for package in ("codeengine/web", "issuer", "verifier"):
        for source in sorted((ROOT / package).rglob("*.py")):
            reasons |= set(_LITERAL.findall(source.read_text(encoding="utf-8")))
    return reasons - {Reason.VALID.value}


def test_the_reason_codes_are_found_where_the_services_write_them() -> None:
    found = answered_reasons()
    # The refusal for load is written as bytes by the admission layer, not through Reason.
    assert {"OVERLOADED", "MALFORMED_REQUEST", "VERSION_CONFLICT", "EXPIRED"} <= found
    assert len(found) >= 50


@pytest.mark.parametrize("reason", sorted(answered_reasons()))
def test_every_reason_code_has_its_own_exception_class(reason: str) -> None:
    cls = PROBLEM_CLASSES.get(reason)
    assert cls is not None, f"failover.errors has no class for {reason}"
    assert issubclass(cls, ServiceProblem) and cls not in GROUPS
    assert cls.REASON == reason and cls.__name__ in errors.__all__
    problem = problem_from(400, {"reason": reason, "detail": "d"}, {})
    assert type(problem) is cls and problem.reason == reason


def test_no_two_reasons_share_a_class_and_no_group_stands_for_a_reason() -> None:
    classes = list(PROBLEM_CLASSES.values())
    assert len(set(classes)) == len(classes)
    assert {cls.REASON for cls in classes} == set(PROBLEM_CLASSES)
    assert all(group.REASON is None for group in GROUPS)


def test_a_second_class_for_a_reason_is_refused_when_it_is_defined() -> None:
    with pytest.raises(TypeError, match="VERSION_CONFLICT already has VersionConflict"):
        type("Again", (Conflict,), {"REASON": Reason.VERSION_CONFLICT})


def test_a_problem_carries_status_reason_detail_request_id_retry_after_and_extras() -> None:
    body = {"reason": "VERSION_CONFLICT", "detail": "current version is 3", "current_version": 3}
    problem = problem_from(409, body, {"x-request-id": "r-42"}, Role.BACKUP)
    assert isinstance(problem, VersionConflict) and isinstance(problem, Conflict)
    assert (problem.status, problem.detail, problem.request_id) == (
        409,
        "current version is 3",
        "r-42",
    )
    assert (problem.current_version, problem.endpoint, problem.retry_after_s) == (
        3,
        Role.BACKUP,
        None,
    )
    assert str(problem) == "409 VERSION_CONFLICT: current version is 3 (request id r-42)"


def test_the_retry_after_and_the_writer_are_read_from_the_answer() -> None:
    busy = problem_from(503, {"reason": "OVERLOADED", "detail": "busy"}, {"Retry-After": "1"})
    assert isinstance(busy, Overloaded) and isinstance(busy, TryLater)
    assert busy.retry_after_s == 1.0
    moved = problem_from(
        503, {"reason": "NOT_WRITER", "detail": "x", "writer": "backup"}, {"Retry-After": "0"}
    )
    assert isinstance(moved, NotWriter) and (moved.writer, moved.retry_after_s) == ("backup", 0.0)


def test_a_500_names_the_request_id_of_its_body_when_no_header_does() -> None:
    body = {"reason": "INTERNAL", "detail": "internal error", "request_id": "abc123"}
    problem = problem_from(500, body, {})
    assert type(problem) is errors.InternalError and problem.request_id == "abc123"
    assert "request_id" not in problem.extra
    header_wins = problem_from(500, body, {"X-Request-Id": "from-header"})
    assert header_wins.request_id == "from-header"


def test_an_error_page_without_a_problem_body_is_a_gateway_failure() -> None:
    problem = problem_from(502, None, {})
    assert type(problem) is GatewayFailure and (problem.status, problem.reason) == (502, "")
    assert str(problem) == "502"


def test_without_an_id_of_the_answer_the_problem_carries_the_id_the_request_sent() -> None:
    proxied = problem_from(504, None, {}, sent_request_id="app-1")
    assert proxied.request_id == "app-1" and str(proxied) == "504 (request id app-1)"
    answered = problem_from(
        404, {"reason": "NOT_FOUND", "detail": "x"}, {"X-Request-Id": "svc-2"}, None, "app-1"
    )
    assert answered.request_id == "svc-2", "the service's own word wins"


def test_a_reason_this_client_does_not_know_is_the_base_class_with_that_reason() -> None:
    problem = problem_from(418, {"reason": "A_NEWER_REASON", "detail": "x"}, {})
    assert type(problem) is ServiceProblem and problem.reason == "A_NEWER_REASON"


def test_the_groups_mix_in_the_builtin_a_caller_would_catch() -> None:
    assert issubclass(errors.BadCheckDigit, ValueError)
    assert issubclass(errors.UnknownSubject, LookupError)
    assert issubclass(errors.Forbidden, PermissionError)
    assert issubclass(errors.Unreachable, ConnectionError)
    assert issubclass(errors.Unreachable, errors.FailoverError)
