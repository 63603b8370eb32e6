"""The dashboard's alerts panel in headless Chromium: a latency objective breached by a slow model shows as
a firing alert, pushed over the live feed (WebSocket, or SSE), and leaves the list when it resolves.

Every test fails on a console error, an uncaught page error or a request to a non-loopback host (the
``page`` fixture). Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import save_artifact
from tests.models import SlowModel
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def slow() -> SlowModel:
    return SlowModel("slow", delay_s=0.0)


@pytest.fixture(scope="module")
def server(serve_module: ServeModule, slow: SlowModel) -> ThreadedServer:
    """Overrides the folder's: a latency rule on ``slow`` over its last 3 requests, computed every 0.2 s."""
    return serve_module(
        slow,
        monitoring={"interval_s": 0.2, "default_rules": False},
        alerts=[
            {
                "name": "slow-latency",
                "monitor": "latency_p99",
                "model": "slow",
                "threshold": 0.1,
                "window": 3,
                "severity": "critical",
                "summary": "the slow model is slow",
            }
        ],
    )


def send(server: ThreadedServer, n: int) -> None:
    for _ in range(n):
        assert httpx.post(
            f"{server.http_url}/v1/models/slow/predict", json={"text": "hi"}, timeout=30
        ).is_success


@pytest.mark.parametrize("live", ["ws", "sse"])
def test_a_firing_alert_shows_and_resolves(
    page: Page, server: ThreadedServer, slow: SlowModel, live: str
) -> None:
    page.goto(f"{server.http_url}/{'?via=sse' if live == 'sse' else ''}")
    expect(page.locator("body")).to_have_attribute("data-live", live)
    panel = page.get_by_test_id("alerts-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("alerts-empty")).to_be_visible()

    slow.options["delay_s"] = 0.15
    send(server, 3)
    row = page.locator('[data-testid="alert-row"][data-name="slow-latency"]')
    expect(row).to_have_attribute("data-state", "firing", timeout=30_000)
    expect(row.get_by_test_id("alert-state")).to_have_text("firing")
    expect(row).to_contain_text("slow 1 · latency_p99")
    expect(row.get_by_test_id("alert-value")).to_contain_text("> 0.100")
    expect(page.get_by_test_id("alerts-empty")).to_be_hidden()
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=save_artifact(f"dashboard-alerts-{live}.png"))

    slow.options["delay_s"] = 0.0
    send(server, 3)
    expect(row).to_have_count(0, timeout=30_000)
    expect(page.get_by_test_id("alerts-resolved")).to_contain_text("slow-latency")
    expect(page.get_by_test_id("alerts-empty")).to_be_visible()


def test_an_alert_firing_before_the_page_opened_is_listed(
    page: Page, server: ThreadedServer, slow: SlowModel
) -> None:
    slow.options["delay_s"] = 0.15
    try:
        send(server, 3)
        with httpx.Client(base_url=server.http_url) as client:
            deadline = 0
            while not any(a["state"] == "firing" for a in client.get("/v1/alerts").json()["alerts"]):
                deadline += 1
                assert deadline < 600, "the alert never fired"
                page.wait_for_timeout(50)
        page.goto(server.http_url)
        row = page.locator('[data-testid="alert-row"][data-name="slow-latency"]')
        expect(row).to_have_attribute("data-state", "firing")
    finally:
        slow.options["delay_s"] = 0.0
        send(server, 3)
