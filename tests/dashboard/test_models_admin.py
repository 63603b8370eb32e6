"""The models panel's admin actions in headless Chromium: shown to a credential with ``models:admin``
(here: authentication off on loopback), hidden to one without; make a version the default, unload and
load it, roll back — each through the page, checked on the server too."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from tests.dashboard.conftest import PageWatch, save_artifact
from tests.serving import ServeModule, ThreadedServer


def two_versions(serve_module: ServeModule) -> Path:
    data_dir = serve_module.data_dir()
    folder = data_dir / "models" / "sentiment"
    shutil.copytree(folder / "1", folder / "2")
    meta = json.loads((folder / "2" / "metadata.json").read_text())
    meta["version"] = "2"
    (folder / "2" / "metadata.json").write_text(json.dumps(meta))
    return data_dir


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(data_dir=two_versions(serve_module), events={"metrics_interval_s": 0.2})


def state(server: ThreadedServer) -> dict[str, object]:
    return dict(httpx.get(f"{server.http_url}/v1/admin/models/sentiment", timeout=10).json())


def test_admin_actions_from_the_models_panel(page: Page, server: ThreadedServer, watch: PageWatch) -> None:
    watch.expected_statuses.add(409)  # the last rollback is refused, on purpose
    page.goto(server.http_url + "/")
    panel = page.get_by_test_id("models-admin")
    expect(panel).to_be_visible()
    status = page.get_by_test_id("admin-status")
    expect(status).to_contain_text("sentiment: default v2")
    row = page.locator('tr[data-model="sentiment"]')
    expect(row.locator(".version.default")).to_have_text("v2")

    page.get_by_test_id("admin-version").select_option("1")
    page.get_by_test_id("admin-default").click()
    expect(status).to_contain_text("sentiment: default v1")
    expect(row.locator(".version.default")).to_have_text("v1")
    assert state(server)["default_version"] == "1"

    page.get_by_test_id("admin-version").select_option("2")
    page.get_by_test_id("admin-unload").click()
    expect(status).to_contain_text("v2 unavailable")
    page.get_by_test_id("admin-load").click()
    expect(status).to_contain_text("v2 ready")

    page.get_by_test_id("admin-rollback").click()
    expect(status).to_contain_text("sentiment: default v2")
    expect(row.locator(".version.default")).to_have_text("v2")
    page.screenshot(path=save_artifact("dashboard-models-admin.png"), full_page=True)

    page.get_by_test_id("admin-rollback").click()  # nothing to go back to: the server's reason is shown
    expect(status).to_contain_text("no previous default")
    expect(status).to_have_class("muted small error")


def test_the_admin_line_follows_changes_made_elsewhere(page: Page, server: ThreadedServer) -> None:
    """A default switched through the API (not the page) reaches the panel through the live feed."""
    page.goto(server.http_url + "/")
    status = page.get_by_test_id("admin-status")
    expect(status).to_contain_text("sentiment: default v")
    before = str(state(server)["default_version"])
    after = "1" if before == "2" else "2"
    url = f"{server.http_url}/v1/admin/models/sentiment/default"
    try:
        assert httpx.put(url, json={"version": after}, timeout=10).status_code == 200
        expect(status).to_contain_text(f"sentiment: default v{after}")
        assert page.get_by_test_id("admin-version").locator(f'option[value="{after}"]').count() == 1
    finally:
        assert httpx.put(url, json={"version": before}, timeout=10).status_code == 200
    expect(status).to_contain_text(f"sentiment: default v{before}")


@pytest.fixture(scope="module")
def secured(serve_module: ServeModule) -> tuple[ThreadedServer, str]:
    data_dir = serve_module.data_dir()
    key, _ = KeyStore.in_data_dir(data_dir).create(
        [Scope.PREDICT, Scope.EVENTS, Scope.JOBS_READ], name="viewer"
    )
    return serve_module(data_dir=data_dir, auth={"mode": "on"}, events={"metrics_interval_s": 0.2}), key


@pytest.fixture
def viewer_page(browser: Browser, watch: PageWatch) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda e: watch.page_errors.append(str(e)))
    try:
        yield page
        assert watch.page_errors == []
    finally:
        context.close()


def test_the_actions_stay_hidden_without_models_admin(
    viewer_page: Page, secured: tuple[ThreadedServer, str]
) -> None:
    server, key = secured
    viewer_page.goto(server.http_url + "/")
    viewer_page.get_by_test_id("auth-credential").fill(key)
    viewer_page.get_by_test_id("auth-form").locator("button").click()
    expect(viewer_page.locator('tr[data-model="sentiment"]')).to_be_visible()  # signed in: the page works
    expect(viewer_page.get_by_test_id("models-admin")).to_be_hidden()
