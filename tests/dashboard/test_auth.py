"""The dashboard against a server with authentication on: it asks for a credential, then works.

The page keeps the credential in sessionStorage, sends it as a bearer token on fetch, and opens its
WebSocket with a short-lived handshake token (``POST /v1/auth/ws-token``), since browsers cannot set
headers on a WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from tests.dashboard.conftest import PageWatch, save_artifact
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def secured(serve_module: ServeModule) -> tuple[ThreadedServer, str]:
    data_dir = serve_module.data_dir()
    key, _record = KeyStore.in_data_dir(data_dir).create(
        [Scope.PREDICT, Scope.EVENTS, Scope.JOBS_READ, Scope.JOBS_WRITE], name="dashboard"
    )
    running = serve_module(
        data_dir=data_dir,
        auth={"mode": "on"},
        events={"metrics_interval_s": 0.2},
        limits={"shutdown_grace_s": 1.0},
    )
    return running, key


@pytest.fixture
def secured_page(browser: Browser, watch: PageWatch) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="light")
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("console", lambda m: watch.on_console(m.type, m.text))
    page.on("pageerror", lambda e: watch.page_errors.append(str(e)))
    page.on("request", lambda r: watch.on_request(r.url))
    page.on("websocket", lambda ws: watch.on_request(ws.url))
    try:
        yield page
        assert watch.page_errors == []
        assert watch.console_errors == []
        assert watch.foreign_requests == []
    finally:
        context.close()


def test_dashboard_asks_for_a_credential_then_serves_every_protocol(
    secured_page: Page, secured: tuple[ThreadedServer, str], watch: PageWatch
) -> None:
    server, key = secured
    page = secured_page
    watch.expected_statuses = {401, 403}  # 403: admin.js asks if the key may manage models; it may not
    page.goto(f"{server.http_url}/")
    form = page.get_by_test_id("auth-form")
    expect(form).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-live", "connecting")

    page.get_by_test_id("auth-credential").fill("mw_000000000000_not-a-real-key")
    form.locator("button").click()
    expect(page.get_by_test_id("auth-error")).to_contain_text("refused")
    expect(form).to_be_visible()

    page.get_by_test_id("auth-credential").fill(key)
    form.locator("button").click()
    expect(form).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-live", "ws")
    expect(page.locator('[data-testid="models-table"] tr[data-model="sentiment"]')).to_be_visible()
    # The credential stays in this tab's sessionStorage, never in a cookie the server could be sent.
    assert page.evaluate("sessionStorage.getItem('modelwire.credential')") == key
    assert all(c["value"] != key for c in page.context.cookies())

    result = page.get_by_test_id("playground-result")
    for count, protocol in enumerate(["rest", "ws", "sse"], start=1):
        page.get_by_label("Model", exact=True).select_option("sentiment")
        page.get_by_test_id(f"protocol-{protocol}").check()
        page.get_by_label("Text", exact=True).fill("a wonderful, moving film")
        page.get_by_test_id("playground-submit").click()
        expect(result).to_have_attribute("data-count", str(count))
        expect(result).to_contain_text("positive")
    page.screenshot(path=save_artifact("dashboard-auth.png"), full_page=True)


def test_status_badge_asks_to_sign_in_until_a_key_is_given(
    secured_page: Page, secured: tuple[ThreadedServer, str], watch: PageWatch
) -> None:
    server, key = secured
    page = secured_page
    watch.expected_statuses = {401, 403}  # 403: admin.js asks if the key may manage models; it may not
    page.goto(f"{server.http_url}/")
    badge = page.get_by_test_id("live-status")
    form = page.get_by_test_id("auth-form")
    expect(form).to_be_visible()
    expect(badge).to_have_text("sign in to go live")

    page.get_by_test_id("auth-credential").fill("mw_000000000000_not-a-real-key")
    form.locator("button").click()
    expect(page.get_by_test_id("auth-error")).to_contain_text("refused")
    expect(badge).to_have_text("sign in to go live")

    page.get_by_test_id("auth-credential").fill(key)
    form.locator("button").click()
    expect(form).to_be_hidden()
    expect(badge).to_have_text("live over WebSocket")
