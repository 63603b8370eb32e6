"""The dashboard's feature views panel in headless Chromium: each view's newest event age against its TTL
(stale past it) and the rows applied, as the ``metrics`` snapshots push them; hidden without views."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import save_artifact
from tests.serving import ServeModule, ThreadedServer

VIEWS = [
    {"name": "user_stats", "entities": ["user_id"], "ttl_s": 3600, "features": {"n_reviews": "int"}},
    {"name": "merchant", "entities": ["merchant_id"], "ttl_s": 60, "features": {"risk": "float"}},
]


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
        feature_views=VIEWS,
        events={"metrics_interval_s": 0.2},
        trained=False,
    )


def test_the_panel_shows_each_views_freshness(page: Page, server: ThreadedServer) -> None:
    page.goto(server.http_url + "/")
    panel = page.get_by_test_id("features-panel")
    expect(panel).to_be_visible()
    fresh = panel.locator('tr[data-view="user_stats"]')
    expect(fresh.locator('[data-field="age"]')).to_have_text("no event yet")
    now = time.time()
    rows = [{"user_id": f"u{i}", "n_reviews": i, "event_timestamp": now - 30} for i in range(3)]
    assert (
        httpx.post(server.http_url + "/v1/features/user_stats/push", json={"rows": rows}).status_code == 200
    )
    old = [{"merchant_id": "m1", "risk": 0.2, "event_timestamp": now - 600}]
    assert httpx.post(server.http_url + "/v1/features/merchant/push", json={"rows": old}).status_code == 200
    expect(fresh.locator('[data-field="applied"]')).to_have_text("3")
    expect(fresh.locator('[data-field="age"]')).to_have_text(re.compile(r"^\d+(\.\d+)? s$"))
    expect(fresh).not_to_have_class("stale")
    stale = panel.locator('tr[data-view="merchant"]')
    expect(stale).to_have_class("stale")  # its newest event is 600 s old, its TTL 60 s
    expect(stale.locator('[data-field="ttl"]')).to_have_text("60 s")
    page.screenshot(path=save_artifact("dashboard-features.png"), full_page=True)


def test_the_panel_is_hidden_without_views(page: Page, serve_module: ServeModule) -> None:
    plain = serve_module(models=[{"name": "echo", "source": "tests.models:EchoModel"}], trained=False)
    page.goto(plain.http_url + "/")
    expect(page.locator("body")).to_have_attribute("data-metrics-events", re.compile(r"^[2-9]|\d\d"))
    expect(page.get_by_test_id("features-panel")).to_be_hidden()
