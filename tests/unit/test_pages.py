"""The pages' static folder: city names the same as the city table, asset names it can serve."""

from __future__ import annotations

import re

import pytest

from codeengine.code.cities import load_cities
from codeengine.web.pages import SECURITY_HEADERS, STATIC_DIR, static_route

CITY_ENTRY = re.compile(r'(\d{6}): \["([^"]+)", "([^"]+)"\]')


def test_the_pages_name_every_city_as_the_city_table_does() -> None:
    script = (STATIC_DIR / "common.js").read_text()
    in_pages = {int(code): (zh, en) for code, zh, en in CITY_ENTRY.findall(script)}
    table = {int(code): (city.name, city.name_en) for code, city in load_cities().items()}
    assert in_pages == table


def test_every_asset_a_page_links_is_served_by_its_service() -> None:
    from issuer.app import ISSUER_ASSETS
    from verifier.app import VERIFIER_ASSETS

    for served, pages in (
        (ISSUER_ASSETS, ("display.html", "ops.html")),
        (VERIFIER_ASSETS, ("terminal.html",)),
    ):
        for page in pages:
            linked = set(re.findall(r'"/static/([^"]+)"', (STATIC_DIR / page).read_text()))
            assert linked and linked <= set(served), (page, linked - set(served))


def test_asset_names_outside_the_pattern_or_missing_stop_the_service_at_start() -> None:
    with pytest.raises(ValueError, match="does not match"):
        static_route(("../pages.py",))
    with pytest.raises(FileNotFoundError):
        static_route(("missing.js",))


def test_pages_allow_only_their_own_origin_and_no_inline_script() -> None:
    policy = dict(part.strip().split(" ", 1) for part in SECURITY_HEADERS[
        "Content-Security-Policy"].split(";"))  # fmt: skip
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    for html in STATIC_DIR.glob("*.html"):
        text = html.read_text()
        assert "<script>" not in text and " style=" not in text and "onclick" not in text, html
