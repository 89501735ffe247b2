"""The verifier's OpenAPI 3.1 description, served at ``/openapi.json`` and kept true by tests."""

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

MSGPACK = "application/msgpack"
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
NULLABLE_STRING = {"type": ["string", "null"]}
# What the service accepts: one of the province's cities (others are 400 UNKNOWN_CITY).
CITY = {"type": "integer", "enum": sorted(CITIES)}
# A query time is at most 15 digits (ms since the epoch); longer ones are 400.
MS_QUERY = {"type": "integer", "minimum": 0, "maximum": 10**15 - 1}

SCHEMAS: dict[str, Any] = {
    "Problem": PROBLEM_SCHEMA,
    "Scan": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "terminal", "city"],
        "properties": {
            "code": {"type": "string", "maxLength": 514, "description": "The scanned text."},
            "terminal": {"type": "string", "maxLength": 64},
            "venue": {"type": "string", "maxLength": 64},
            "city": {**CITY, "description": "The terminal's six-digit city code."},
        },
    },
    "Verdict": {
        "type": "object",
        "additionalProperties": False,
        "required": ["valid", "reason"],
        "description": "Which fields beyond valid and reason a terminal sees is its profile's "
        "(`configs/fusion.toml`, by the client's `terminal_type`): a venue gate sees the "
        "colour only, a service hall also the kind, city and linked licences.",
        "properties": {
            "valid": {"type": "boolean"},
            "reason": {
                "type": "string",
                "description": "VALID, or why not: MALFORMED, UNSUPPORTED_ALG, UNKNOWN_KID, "
                "BAD_SIGNATURE, EXPIRED, NOT_YET_VALID, REVOKED, WRONG_CITY, UNKNOWN_SUBJECT, "
                "UNKNOWN_ALIAS (an alias credential bound to nobody), STORE_UNAVAILABLE (an "
                "alias credential while the store is unreachable).",
            },
            "licences": {
                "type": "array",
                "description": "Linked electronic licences, masked (single verify, and only "
                "for terminals whose profile allows).",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "masked": {"type": "string"}},
                },
            },
            "colour": {"enum": ["green", "yellow", "red", "grey", None]},
            "kind": {"enum": ["health", "person_service", "enterprise_service", "fused", None]},
            "city": {"type": ["integer", "null"]},
            "checked_at": {"type": "integer"},
            "as_of": {
                "type": ["integer", "null"],
                "description": "When the colour was true: now online; the code's issue time "
                "when degraded.",
            },
            "degraded": {
                "type": "boolean",
                "description": "True when the store was unreachable and the answer rests on "
                "the signature alone.",
            },
        },
    },
    "Batch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 500,
                "items": {"$ref": "#/components/schemas/Scan"},
            }
        },
    },
    "BatchResults": {
        "type": "object",
        "additionalProperties": False,
        "required": ["results"],
        "properties": {
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Verdict"}}
        },
    },
    "RevokeRequest": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "code": {"type": "string", "maxLength": 512},
            "kid": {
                "type": "string",
                "description": "An 8-byte key id in unpadded base64url, as the trust list has it.",
                "pattern": "^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$",
            },
        },
        "description": "Exactly one of `code` (the whole code text) and `kid`.",
    },
    "Revoked": {
        "type": "object",
        "additionalProperties": False,
        "required": ["revoked", "id", "until", "effective_within_s"],
        "properties": {
            "revoked": {"enum": ["code", "key"]},
            "id": {"type": "string"},
            "until": {"type": ["integer", "null"]},
            "effective_within_s": {"type": "number"},
        },
    },
    "RevocationList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["codes", "keys", "as_of"],
        "properties": {
            "codes": {"type": "array", "items": {"type": "string"}},
            "keys": {"type": "array", "items": {"type": "string"}},
            "as_of": {"type": "integer"},
        },
    },
    "ScanCount": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "city",
            "venue",
            "from",
            "to",
            "count",
            "by_reason",
            "by_colour",
            "truncated",
            "unreadable",
        ],
        "properties": {
            "city": {"type": "integer"},
            "venue": NULLABLE_STRING,
            "from": {"type": "integer"},
            "to": {"type": "integer"},
            "count": {"type": "integer"},
            "by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_colour": {"type": "object", "additionalProperties": {"type": "integer"}},
            "truncated": {"type": "boolean"},
            "unreadable": {
                "type": "integer",
                "minimum": 0,
                "description": "Entries in the window that are not scan entries: skipped, "
                "not counted (each is also counted in codeengine_scans_unreadable_total)",
            },
        },
    },
    "JWKS": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
    },
}

