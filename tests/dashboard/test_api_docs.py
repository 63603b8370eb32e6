"""``/docs`` in headless Chromium with the network closed: Swagger UI comes from the package, not a CDN.

Every request to a host other than this machine is aborted (as on a machine with no network), and the
``page`` fixture fails the test on a console error (a Content-Security-Policy violation is one), an
uncaught error, or any attempt to reach another host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page, Route, expect

from modelwire.protocols.http.rest.dashboard import CONTENT_SECURITY_POLICY
from tests.dashboard.conftest import LOOPBACK, PageWatch, save_artifact
from tests.serving import ThreadedServer


def _offline(route: Route) -> None:
    if urlsplit(route.request.url).hostname in LOOPBACK:
        route.continue_()
    else:
        route.abort("internetdisconnected")


def test_docs_render_the_operations_offline(page: Page, server: ThreadedServer, watch: PageWatch) -> None:
    page.context.route("**/*", _offline)
    page.goto(f"{server.http_url}/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/v1/models/{name}/predict").first).to_be_visible()
    assert operations.count() >= 10
    expect(page.locator(".info .title")).to_contain_text("modelwire")
    page.screenshot(path=save_artifact("api-docs.png"), full_page=False)
    assert watch.foreign_requests == []
    assert all(urlsplit(url).hostname in LOOPBACK for url in watch.requests)


def test_docs_and_assets_carry_the_dashboard_policy(server: ThreadedServer) -> None:
    page = httpx.get(f"{server.http_url}/docs", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "cdn" not in page.text.lower()
    for path in [part.split('"')[0] for part in page.text.split('src="')[1:]]:
        asset = httpx.get(server.http_url + path, timeout=10)
        assert asset.status_code == 200, path
        assert asset.headers["content-type"].startswith("text/javascript")
        assert asset.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "immutable" in asset.headers["cache-control"]
    missing = httpx.get(f"{server.http_url}/docs/assets/nope.js", timeout=10)
    assert missing.status_code == 404
