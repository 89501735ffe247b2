"""The trust list as both services publish it: the JWKS terminals and verifiers fetch."""

from __future__ import annotations

__all__ = ["JWKS_SCHEMA", "trust_list", "trust_route"]

from typing import Any

from aiohttp import web

from codeengine.web.routes import PUBLIC, Route
from codeengine.web.runtime import KEYS, SETTINGS

JWKS_SCHEMA: dict[str, Any] = {
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
}
"""The trust list's shape; the services publish it as the component ``JWKS``."""


async def trust_list(request: web.Request) -> web.Response:
    """The JWKS of every key to trust now, with validity periods; cacheable for max-age."""
    trust = request.app[KEYS].require_trust()
    max_age = request.app[SETTINGS].codes.trust_list_max_age_s
    return web.Response(
        text=trust.to_json(),
        content_type="application/jwk-set+json",
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )


def trust_route(summary: str, description: str = "") -> Route:
    """``GET /v1/trust``, public, as a service describes it."""
    jwks = {"schema": {"$ref": "#/components/schemas/JWKS"}}
    return Route(
        "GET",
        "/v1/trust",
        trust_list,
        "trust",
        scope=PUBLIC,
        summary=summary,
        description=description,
        answers={"200": ("The trust list", {"application/jwk-set+json": jwks})},
        problems=(503,),
    )
