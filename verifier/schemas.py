"""The shapes of the verifier's answers, published as its OpenAPI document's components.

Request bodies are not here: their schemas are made from the field tables that validate them.
"""

from __future__ import annotations

__all__ = ["VERIFIER_SCHEMAS", "scan_items_schema"]

from typing import Any

from codeengine.web.routes import closed_object
from codeengine.web.trust import JWKS_SCHEMA

NULLABLE_STRING = {"type": ["string", "null"]}

VERIFIER_SCHEMAS: dict[str, Any] = {
    "JWKS": JWKS_SCHEMA,
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
            "format": {
                "enum": ["dcc", "shc"],
                "description": "Only for another issuer's credential: `dcc` (EU Digital COVID "
                "Certificate, `HC1:`) or `shc` (SMART Health Card, `shc:/`); docs/formats.md.",
            },
            "credential": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "description": "Only for another issuer's credential, once its signature held: "
                "what it is, never whom it names. Its colour is the venue's policy "
                "(`configs/credentials.toml`).",
                "properties": {
                    "type": {
                        "type": "string",
                        "description": "vaccination, test or recovery (DCC); immunization, "
                        "laboratory, covid19 or health-card (SHC).",
                    },
                    "issued_at": {"type": "integer"},
                    "expires_at": {"type": ["integer", "null"]},
                    "issuer": {
                        "type": "string",
                        "description": "The DCC's issuing country, or the SHC issuer's URL.",
                    },
                },
            },
        },
    },
    "BatchResults": closed_object(
        {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Verdict"}}}
    ),
    "Revoked": closed_object(
        {
            "revoked": {"enum": ["code", "key"]},
            "id": {"type": "string"},
            "until": {"type": ["integer", "null"]},
            "effective_within_s": {"type": "number"},
        }
    ),
    "RevocationList": closed_object(
        {
            "codes": {"type": "array", "items": {"type": "string"}},
            "keys": {"type": "array", "items": {"type": "string"}},
            "as_of": {"type": "integer"},
        }
    ),
}
"""The verifier's answers by component name."""


def scan_items_schema(batch_max: int) -> dict[str, Any]:
    """The component ``ScanItems``: a batch's scans, as many as the app's settings take."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": batch_max,
        "items": {"$ref": "#/components/schemas/BatchScan"},
    }
