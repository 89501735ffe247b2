"""The shapes of the issuer's answers, and the patterns its paths and bodies share.

Published as the component schemas of the issuer's OpenAPI document; request bodies are not
here: their schemas are made from the field tables that validate them.
"""

from __future__ import annotations

__all__ = [
    "ALIAS_ID",
    "APPEAL_ID",
    "BATCH_ID",
    "COLOUR",
    "ISSUER_SCHEMAS",
    "SUBJECT_ID",
    "SUBJECT_PARAM",
    "alias_type_schema",
]

from typing import Any

from codeengine.code.errors import Reason
from codeengine.code.fusion import Fusion
from codeengine.code.model import CITIES
from codeengine.web.routes import closed_object, path_param
from codeengine.web.trust import JWKS_SCHEMA

SUBJECT_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"}
"""A subject pseudonym: 16 characters of unpadded base64url."""
COLOUR = {"type": "string", "enum": ["green", "yellow", "red", "grey"]}
NULLABLE_COLOUR = {"enum": ["green", "yellow", "red", "grey", None]}
BATCH_ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
APPEAL_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
ALIAS_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"}
SUBJECT_PARAM = path_param("subject", SUBJECT_ID)
_COUNT = {"type": "integer", "minimum": 0}
_ROLE = {"enum": ["primary", "backup"]}
_NULLABLE_ROLE = {"enum": ["primary", "backup", None]}
ROW_REASONS = sorted(
    r.value
    for r in (
        Reason.BAD_LENGTH, Reason.BAD_CHARACTERS, Reason.BAD_REGION, Reason.BAD_BIRTH_DATE,
        Reason.BAD_CHECK_DIGIT, Reason.UNKNOWN_RECORD_TYPE, Reason.BAD_EVENT_TIME,
        Reason.BAD_SOURCE, Reason.UNKNOWN_CITY, Reason.BAD_ROW,
    )
)  # fmt: skip


def _listing(key: str, item: str) -> dict[str, Any]:
    """A subject's entries of the component ``item``, listed under ``key``."""
    entries = {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}
    return {
        "type": "object",
        "required": ["subject", key],
        "properties": {"subject": SUBJECT_ID, key: entries},
    }


