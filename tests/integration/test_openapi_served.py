"""The OpenAPI documents the apps serve are the committed ones (``docs/openapi/``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codeengine.settings import Settings
from tests.integration.apps import issuer, verifier
from tools.openapi import DOCS

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
