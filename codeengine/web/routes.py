"""HTTP operations declared once: path, operation, scope, lane, body and answers.

Each service lists its operations as :class:`Route` values; the app factory derives from that
one list, when the app is built, the routes aiohttp serves with the scope each needs
(:func:`~codeengine.web.service.add_routes`), the routes the fast lane serves, and the OpenAPI
document (:mod:`codeengine.web.openapi`). A route names its scope, or ``PUBLIC`` for an open one:
a route without a scope cannot be made, so a forgotten scope leaves nothing open.

A JSON object body is declared by the :class:`~codeengine.web.body.Field` table its handler
validates with; its schema is made from that table (:func:`object_body`).
"""

from __future__ import annotations

__all__ = [
    "JSON",
    "PUBLIC",
    "Body",
    "Public",
    "Route",
    "closed_object",
    "object_body",
    "object_schema",
    "path_param",
    "query_param",
    "ref",
]

import enum
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from aiohttp.typedefs import Handler

from codeengine.code.model import SCOPES
from codeengine.web.body import Field

JSON = "application/json"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class Public(enum.Enum):
    """The scope of a route anyone may call (health, trust list, pages, this document)."""

    PUBLIC = "public"


PUBLIC = Public.PUBLIC

Content = Mapping[str, Mapping[str, Any]]
"""An OpenAPI content object: media type -> ``{"schema": ...}``."""


def ref(name: str) -> dict[str, Any]:
    """JSON content whose schema is the component schema ``name``."""
    return {JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def path_param(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A path parameter (always required)."""
    return {"name": name, "in": "path", "required": True, "schema": dict(schema)}


def query_param(
    name: str, schema: Mapping[str, Any], *, required: bool = False, description: str = ""
) -> dict[str, Any]:
    """A query parameter."""
    param: dict[str, Any] = {"name": name, "in": "query", "required": required}
    if description:
        param["description"] = description
    param["schema"] = dict(schema)
    return param


def object_schema(fields: Mapping[str, Field], **extra: Any) -> dict[str, Any]:
    """The JSON Schema of an object body that ``fields`` validate, with ``extra`` keywords."""
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
    required = [name for name, spec in fields.items() if spec.required]
    if required:
        schema["required"] = required
    schema["properties"] = {name: spec.json_schema() for name, spec in fields.items()}
    schema.update(extra)
    return schema


def closed_object(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of an object that has every one of ``properties`` (required in their
    order) and no other."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": dict(properties),
    }


@dataclass(frozen=True, slots=True)
class Body:
    """A request body: its content by media type and the component schemas it defines."""

    content: Content
    required: bool = True
    components: Mapping[str, Any] = field(default_factory=dict)


def object_body(
    name: str,
    fields: Mapping[str, Field],
    *,
    media: tuple[str, ...] = (JSON,),
    required: bool = True,
    schema: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Body:
    """A JSON object body read with ``fields``, published as the component schema ``name``.

    ``schema`` replaces the schema made from ``fields`` when the fields alone cannot say it
    (one of several shapes); it must still be made from them.
    """
    made = dict(schema) if schema is not None else object_schema(fields, **extra)
    target = {"schema": {"$ref": f"#/components/schemas/{name}"}}
    return Body({kind: target for kind in media}, required, {name: made})


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP operation: what serves it, who may call it, and what it takes and answers.

    ``name`` is the operationId, the aiohttp route name and the metrics label. ``answers`` maps
    a success status to its description and content; ``problems`` are the statuses it may
    refuse with a problem body (a route with a scope also refuses with 401, 403 and 429).
    ``lane``: the fast lane serves it (its handler must be marked ``@hot``). ``deprecated``:
    kept for old clients and marked so in the document.
    """

    method: str
    path: str
    handler: Handler
    name: str
    _: KW_ONLY
    scope: str | Public
    summary: str
    description: str = ""
    parameters: tuple[Mapping[str, Any], ...] = ()
    body: Body | None = None
    answers: Mapping[str, tuple[str, Content]] = field(default_factory=dict)
    problems: tuple[int, ...] = ()
    lane: bool = False
    deprecated: bool = False

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"route {self.name!r}: method {self.method!r}")
        if not self.name:
            raise ValueError(f"route {self.method} {self.path} needs a name")
        if self.scope is not PUBLIC and self.scope not in SCOPES:
            raise ValueError(f"route {self.name!r}: scope {self.scope!r} is not one of {SCOPES}")
        if not self.answers:
            raise ValueError(f"route {self.name!r} declares no answer")