ISSUER_SCHEMAS: dict[str, Any] = {
    "JWKS": JWKS_SCHEMA,
    "Subject": closed_object(
        {
            "subject": SUBJECT_ID,
            "kind": {"type": "string", "enum": ["health", "enterprise_service"]},
            "city": {"type": "integer"},
            "colour": COLOUR,
            "version": {"type": "integer", "minimum": 1},
            "created": {"type": "boolean"},
        }
    ),
    "DisplayedCode": closed_object(
        {
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
        }
    ),
    "Converted": closed_object(
        {
            "subject": SUBJECT_ID,
            "colour": COLOUR,
            "shows": {
                **COLOUR,
                "description": "The colour the subject shows now: a running rule period or "
                "upheld appeal can outweigh the colour set (see its history).",
            },
            "version": {"type": "integer"},
            "applied": {"type": "boolean"},
            "op_id": {"type": "string"},
        }
    ),
    "Rotated": closed_object(
        {
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "activates_at": {"type": "integer"},
            "keyring_version": {"type": "integer"},
        }
    ),
    "BatchList": closed_object(
        {
            "batches": {
                "type": "array",
                "description": "Newest first; the last 100 batches are kept in the list.",
                "items": closed_object(
                    {
                        "batch_id": BATCH_ID,
                        "state": {"enum": ["running", "done", "rolled_back", "failed"]},
                        "rules_version": {"type": "integer"},
                        "rows": {**_COUNT, "description": "Rows read so far (progress)."},
                        "bad": _COUNT,
                        "applied": _COUNT,
                        "unchanged": _COUNT,
                        "created": _COUNT,
                        "created_at": {"type": ["integer", "null"]},
                        "updated_at": {"type": ["integer", "null"]},
                        "finished_at": {"type": ["integer", "null"]},
                    }
                ),
            }
        }
    ),
    "BatchReport": {
        "type": "object",
        "required": [
            "batch_id",
            "state",
            "dry_run",
            "rules_version",
            "rows",
            "bad",
            "applied",
            "unchanged",
            "created",
            "errors_by_reason",
            "errors",
        ],
        "properties": {
            "batch_id": BATCH_ID,
            "state": {"enum": ["running", "done", "dry-run", "rolled_back", "failed"]},
            "dry_run": {"type": "boolean"},
            "rules_version": {"type": "integer"},
            "rows": _COUNT,
            "bad": _COUNT,
            "applied": {**_COUNT, "description": "Good rows that changed a subject."},
            "unchanged": {**_COUNT, "description": "Good rows that changed nothing."},
            "created": {**_COUNT, "description": "Subjects the batch created."},
            "errors_by_reason": {"type": "object", "additionalProperties": _COUNT},
            "errors": {
                "type": "array",
                "description": "Refused rows (the first 1,000): line number and reason code. "
                "A row's content is never echoed: it holds an identifier.",
                "items": {
                    "type": "object",
                    "required": ["line", "reason"],
                    "properties": {"line": {"type": "integer"}, "reason": {"enum": ROW_REASONS}},
                },
            },
            "colour_changes": {
                "type": "object",
                "description": "Dry run: subjects whose shown colour would change, by 'from->to'.",
                "additionalProperties": _COUNT,
            },
            "already_imported": {"type": "boolean"},
            "submitted_by": {"type": "string"},
            "updated_at": {"type": "integer"},
            "rollback": {"type": "object", "additionalProperties": _COUNT},
        },
    },
    "RolledBack": closed_object(
        {
            "batch_id": BATCH_ID,
            "state": {"const": "rolled_back"},
            "restored": _COUNT,
            "unchanged": _COUNT,
            "changed_since": {
                **_COUNT,
                "description": "Subjects changed after the batch: left as they are.",
            },
        }
    ),
    "Appeal": {
        "type": "object",
        "required": [
            "appeal_id",
            "subject",
            "state",
            "reason",
            "evidence",
            "filed_at",
            "filed_by",
        ],
        "properties": {
            "appeal_id": APPEAL_ID,
            "subject": SUBJECT_ID,
            "state": {"enum": ["open", "upheld", "rejected"]},
            "reason": {"type": "string"},
            "evidence": {"type": "string"},
            "filed_at": {"type": "integer"},
            "filed_by": {"type": "string"},
            "version": {"type": "integer"},
            "decision": {
                "type": "object",
                "properties": {
                    "decision": {"enum": ["upheld", "rejected"]},
                    "reason": {"type": "string"},
                    "decided_by": {"type": "string"},
                    "decided_at": {"type": "integer"},
                    "colour": NULLABLE_COLOUR,
                    "until": {"type": ["integer", "null"]},
                },
            },
        },
    },
    "History": {
        "type": "object",
        "required": ["subject", "colour", "version", "chain", "entries"],
        "properties": {
            "subject": SUBJECT_ID,
            "colour": NULLABLE_COLOUR,
            "version": {"type": ["integer", "null"]},
            "chain": {
                "type": "object",
                "description": "The keyed audit chain: ok, or where it breaks.",
                "properties": {
                    "ok": {"type": "boolean"},
                    "entries": _COUNT,
                    "broken_at": {"type": ["integer", "null"]},
                    "problem": {"type": ["string", "null"]},
                },
            },
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "op",
                        "actor",
                        "reason",
                        "old_colour",
                        "new_colour",
                        "version",
                        "at",
                        "op_id",
                        "hash",
                    ],
                    "properties": {
                        "op": {"enum": ["create", "status", "risk", "rollback", "appeal"]},
                        "actor": {"type": "string"},
                        "reason": {"type": "string"},
                        "old_colour": NULLABLE_COLOUR,
                        "new_colour": NULLABLE_COLOUR,
                        "version": {"type": "integer"},
                        "at": {"type": "integer"},
                        "op_id": {"type": "string"},
                        "position": {
                            "type": "integer",
                            "description": "The entry's place in the chain, 0 for the first.",
                        },
                        "hash": {
                            "type": "string",
                            "description": "The entry's MAC: HMAC-SHA-256 under the audit key, "
                            "first 16 bytes, hex.",
                        },
                        "until": {"type": "integer"},
                        "risk": {"type": "array"},
                    },
                },
            },
        },
    },
    "Alias": closed_object(
        {
            "id": ALIAS_ID,
            "type": {"type": "string"},
            "masked": {"type": "string"},
        }
    ),
    "Aliases": _listing("aliases", "Alias"),
    "Unbound": {
        "type": "object",
        "required": ["subject", "id", "unbound"],
        "properties": {"subject": SUBJECT_ID, "id": ALIAS_ID, "unbound": {"const": True}},
    },
    "BulkAliases": {
        "type": "object",
        "required": ["rows", "bound", "unchanged", "refused", "errors"],
        "properties": {
            "rows": _COUNT,
            "bound": _COUNT,
            "unchanged": _COUNT,
            "refused": _COUNT,
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["line", "reason"],
                    "properties": {"line": {"type": "integer"}, "reason": {"type": "string"}},
                },
            },
        },
    },
    "Licence": {
        "type": "object",
        "required": ["type", "masked"],
        "properties": {
            "subject": SUBJECT_ID,
            "type": {"type": "string"},
            "masked": {"type": "string"},
        },
    },
    "Licences": _listing("licences", "Licence"),
    "CityState": {
        "type": "object",
        "required": ["code", "name", "name_en", "writer", "epoch", "since", "switches"],
        "properties": {
            "code": {"type": "integer"},
            "name": {"type": "string"},
            "name_en": {"type": "string"},
            "writer": {
                **_NULLABLE_ROLE,
                "description": "The endpoint that holds the city's write lease now "
                "(null: none, e.g. both down).",
            },
            "epoch": {
                "type": "integer",
                "description": "The fencing epoch: grows with every change of holder.",
            },
            "since": {"type": ["number", "null"], "description": "Unix seconds."},
            "held_for": {
                **_NULLABLE_ROLE,
                "description": "A planned handover holds the lease for this endpoint.",
            },
            "switches": {
                "type": "array",
                "description": "Latest changes of holder, newest first (at most 20).",
                "items": {
                    "type": "object",
                    "required": ["at", "from", "to", "epoch", "why"],
                    "properties": {
                        "at": {"type": "number"},
                        "from": _NULLABLE_ROLE,
                        "to": _ROLE,
                        "epoch": {"type": "integer"},
                        "why": {"enum": ["start", "lease_expired", "handback", "planned"]},
                    },
                },
            },
        },
    },
    "CityList": {
        "type": "object",
        "required": ["cities"],
        "properties": {
            "cities": {"type": "array", "items": {"$ref": "#/components/schemas/CityState"}}
        },
    },
}
"""The issuer's answers by component name."""


def alias_type_schema(fusion: Fusion) -> dict[str, Any]:
    """The component ``AliasType``: the alias types of the fusion file the app loaded."""
    return {
        "type": "string",
        "enum": sorted(fusion.aliases),
        "description": "An alias type of the service's fusion file (configs/fusion.toml by "
        "default).",
    }
