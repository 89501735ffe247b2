"""The verifier's OpenAPI 3.1 description, served at ``/openapi.json``."""

from __future__ import annotations

__all__ = ["OPENAPI_ROUTES", "SPEC"]

from aiohttp import web

from codeengine.web.openapi import HEALTH_PATHS, PROBLEM_SCHEMA, spec_document, spec_handler

SPEC = spec_document(
    title="codeengine verifier",
    description="Verify (扫码/验码) health and service codes online. Every failure answers a "
    "JSON problem body with a stable `reason`.",
    paths=dict(HEALTH_PATHS),
    schemas={"Problem": PROBLEM_SCHEMA},
)

OPENAPI_ROUTES = [web.get("/openapi.json", spec_handler(SPEC), name="openapi")]
