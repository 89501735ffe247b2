"""The OpenAPI 3.1 document of a service, made from its route declarations when it is built.

Nothing of it is written by hand apart from what the declarations say: paths, operations,
security, parameters, bodies and answers come from each :class:`~codeengine.web.routes.Route`;
request body schemas from the field tables that validate them; the schemas that depend on
settings (the alias types of the fusion file the app loaded, the batch limit) from the app
factory. The app serves the document it was built with at ``/openapi.json``.
"""

from __future__ import annotations

__all__ = ["OPENAPI", "OPENAPI_ROUTES", "PROBLEM_SCHEMA", "openapi_document"]

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web

from codeengine import __version__
from codeengine.code.errors import Reason
from codeengine.web.routes import JSON, PUBLIC, Route

OPENAPI = web.AppKey("openapi", dict[str, Any])
"""The app's OpenAPI document, made by its factory from its routes and settings."""

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reason", "detail"],
    "properties": {
        "reason": {"type": "string", "enum": sorted(r.value for r in Reason)},
        "detail": {"type": "string"},
        "current_version": {"type": "integer"},
        "request_id": {
            "type": "string",
            "description": "With INTERNAL: the id of the log line that describes the failure.",
        },
    },
}

_PROBLEM_TEXT = {
    400: "Malformed request (BAD_JSON, INVALID_FIELD, UNKNOWN_FIELD, MISSING_FIELD, ...; "
    "MALFORMED_REQUEST: not valid HTTP/1.1)",
    401: "No valid API key (UNAUTHORIZED)",
    403: "The key lacks the scope (FORBIDDEN)",
    404: "Unknown subject, batch or appeal (UNKNOWN_SUBJECT, UNKNOWN_BATCH, UNKNOWN_APPEAL) or "
    "path (NOT_FOUND)",
    409: "Conflict: stale version (VERSION_CONFLICT), a pending rotation (ROTATION_PENDING), a "
    "batch running or rolled back (BATCH_RUNNING), an appeal decided (APPEAL_DECIDED)",
    410: "Moved to another service (MOVED, with `moved_to`: the operation to ask there)",
    413: "Body larger than the limit (BODY_TOO_LARGE)",
    415: "Body is not of the documented media type (UNSUPPORTED_MEDIA_TYPE)",
    422: "Invalid identifier (BAD_LENGTH, BAD_CHARACTERS, BAD_REGION, BAD_BIRTH_DATE, "
    "BAD_CHECK_DIGIT) or code",
    429: "Rate limit exceeded (RATE_LIMITED); see Retry-After",
    503: "Store or keys unavailable (STORE_UNAVAILABLE, NOT_REPLICATED, KEYRING; see "
    "Retry-After), or this endpoint of a city does not hold its write lease (NOT_WRITER, with "
    "`writer`: send the write to that endpoint now)",
}
# Whoever checks a key may refuse it, refuse the scope or the rate.
_SECURED_PROBLEMS = (401, 403, 429)
_PROBLEM = {JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _operation(route: Route) -> dict[str, Any]:
    """The operation object of one route."""
    operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
    description = route.description
    problems = set(route.problems)
    if route.scope is not PUBLIC:
        description = f"{description} Needs scope `{route.scope}`.".strip()
        operation["security"] = [{"bearer": []}]
        problems.update(_SECURED_PROBLEMS)
    if description:
        operation["description"] = description
    if route.deprecated:
        operation["deprecated"] = True
    if route.parameters:
        operation["parameters"] = [dict(param) for param in route.parameters]
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body.required,
            "content": {kind: dict(media) for kind, media in route.body.content.items()},
        }
    responses: dict[str, Any] = {
        status: {"description": text, "content": {k: dict(v) for k, v in content.items()}}
        for status, (text, content) in route.answers.items()
    }
    for status in sorted(problems):
        responses[str(status)] = {"description": _PROBLEM_TEXT[status], "content": _PROBLEM}
    operation["responses"] = responses
    return operation


def _refs(node: Any) -> Iterator[str]:
    """The component names a schema (or any part of the document) refers to."""
    if isinstance(node, Mapping):
        target = node.get("$ref")
        if isinstance(target, str):
            yield target.rpartition("/")[2]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _refs(value)


def openapi_document(
    title: str, description: str, routes: Iterable[Route], components: Mapping[str, Any]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``, with ``components`` (the schemas they refer to).

    ValueError when two routes share a method and path or an operationId, when two bodies
    define one component differently, or when a reference names no component: the app factory
    fails, rather than publish a document that lies.
    """
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA, **components}
    paths: dict[str, dict[str, Any]] = {}
    names: set[str] = set()
    for route in routes:
        operations = paths.setdefault(route.path, {})
        method = route.method.lower()
        if method in operations or route.name in names:
            raise ValueError(
                f"route {route.name!r} ({route.method} {route.path}) is declared twice"
            )
        names.add(route.name)
        operations[method] = _operation(route)
        for name, schema in (route.body.components if route.body else {}).items():
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"component schema {name!r} is declared twice, differently")
    # Round trip through JSON: the document is what a client reads, tuples and all.
    document: dict[str, Any] = json.loads(
        json.dumps(
            {
                "openapi": "3.1.0",
                "info": {"title": title, "version": __version__, "description": description},
                "paths": paths,
                "components": {
                    "schemas": schemas,
                    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                },
            }
        )
    )
    missing = set(_refs(document)) - set(schemas)
    if missing:
        raise ValueError(f"the document refers to undeclared schemas {sorted(missing)}")
    return document


async def openapi(request: web.Request) -> web.Response:
    """This service's OpenAPI document, as its app was built."""
    return web.json_response(request.app[OPENAPI])


OPENAPI_ROUTES = [
    Route(
        "GET",
        "/openapi.json",
        openapi,
        "openapi",
        scope=PUBLIC,
        summary="This document",
        answers={"200": ("OpenAPI 3.1", {JSON: {"schema": {}}})},
    )
]
