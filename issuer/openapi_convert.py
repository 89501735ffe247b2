"""OpenAPI of the issuer's conversion operations: batches, appeals, a subject's history."""

from __future__ import annotations

__all__ = ["CONVERT_PATHS", "CONVERT_SCHEMAS"]

from typing import Any

from codeengine.code.errors import Reason
from codeengine.code.fusion import load_fusion
from codeengine.code.model import CITIES
from codeengine.store.batches import COLUMNS
from codeengine.web.openapi import ref, responses
from issuer.appeals import TEXT_PATTERN

SUBJECT_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"}
COLOUR = {"type": "string", "enum": ["green", "yellow", "red", "grey"]}
NULLABLE_COLOUR = {"enum": ["green", "yellow", "red", "grey", None]}
BATCH_ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
APPEAL_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_COUNT = {"type": "integer", "minimum": 0}
ROW_REASONS = sorted(
    r.value
    for r in (
        Reason.BAD_LENGTH, Reason.BAD_CHARACTERS, Reason.BAD_REGION, Reason.BAD_BIRTH_DATE,
        Reason.BAD_CHECK_DIGIT, Reason.UNKNOWN_RECORD_TYPE, Reason.BAD_EVENT_TIME,
        Reason.BAD_SOURCE, Reason.UNKNOWN_CITY, Reason.BAD_ROW,
    )
)  # fmt: skip

CONVERT_SCHEMAS: dict[str, Any] = {
    "BatchList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["batches"],
        "properties": {
            "batches": {
                "type": "array",
                "description": "Newest first; the last 100 batches are kept in the list.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": [
                        "batch_id",
                        "state",
                        "rules_version",
                        "rows",
                        "bad",
                        "applied",
                        "unchanged",
                        "created",
                        "created_at",
                        "updated_at",
                        "finished_at",
                    ],
                    "properties": {
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
                    },
                },
            }
        },
    },
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
    "RolledBack": {
        "type": "object",
        "additionalProperties": False,
        "required": ["batch_id", "state", "restored", "unchanged", "changed_since"],
        "properties": {
            "batch_id": BATCH_ID,
            "state": {"const": "rolled_back"},
            "restored": _COUNT,
            "unchanged": _COUNT,
            "changed_since": {
                **_COUNT,
                "description": "Subjects changed after the batch: left as they are.",
            },
        },
    },
    "AppealRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subject", "reason", "evidence"],
        "properties": {
            "subject": SUBJECT_ID,
            "reason": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN},
            "evidence": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "pattern": TEXT_PATTERN,
                "description": "A reference to the evidence (a document id), never the document.",
            },
        },
    },
    "DecisionRequest": {
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["decision", "reason", "colour", "duration_days"],
                "properties": {
                    "decision": {"const": "upheld"},
                    "reason": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "pattern": TEXT_PATTERN,
                    },
                    "colour": {**COLOUR, "description": "The colour to show."},
                    "duration_days": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 366,
                        "description": "How long the override lasts.",
                    },
                },
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["decision", "reason"],
                "properties": {
                    "decision": {"const": "rejected"},
                    "reason": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "pattern": TEXT_PATTERN,
                    },
                },
            },
        ],
    },
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
                "description": "The audit trail's hash chain: ok, or where it breaks.",
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
                        "hash": {"type": "string"},
                        "until": {"type": "integer"},
                        "risk": {"type": "array"},
                    },
                },
            },
        },
    },
}

_SUBJECT = {"name": "subject", "in": "path", "required": True, "schema": SUBJECT_ID}
_BATCH = {"name": "batch_id", "in": "path", "required": True, "schema": BATCH_ID}
_APPEAL = {"name": "appeal_id", "in": "path", "required": True, "schema": APPEAL_ID}
_CSV_HEADER = ",".join(COLUMNS)

