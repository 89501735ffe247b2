"""The trust list as both services publish it: the JWKS terminals and verifiers fetch."""

from __future__ import annotations

__all__ = ["trust_list"]

from aiohttp import web

from codeengine.web.runtime import KEYS, SETTINGS


async def trust_list(request: web.Request) -> web.Response:
    """The JWKS of every key to trust now, with validity periods; cacheable for max-age."""
    trust = request.app[KEYS].require_trust()
    max_age = request.app[SETTINGS].codes.trust_list_max_age_s
    return web.Response(
        text=trust.to_json(),
        content_type="application/jwk-set+json",
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )
