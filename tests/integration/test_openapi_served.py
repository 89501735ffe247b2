"""The OpenAPI documents the apps serve are the committed ones (``docs/openapi/``) and name
exactly the routes each app serves."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from codeengine.settings import Settings
from codeengine.web.openapi import OPENAPI
from codeengine.web.service import UNMATCHED
from issuer.app import create_app as create_issuer
from tests.integration.apps import issuer, verifier
from tools.openapi import DOCS
from verifier.app import create_app as create_verifier

pytestmark = pytest.mark.cluster


def test_each_service_serves_its_committed_document(settings: Settings, run: Any) -> None:
    # The session's settings differ from the defaults in keys and nodes only, which no
    # document mentions.
    async def scenario() -> None:
        for name, app in (("issuer", issuer), ("verifier", verifier)):
            async with app(settings) as client:
                response = await client.get("/openapi.json")
                assert response.status == 200
                assert response.content_type == "application/json"
                committed = json.loads((DOCS / f"{name}.json").read_text(encoding="utf-8"))
                assert await response.json() == committed, name

    run(scenario())


@pytest.mark.parametrize("create", [create_issuer, create_verifier], ids=["issuer", "verifier"])
def test_each_app_documents_exactly_the_routes_it_serves(
    settings: Settings, create: Callable[[Settings], web.Application]
) -> None:
    app = create(settings)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD" and route.name != UNMATCHED
    }
    documented = {(method, path) for path, ops in app[OPENAPI]["paths"].items() for method in ops}
    assert served == documented