CONVERT_PATHS: dict[str, Any] = {
    "/v1/subjects/{subject}/history": {
        "get": {
            "operationId": "history",
            "summary": "A subject's audit trail, with the verdict on its hash chain (ops)",
            "description": "Every status change: who or what (actor, rule, batch), old and new, "
            "when, why. Needs scope `convert`.",
            "security": SECURED,
            "parameters": [_SUBJECT],
            "responses": responses(
                {"200": ("The audit trail", ref("History"))}, 400, 401, 403, 404, 429, 503
            ),
        }
    },
    "/v1/batches": {
        "get": {
            "operationId": "batch_list",
            "summary": "The latest bulk batches with their state and progress",
            "description": "Newest first, at most `limit` (1 to 100, default 20). Progress is "
            "the rows read so far; a running batch updates it after every chunk. Needs scope "
            "`convert`.",
            "security": SECURED,
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                }
            ],
            "responses": responses(
                {"200": ("The batches", ref("BatchList"))}, 400, 401, 403, 429, 503
            ),
        },
        "post": {
            "operationId": "batch_import",
            "summary": "赋码/转码 in bulk: import a batch of risk records from the topic library",
            "description": f"CSV (header `{_CSV_HEADER}`) or NDJSON (objects with those keys), "
            "streamed: any size. `event_time` is ISO 8601 with its offset, or Unix seconds. "
            "Bad rows are reported by line and reason and do not stop the batch. The same "
            "`batch_id` is never imported twice (200 with the stored report); a batch that "
            "stopped half-way resumes. `dry_run=true` reports what would change and writes "
            "nothing. Needs scope `convert`.",
            "security": SECURED,
            "parameters": [
                {"name": "batch_id", "in": "query", "required": True, "schema": BATCH_ID},
                {
                    "name": "dry_run",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["true", "false"]},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string", "pattern": f"^{_CSV_HEADER}\\r?\\n"}},
                    "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
                },
            },
            "responses": responses(
                {
                    "201": ("Imported (or dry run)", ref("BatchReport")),
                    "200": ("Imported before: the stored report", ref("BatchReport")),
                },
                400,
                401,
                403,
                409,
                415,
                429,
                503,
            ),
        },
    },
    "/v1/batches/{batch_id}": {
        "get": {
            "operationId": "batch_show",
            "summary": "A batch's state and counts (live while it imports) and refused rows",
            "description": "Needs scope `convert`.",
            "security": SECURED,
            "parameters": [_BATCH],
            "responses": responses(
                {"200": ("The batch", ref("BatchReport"))}, 400, 401, 403, 404, 429, 503
            ),
        }
    },
    "/v1/batches/{batch_id}/rollback": {
        "post": {
            "operationId": "batch_rollback",
            "summary": "Roll a batch back: restore its subjects' risk periods",
            "description": "Each subject the batch changed gets back its risk periods from "
            "before the batch, unless something changed it since (counted, left alone). "
            "Audited. Possible for 30 days. Needs scope `convert`.",
            "security": SECURED,
            "parameters": [_BATCH],
            "responses": responses(
                {"200": ("Rolled back", ref("RolledBack"))}, 400, 401, 403, 404, 409, 429, 503
            ),
        }
    },
    "/v1/appeals": {
        "post": {
            "operationId": "appeal_file",
            "summary": "异议: file an appeal against a subject's colour",
            "description": "Needs scope `appeal`.",
            "security": SECURED,
            "requestBody": {"required": True, "content": ref("AppealRequest")},
            "responses": responses(
                {"201": ("Filed", ref("Appeal"))}, 400, 401, 403, 404, 413, 415, 429, 503
            ),
        }
    },
    "/v1/appeals/{appeal_id}": {
        "get": {
            "operationId": "appeal_show",
            "summary": "An appeal and its decision",
            "description": "Needs scope `appeal`.",
            "security": SECURED,
            "parameters": [_APPEAL],
            "responses": responses(
                {"200": ("The appeal", ref("Appeal"))}, 400, 401, 403, 404, 429, 503
            ),
        }
    },
    "/v1/appeals/{appeal_id}/decision": {
        "post": {
            "operationId": "appeal_decide",
            "summary": "Decide an appeal: uphold (override the colour until an expiry) or reject",
            "description": "Final: the same decision again is a no-op, another answers 409. "
            "Needs scope `convert`.",
            "security": SECURED,
            "parameters": [_APPEAL],
            "requestBody": {"required": True, "content": ref("DecisionRequest")},
            "responses": responses(
                {"200": ("Decided", ref("Appeal"))}, 400, 401, 403, 404, 409, 413, 415, 429, 503
            ),
        }
    },
}

