"""The issuer's OpenAPI 3.1 description, served at ``/openapi.json`` and kept true by tests."""

from __future__ import annotations

__all__ = ["OPENAPI_ROUTES", "SPEC"]

from typing import Any

from aiohttp import web

from codeengine.code.model import CITIES
from codeengine.web.openapi import (
    HEALTH_PATHS,
    JSON,
    PROBLEM_SCHEMA,
    page_paths,
    ref,
    responses,
    spec_document,
    spec_handler,
)
from issuer.openapi_convert import CONVERT_PATHS, CONVERT_SCHEMAS

SUBJECT_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"}
COLOUR = {"type": "string", "enum": ["green", "yellow", "red", "grey"]}

SCHEMAS: dict[str, Any] = {
    "Problem": PROBLEM_SCHEMA,
    "GenerateRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "id", "city"],
        "properties": {
            "kind": {"type": "string", "enum": ["person", "enterprise"]},
            "id": {
                "type": "string",
                "maxLength": 64,
                "description": "18-character resident ID (GB 11643) or unified social credit "
                "code (GB 32100). Never stored, logged or echoed.",
            },
            "city": {
                "type": "integer",
                "enum": sorted(CITIES),
                "description": "Six-digit code of one of the province's cities, e.g. 320100.",
            },
        },
    },
    "Subject": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subject", "kind", "city", "colour", "version", "created"],
        "properties": {
            "subject": SUBJECT_ID,
            "kind": {"type": "string", "enum": ["health", "enterprise_service"]},
            "city": {"type": "integer"},
            "colour": COLOUR,
            "version": {"type": "integer", "minimum": 1},
            "created": {"type": "boolean"},
        },
    },
    "DisplayedCode": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "token",
            "colour",
            "version",
            "issued_at",
            "expires_at",
            "refresh_at",
            "kind",
            "city",
        ],
        "properties": {
            "token": {"type": "string", "pattern": "^CE1:[0-9A-Z $%*+./:-]+$"},
            "colour": COLOUR,
            "version": {"type": "integer"},
            "issued_at": {"type": "integer"},
            "expires_at": {"type": "integer"},
            "refresh_at": {"type": "integer"},
            "kind": {
                "type": "string",
                "enum": ["health", "person_service", "enterprise_service", "fused"],
            },
            "city": {"type": "integer", "enum": sorted(CITIES)},
        },
    },
    "ConvertRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["colour", "reason", "if_version"],
        "properties": {
            "colour": COLOUR,
            "reason": {"type": "string", "maxLength": 200},
            "if_version": {"type": "integer", "minimum": 1, "maximum": 4294967295},
            "op_id": {"type": "string", "pattern": "^[ -~]{1,64}$"},
        },
    },
    "Converted": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subject", "colour", "shows", "version", "applied", "op_id"],
        "properties": {
            "subject": SUBJECT_ID,
            "colour": COLOUR,
            "version": {"type": "integer"},
            "applied": {"type": "boolean"},
            "op_id": {"type": "string"},
            "shows": {
                **COLOUR,
                "description": "The colour the subject shows now: a running rule period or "
                "upheld appeal can outweigh the colour set (see its history).",
            },
        },
    },
    "JWKS": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "kid", "alg", "use", "nbf", "exp"],
                    "properties": {
                        "kty": {"type": "string", "enum": ["OKP", "EC"]},
                        "crv": {"type": "string"},
                        "x": {"type": "string"},
                        "y": {"type": "string"},
                        "kid": {"type": "string"},
                        "alg": {"type": "string", "enum": ["EdDSA", "ES256"]},
                        "use": {"const": "sig"},
                        "nbf": {"type": "integer"},
                        "exp": {"type": "integer"},
                    },
                },
            }
        },
    },
    "RotateRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "alg": {"type": "string", "enum": ["EdDSA", "ES256"]},
            "activate_in_s": {"type": "integer", "minimum": 0, "maximum": 604800},
        },
    },
    "Rotated": {
        "type": "object",
        "additionalProperties": False,
        "required": ["kid", "alg", "activates_at", "keyring_version"],
        "properties": {
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "activates_at": {"type": "integer"},
            "keyring_version": {"type": "integer"},
        },
    },
}

SUBJECT_PARAM = {"name": "subject", "in": "path", "required": True, "schema": SUBJECT_ID}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]

