"""Pieces both services' OpenAPI 3.1 documents share: problems, health paths, the handler."""

from __future__ import annotations

__all__ = [
    "HEALTH_PATHS",
    "JSON",
    "PROBLEM_SCHEMA",
    "page_paths",
    "ref",
    "responses",
    "spec_document",
    "spec_handler",
]

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from codeengine import __version__
from codeengine.code.errors import Reason
from codeengine.web.pages import STATIC_NAME_PATTERN

JSON = "application/json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reason", "detail"],
    "properties": {
        "reason": {"type": "string", "enum": sorted(r.value for r in Reason)},
        "detail": {"type": "string"},
        "current_version": {"type": "integer"},
    },
}

_PROBLEM_TEXT = {
    400: "Malformed request (BAD_JSON, INVALID_FIELD, UNKNOWN_FIELD, MISSING_FIELD, ...)",
    401: "No valid API key (UNAUTHORIZED)",
    403: "The key lacks the scope (FORBIDDEN)",
    404: "Unknown subject, batch or appeal (UNKNOWN_SUBJECT, UNKNOWN_BATCH, UNKNOWN_APPEAL) or "
    "path (NOT_FOUND)",
    409: "Conflict: stale version (VERSION_CONFLICT), a pending rotation (ROTATION_PENDING), a "
    "batch running or rolled back (BATCH_RUNNING), an appeal decided (APPEAL_DECIDED)",
    413: "Body larger than the limit (BODY_TOO_LARGE)",
    415: "Body is not of the documented media type (UNSUPPORTED_MEDIA_TYPE)",
    422: "Invalid identifier (BAD_LENGTH, BAD_CHARACTERS, BAD_REGION, BAD_BIRTH_DATE, "
    "BAD_CHECK_DIGIT) or code",
    429: "Rate limit exceeded (RATE_LIMITED); see Retry-After",
    503: "Store or keys unavailable (STORE_UNAVAILABLE, NOT_REPLICATED, KEYRING; see "
    "Retry-After), or this endpoint of a city does not hold its write lease (NOT_WRITER, with "
    "`writer`: send the write to that endpoint now)",
}


def ref(name: str) -> dict[str, Any]:
    """A JSON response/request content referring to a component schema."""
    return {JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def responses(success: Mapping[str, tuple[str, dict[str, Any]]], *problems: int) -> dict[str, Any]:
    """A responses object: the success answers plus problem answers for ``problems``."""
    out: dict[str, Any] = {
        code: {"description": text, "content": content} for code, (text, content) in success.items()
    }
    for status in problems:
        out[str(status)] = {"description": _PROBLEM_TEXT[status], "content": ref("Problem")}
    return out


HEALTH_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "The process is up",
            "responses": {
                "200": {
                    "description": "Up",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"status": {"const": "ok"}},
                                "required": ["status"],
                            }
                        }
                    },
                }
            },
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "The cluster answers and the keys are loaded",
            "responses": {
                code: {
                    "description": text,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["status"],
                                "properties": {
                                    "status": {"type": "string"},
                                    "failed": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            }
                        }
                    },
                }
                for code, text in (("200", "Ready"), ("503", "Not ready; `failed` says why"))
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of every worker of this service",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {}}}}},
        }
    },
}


def page_paths(pages: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Paths of HTML pages (``path: (operationId, summary)``) and of their static assets."""
    html = {"text/html": {"schema": {"type": "string"}}}
    paths: dict[str, Any] = {
        path: {
            "get": {
                "operationId": operation,
                "summary": summary,
                "description": "Public HTML; the page's script calls the API with the key the "
                "host hands it (never in the URL). Served with a Content-Security-Policy that "
                "allows only this origin.",
                "responses": {"200": {"description": "The page", "content": html}},
            }
        }
        for path, (operation, summary) in pages.items()
    }
    paths["/static/{file}"] = {
        "get": {
            "operationId": "static",
            "summary": "A page's stylesheet or script",
            "parameters": [
                {
                    "name": "file",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": STATIC_NAME_PATTERN},
                }
            ],
            "responses": {
                "200": {
                    "description": "The asset",
                    "content": {
                        "text/css": {"schema": {"type": "string"}},
                        "text/javascript": {"schema": {"type": "string"}},
                    },
                },
                **responses({}, 400, 404),
            },
        }
    }
    return paths


def spec_document(
    title: str, description: str, paths: dict[str, Any], schemas: dict[str, Any]
) -> dict[str, Any]:
    """A complete OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def spec_handler(spec: dict[str, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that serves ``spec`` as JSON."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(spec)

    return handler