ALIAS_TYPE = {
    "enum": sorted(load_fusion().aliases),
    "description": "An alias type of configs/fusion.toml (here, the shipped file's types).",
}
ALIAS_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"}
CONVERT_SCHEMAS.update(
    {
        "AliasRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "value"],
            "properties": {
                "type": ALIAS_TYPE,
                "value": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "description": "The credential. Stored only as a keyed hash.",
                },
            },
        },
        "Alias": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "type", "masked"],
            "properties": {
                "id": ALIAS_ID,
                "type": {"type": "string"},
                "masked": {"type": "string"},
            },
        },
        "Aliases": {
            "type": "object",
            "required": ["subject", "aliases"],
            "properties": {
                "subject": SUBJECT_ID,
                "aliases": {"type": "array", "items": {"$ref": "#/components/schemas/Alias"}},
            },
        },
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
        "LicenceRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "number"],
            "properties": {
                "type": {"type": "string", "pattern": "^[a-z0-9_]{1,32}$"},
                "number": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"},
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
        "Licences": {
            "type": "object",
            "required": ["subject", "licences"],
            "properties": {
                "subject": SUBJECT_ID,
                "licences": {"type": "array", "items": {"$ref": "#/components/schemas/Licence"}},
            },
        },
    }
)
_FUSION_TEXT = " Needs scope `fusion`."
CONVERT_PATHS.update(
    {
        "/v1/subjects/{subject}/aliases": {
            "post": {
                "operationId": "alias_bind",
                "summary": "卡码融合: bind a credential (card, voucher, transit code...) to the "
                "subject",
                "description": "Checked against the type's format; stored as a keyed hash and "
                "a masked form. 201 bound, 200 already this subject's, 409 `ALIAS_TAKEN` if "
                "another subject's (which one is never said). Audited." + _FUSION_TEXT,
                "security": SECURED,
                "parameters": [_SUBJECT],
                "requestBody": {"required": True, "content": ref("AliasRequest")},
                "responses": responses(
                    {"201": ("Bound", ref("Alias")), "200": ("Already bound", ref("Alias"))},
                    400,
                    401,
                    403,
                    404,
                    409,
                    413,
                    415,
                    422,
                    429,
                    503,
                ),
            },
            "get": {
                "operationId": "alias_list",
                "summary": "The subject's aliases, masked",
                "description": "Each with the id that unbinds it." + _FUSION_TEXT,
                "security": SECURED,
                "parameters": [_SUBJECT],
                "responses": responses(
                    {"200": ("The aliases", ref("Aliases"))}, 400, 401, 403, 404, 429, 503
                ),
            },
        },
        "/v1/subjects/{subject}/aliases/{alias_id}": {
            "delete": {
                "operationId": "alias_unbind",
                "summary": "Unbind an alias (by the id the list shows)",
                "description": "Audited." + _FUSION_TEXT,
                "security": SECURED,
                "parameters": [
                    _SUBJECT,
                    {"name": "alias_id", "in": "path", "required": True, "schema": ALIAS_ID},
                ],
                "responses": responses(
                    {"200": ("Unbound", ref("Unbound"))}, 400, 401, 403, 404, 429, 503
                ),
            }
        },
        "/v1/aliases/bulk": {
            "post": {
                "operationId": "alias_bulk",
                "summary": "An integrator's file of bindings, streamed",
                "description": "CSV with the header `kind,identifier,alias_type,value` (kind "
                "person or enterprise; identifier a resident ID or credit code). Each row is "
                "reported by line and reason if refused (`BAD_ROW`, identifier reasons, "
                "`UNKNOWN_ALIAS_TYPE`, `ALIAS_TAKEN`, `UNKNOWN_SUBJECT`); running the same file "
                "again changes nothing." + _FUSION_TEXT,
                "security": SECURED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/csv": {
                            "schema": {
                                "type": "string",
                                "pattern": "^kind,identifier,alias_type,value\\r?\\n",
                            }
                        }
                    },
                },
                "responses": responses(
                    {"200": ("The report", ref("BulkAliases"))}, 400, 401, 403, 415, 429, 503
                ),
            }
        },
        "/v1/subjects/{subject}/licences": {
            "post": {
                "operationId": "licence_link",
                "summary": "Link an electronic licence (type and number) to the subject",
                "description": "Stored as a keyed hash and a masked number; shown on verify to "
                "terminals whose profile allows it." + _FUSION_TEXT,
                "security": SECURED,
                "parameters": [_SUBJECT],
                "requestBody": {"required": True, "content": ref("LicenceRequest")},
                "responses": responses(
                    {"201": ("Linked", ref("Licence")), "200": ("Already linked", ref("Licence"))},
                    400,
                    401,
                    403,
                    404,
                    413,
                    415,
                    429,
                    503,
                ),
            },
            "get": {
                "operationId": "licence_list",
                "summary": "The subject's linked licences, masked",
                "description": _FUSION_TEXT.strip(),
                "security": SECURED,
                "parameters": [_SUBJECT],
                "responses": responses(
                    {"200": ("The licences", ref("Licences"))}, 400, 401, 403, 429, 503
                ),
            },
        },
    }
)