PATHS: dict[str, Any] = {
    **HEALTH_PATHS,
    "/v1/subjects": {
        "post": {
            "operationId": "generate",
            "summary": "生码: generate a subject's code from a resident ID or credit code",
            "description": "Idempotent: the same identifier always gives the same subject. "
            "Needs scope `generate`.",
            "security": SECURED,
            "requestBody": {
                "required": True,
                "content": ref("GenerateRequest"),
            },
            "responses": responses(
                {
                    "201": ("Subject created", ref("Subject")),
                    "200": ("Subject existed", ref("Subject")),
                },
                400,
                401,
                403,
                413,
                415,
                422,
                429,
                503,
            ),
        }
    },
    "/v1/subjects/{subject}/code": {
        "get": {
            "operationId": "display",
            "summary": "亮码: the subject's current code, or its QR image",
            "description": "Returns the same token until its half-life, then a newly signed "
            "one. `format=png` or `svg` returns the QR image of that token. Needs scope "
            "`display`.",
            "security": SECURED,
            "parameters": [
                SUBJECT_PARAM,
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["json", "png", "svg"]},
                },
                {
                    "name": "kind",
                    "in": "query",
                    "required": False,
                    "description": "Which code: `own` (default: a person's health code, an "
                    "enterprise's service code), or for a person `health`, `service` (person "
                    "service code) or `fused` (health colour and service identity in one code, "
                    "卡码融合). An enterprise has `service` only (400 otherwise).",
                    "schema": {"type": "string", "enum": ["own", "health", "service", "fused"]},
                },
            ],
            "responses": responses(
                {
                    "200": (
                        "The current code",
                        {
                            **ref("DisplayedCode"),
                            "image/png": {"schema": {"type": "string", "format": "binary"}},
                            "image/svg+xml": {"schema": {"type": "string"}},
                        },
                    )
                },
                400,
                401,
                403,
                404,
                429,
                503,
            ),
        }
    },
    "/v1/subjects/{subject}/status": {
        "post": {
            "operationId": "convert",
            "summary": "赋码/转码: set the subject's colour if `if_version` is current",
            "description": "Audited (who, why, old, new, when). Resending the same `op_id` "
            "(or `Idempotency-Key` header) changes nothing. A stale `if_version` answers 409 "
            "with `current_version`. Needs scope `convert`.",
            "security": SECURED,
            "parameters": [
                SUBJECT_PARAM,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[ -~]{1,64}$"},
                },
            ],
            "requestBody": {"required": True, "content": ref("ConvertRequest")},
            "responses": responses(
                {"200": ("Status set (or already set by this op_id)", ref("Converted"))},
                400,
                401,
                403,
                404,
                409,
                413,
                415,
                429,
                503,
            ),
        }
    },
    "/v1/trust": {
        "get": {
            "operationId": "trust",
            "summary": "The trust list: JWKS of every key a verifier should trust",
            "description": "Public. Each key carries `nbf`/`exp` (its validity). A staged key "
            "appears before it signs anything.",
            "responses": responses(
                {
                    "200": (
                        "The trust list",
                        {"application/jwk-set+json": ref("JWKS")[JSON]},
                    )
                },
                503,
            ),
        }
    },
    "/v1/keys/rotate": {
        "post": {
            "operationId": "rotate",
            "summary": "Rotate the signing key (admin)",
            "description": "Staged by default: the new key is published now and signs after "
            "`activate_in_s` (default: the trust list's max age); `activate_in_s: 0` switches "
            "at once (emergency). A rotation while one is pending answers 409. Needs scope "
            "`admin`.",
            "security": SECURED,
            "requestBody": {"required": False, "content": ref("RotateRequest")},
            "responses": responses(
                {"200": ("Rotated", ref("Rotated"))}, 400, 401, 403, 409, 413, 415, 429, 503
            ),
        }
    },
}

PAGE_PATHS = page_paths(
    {
        "/pages/display": ("page_display", "亮码: the display page for an app's web view"),
        "/pages/ops": ("page_ops", "The ops console: city state, live metrics, recent batches"),
    }
)

SPEC = spec_document(
    title="codeengine issuer",
    description="Generate (生码), display (亮码) and convert (赋码/转码) health and service codes; "
    "publish the trust list. Every failure answers a JSON problem body with a stable `reason`.",
    paths={**PATHS, **CONVERT_PATHS, **PAGE_PATHS},
    schemas={**SCHEMAS, **CONVERT_SCHEMAS},
)

OPENAPI_ROUTES = [web.get("/openapi.json", spec_handler(SPEC), name="openapi")]
