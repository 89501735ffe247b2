"""Fixtures of the page tests: one issuer and one verifier process, one headless chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from codeengine.ops.devcluster import DevCluster
from tests.browser.pagekit import PHONE, Service, launch, service

DISPLAY_TTL_S = 10
"""The shortest display lifetime the settings allow: the page must refresh within 5 s."""


@pytest.fixture(scope="module")
def issuer(
    cluster: DevCluster, key_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """An issuer worker handing out short-lived codes, its metrics in multiprocess files."""
    logs = tmp_path_factory.mktemp("page-issuer")
    settings = {
        **key_files,
        **cluster.client_settings(),
        "codes_display_ttl_s": str(DISPLAY_TTL_S),
        "codes_keyring_refresh_s": "0.2",
    }
    metrics = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("page-issuer-metrics"))}
    with service("issuer", logs, settings, metrics) as started:
        yield started


@pytest.fixture(scope="module")
def verifier(
    issuer: Service,
    cluster: DevCluster,
    key_files: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """A verifier worker (after the issuer, which publishes the trust list it needs)."""
    logs = tmp_path_factory.mktemp("page-verifier")
    settings = {**key_files, **cluster.client_settings()}
    with service("verifier", logs, settings) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium for the module."""
    with sync_playwright() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh context per test: no storage, cookies or cache shared between tests."""
    fresh = browser.new_context(viewport=PHONE, locale="zh-CN")
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def script_errors() -> list[str]:
    """Uncaught script errors of the test's page; the tests assert there were none."""
    return []


@pytest.fixture
def page(context: BrowserContext, script_errors: list[str]) -> Page:
    """A page of the fresh context, collecting its uncaught script errors."""
    opened = context.new_page()
    opened.on("pageerror", lambda exc: script_errors.append(str(exc)))
    opened.set_default_timeout(10_000)
    return opened