_ROLE = {"enum": ["primary", "backup"]}
_NULLABLE_ROLE = {"enum": ["primary", "backup", None]}
CONVERT_SCHEMAS.update(
    {
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
        "HandoverRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["to", "hold_s"],
            "properties": {
                "to": _ROLE,
                "hold_s": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 604800,
                    "description": "Keep the lease there this long; 0 lifts a hold.",
                },
            },
        },
    }
)
CONVERT_PATHS.update(
    {
        "/v1/ops/cities": {
            "get": {
                "operationId": "city_list",
                "summary": "Per-city endpoints: who holds each city's write lease (ops)",
                "description": "For each city of the table: the endpoint (primary or backup, "
                "接口备用环境) that accepts writes now, its fencing epoch, and the latest "
                "switches with their cause. Needs scope `admin`.",
                "security": SECURED,
                "responses": responses(
                    {"200": ("Every city", ref("CityList"))}, 401, 403, 429, 503
                ),
            }
        },
        "/v1/ops/cities/{city}/handover": {
            "post": {
                "operationId": "city_handover",
                "summary": "Planned failover: move a city's writes to one endpoint and hold them",
                "description": "The endpoint holding the lease passes it on at its next "
                "beat (the answer waits for that, up to two lease periods); the other endpoint "
                "then refuses writes (503 NOT_WRITER) and reports not ready, so clients "
                "move. `hold_s: 0` lifts the hold; the lease then returns to the primary "
                "after its hand-back period. Needs scope `admin`.",
                "security": SECURED,
                "parameters": [
                    {
                        "name": "city",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": [str(c) for c in sorted(CITIES)]},
                    }
                ],
                "requestBody": {"required": True, "content": ref("HandoverRequest")},
                "responses": responses(
                    {"200": ("The city after the handover", ref("CityState"))},
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
    }
)