PATHS: dict[str, Any] = {
    **HEALTH_PATHS,
    "/v1/verify": {
        "post": {
            "operationId": "verify",
            "summary": "扫码/验码: verify one scanned code or alias credential",
            "description": "Checks the code and answers the subject's live colour. The "
            "`code` may also be an alias credential as a reader types it (`SSC:...` for a "
            "social-security card and the other prefixes of `configs/fusion.toml`): it "
            "answers as the subject's own code. Every "
            "scan is logged without personal data. With the store unreachable the answer "
            "rests on the signature and says `degraded: true`. An invalid code is still a "
            "200 answer with `valid: false` and its reason. Needs scope `verify`.",
            "security": SECURED,
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Scan"}}},
            },
            "responses": responses(
                {"200": ("The verdict", ref("Verdict"))}, 400, 401, 403, 413, 415, 429, 503
            ),
        }
    },
    "/v1/verify/batch": {
        "post": {
            "operationId": "verify_batch",
            "summary": "Verify up to 500 codes; answers in order",
            "description": "JSON or msgpack (`Content-Type: application/msgpack`, answered in "
            "msgpack). Store reads are pipelined: one round trip per shard. Needs scope "
            "`verify`.",
            "security": SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": {"$ref": "#/components/schemas/Batch"}},
                    MSGPACK: {"schema": {"$ref": "#/components/schemas/Batch"}},
                },
            },
            "responses": responses(
                {
                    "200": (
                        "The verdicts, in order",
                        {
                            JSON: {"schema": {"$ref": "#/components/schemas/BatchResults"}},
                            MSGPACK: {"schema": {"$ref": "#/components/schemas/BatchResults"}},
                        },
                    )
                },
                400,
                401,
                403,
                413,
                415,
                429,
                503,
            ),
        }
    },
    "/v1/revocations": {
        "post": {
            "operationId": "revoke",
            "summary": "Revoke a code or a key (admin); effective online within a second",
            "security": SECURED,
            "requestBody": {"required": True, "content": ref("RevokeRequest")},
            "responses": responses(
                {"200": ("Revoked", ref("Revoked"))}, 400, 401, 403, 413, 415, 429, 503
            ),
        },
        "get": {
            "operationId": "revocations",
            "summary": "The revocation list terminals cache (public)",
            "responses": responses({"200": ("The list", ref("RevocationList"))}, 503),
        },
    },
    "/v1/scans": {
        "get": {
            "operationId": "scans",
            "summary": "Count a city's scans in a time window, of one venue or all (admin)",
            "security": SECURED,
            "parameters": [
                {"name": "city", "in": "query", "required": True, "schema": CITY},
                {
                    "name": "venue",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 64},
                },
                {
                    "name": "from",
                    "in": "query",
                    "required": False,
                    "schema": MS_QUERY,
                    "description": "ms since the epoch; default an hour ago",
                },
                {
                    "name": "to",
                    "in": "query",
                    "required": False,
                    "schema": MS_QUERY,
                    "description": "ms since the epoch; default now",
                },
            ],
            "responses": responses(
                {"200": ("The count", ref("ScanCount"))}, 400, 401, 403, 429, 503
            ),
        }
    },
    "/v1/trust": {
        "get": {
            "operationId": "trust",
            "summary": "The trust list this verifier uses (public), for offline terminals",
            "responses": responses(
                {
                    "200": (
                        "JWKS",
                        {
                            "application/jwk-set+json": {
                                "schema": {"$ref": "#/components/schemas/JWKS"}
                            }
                        },
                    )
                },
                503,
            ),
        }
    },
}

SPEC = spec_document(
    title="codeengine verifier",
    description="Verify (扫码/验码) health and service codes online and in batches; revoke codes "
    "and keys; count scans. Every failure answers a JSON problem body with a stable `reason`.",
    paths={
        **PATHS,
        **page_paths({"/pages/terminal": ("page_terminal", "扫码核验: the scan terminal page")}),
    },
    schemas=SCHEMAS,
)

OPENAPI_ROUTES = [web.get("/openapi.json", spec_handler(SPEC), name="openapi")]
