"""Route declarations: what a route must say, and the OpenAPI document made from them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from codeengine.settings import load_settings
from codeengine.web.body import Field
from codeengine.web.fastlane import LANE_ROUTES, LaneRoute
from codeengine.web.openapi import OPENAPI, openapi_document
from codeengine.web.routes import PUBLIC, Route, closed_object, object_body, object_schema, ref
from issuer.app import create_app as create_issuer
from verifier.app import create_app as create_verifier

FIELDS = {
    "name": Field(str, max_length=8, schema={"description": "A name."}),
    "count": Field(int, required=False, minimum=1, maximum=9),
    "items": Field(list, schema={"$ref": "#/components/schemas/Items"}),
}


async def handler(request: web.Request) -> web.Response:
    return web.json_response({})


def route(**changes: Any) -> Route:
    made = Route(
        "POST",
        "/v1/things",
        handler,
        "thing",
        scope="admin",
        summary="A thing",
        answers={"200": ("Done", ref("Done"))},
    )
    return dataclasses.replace(made, **changes)


def document(*routes: Route, **components: Any) -> dict[str, Any]:
    return openapi_document("t", "d", routes, {"Done": {"type": "object"}, **components})


def test_a_route_without_a_scope_cannot_be_made() -> None:
    with pytest.raises(TypeError, match="scope"):
        Route("GET", "/x", handler, "x", summary="X", answers={"200": ("ok", {})})  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="scope 'root'"):
        route(scope="root")
    with pytest.raises(ValueError, match="no answer"):
        route(answers={})


def test_a_secured_operation_says_its_scope_and_the_refusals_of_access() -> None:
    secured = document(route(problems=(400,)))["paths"]["/v1/things"]["post"]
    assert secured["security"] == [{"bearer": []}]
    assert secured["description"] == "Needs scope `admin`."
    assert set(secured["responses"]) == {"200", "400", "401", "403", "429"}
    problem = secured["responses"]["403"]["content"]["application/json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    public = document(route(scope=PUBLIC))["paths"]["/v1/things"]["post"]
    assert "security" not in public and "description" not in public
    assert set(public["responses"]) == {"200"}


def test_a_body_schema_is_made_from_the_field_table_that_reads_it() -> None:
    assert object_schema(FIELDS) == {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "items"],
        "properties": {
            "name": {"type": "string", "maxLength": 8, "description": "A name."},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "items": {"$ref": "#/components/schemas/Items"},
        },
    }
    body = object_body("Thing", FIELDS)
    made = document(route(body=body), Items={"type": "array"})
    operation = made["paths"]["/v1/things"]["post"]
    assert operation["requestBody"] == {"required": True, "content": ref("Thing")}
    assert made["components"]["schemas"]["Thing"] == object_schema(FIELDS)


def test_a_closed_answer_object_requires_each_property_in_order_and_no_other() -> None:
    properties = {"b": {"type": "integer"}, "a": {"type": "string"}}
    assert closed_object(properties) == {
        "type": "object",
        "additionalProperties": False,
        "required": ["b", "a"],
        "properties": properties,
    }


def test_a_document_that_would_lie_is_not_made() -> None:
    with pytest.raises(ValueError, match=r"undeclared schemas \['Items'\]"):
        document(route(body=object_body("Thing", FIELDS)))
    with pytest.raises(ValueError, match="declared twice"):
        document(route(), route(method="GET"))
    with pytest.raises(ValueError, match="declared twice"):
        document(route(), route(path="/v1/other"))
    with pytest.raises(ValueError, match="declared twice"):
        document(route(), route(name="again"))
    other = object_body("Thing", {"name": Field(str)})
    with pytest.raises(ValueError, match="'Thing' is declared twice, differently"):
        document(
            route(body=object_body("Thing", FIELDS)),
            route(name="other", path="/v1/other", body=other),
            Items={},
        )


def test_the_lane_and_the_scopes_come_from_the_declarations() -> None:
    settings = load_settings(env={})
    issuer, verifier = create_issuer(settings), create_verifier(settings)
    assert issuer[LANE_ROUTES] == (LaneRoute("GET", "/v1/subjects/{subject}/code", "display"),)
    assert verifier[LANE_ROUTES] == (LaneRoute("POST", "/v1/verify", "verify"),)
    for app in (issuer, verifier):
        for path, operations in app[OPENAPI]["paths"].items():
            for method, operation in operations.items():
                # A public operation is one of these; every other one needs a key.
                public = path.startswith(("/pages/", "/static/")) or operation["operationId"] in {
                    "healthz", "readyz", "openapi", "trust", "revocations", "trust_signed",
                    "revocations_signed",
                }  # fmt: skip
                assert ("security" in operation) is not public, (method, path)


def test_the_document_describes_the_settings_the_app_was_built_with(tmp_path: Path) -> None:
    settings = load_settings(env={})
    shipped = settings.codes.fusion_path().read_text(encoding="utf-8")
    # The same file without its transit alias type.
    fewer = re.sub(r"(?ms)^\[aliases\.transit\].*?(?=^\[)", "", shipped)
    fusion = tmp_path / "fusion.toml"
    fusion.write_text(fewer, encoding="utf-8")
    changed = dataclasses.replace(
        settings,
        codes=dataclasses.replace(settings.codes, fusion_file=str(fusion)),
        verifier=dataclasses.replace(settings.verifier, batch_max=7),
    )
    default_types = create_issuer(settings)[OPENAPI]["components"]["schemas"]["AliasType"]
    types = create_issuer(changed)[OPENAPI]["components"]["schemas"]["AliasType"]
    assert "transit" in default_types["enum"]
    assert types["enum"] == [name for name in default_types["enum"] if name != "transit"]
    scans = create_verifier(changed)[OPENAPI]["components"]["schemas"]["ScanItems"]
    assert (scans["minItems"], scans["maxItems"]) == (1, 7)


def test_the_committed_documents_are_what_the_default_settings_build() -> None:
    from tools.openapi import main

    assert main(["--check"]) == 0, "run python -m tools.openapi"
