"""The dashboard in headless Chromium: playground over REST, WebSocket and SSE, live charts, models, events.

Every test fails on a console error, an uncaught page error or a request to a non-loopback host (see the
``page`` fixture). Screenshots go to ``tests/artifacts/`` and are listed at the end of the run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from modelwire import Client
from tests.dashboard.conftest import PageWatch, save_artifact
from tests.serving import ThreadedServer

LABELS = {"rest": "REST", "ws": "WebSocket", "sse": "SSE"}


def open_dashboard(page: Page, server: ThreadedServer, query: str = "", live: str = "ws") -> None:
    page.goto(f"{server.http_url}/{query}")
    expect(page.locator("body")).to_have_attribute("data-live", live)
    expect(page.locator('[data-testid="models-table"] tr[data-model="sentiment"]')).to_be_visible()


def predict(page: Page, protocol: str, text: str, model: str = "sentiment") -> None:
    """Send one prediction from the playground and wait for its answer (or error) to be shown."""
    result = page.get_by_test_id("playground-result")
    before = int(result.get_attribute("data-count") or 0)
    page.get_by_label("Model", exact=True).select_option(model)
    page.get_by_test_id(f"protocol-{protocol}").check()
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_test_id("playground-submit").click()
    expect(result).to_have_attribute("data-count", str(before + 1))


def metrics_events(page: Page) -> int:
    return int(page.locator("body").get_attribute("data-metrics-events") or 0)


def chart_points(page: Page, chart: str) -> int:
    return int(page.get_by_test_id(chart).get_attribute("data-points") or 0)


def predict_paths(watch: PageWatch) -> list[str]:
    return [urlsplit(url).path for url in watch.requests if "/predict" in url]


@pytest.mark.parametrize("protocol", ["rest", "ws", "sse"])
def test_playground_predicts_over_each_protocol(
    page: Page, server: ThreadedServer, watch: PageWatch, protocol: str
) -> None:
    open_dashboard(page, server)
    result = page.get_by_test_id("playground-result")

    predict(page, protocol, "I love this product, it is wonderful")
    expect(result).to_have_attribute("data-state", "done")
    assert page.get_by_test_id("result-sentiment").text_content() == "positive"
    expect(page.get_by_test_id("result-confidence")).to_have_text(re.compile(r"^\d{1,3}\.\d%$"))
    expect(page.get_by_test_id("result-rtt")).to_have_text(re.compile(r"^[\d.]+ ms$"))
    expect(page.get_by_test_id("result-protocol")).to_have_text(LABELS[protocol])

    predict(page, protocol, "Terrible. A complete waste of money, awful and boring.")
    assert page.get_by_test_id("result-sentiment").text_content() == "negative"

    # A model with another output shape shows its raw output.
    predict(page, protocol, "hello there", model="echo")
    expect(result).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("result-output")).to_contain_text('"echo": "hello there"')

    # The server's error reaches the page with its code (the echo model refuses "bad").
    watch.expected_statuses.add(400)  # REST answers the refusal with HTTP 400
    predict(page, protocol, "bad", model="echo")
    expect(result).to_have_attribute("data-state", "error")
    expect(page.get_by_test_id("result-error")).to_contain_text("INVALID_ARGUMENT")

    expect(page.get_by_test_id("playground-history").locator("li")).to_have_count(4)
    # The playground really used the chosen wire.
    paths = predict_paths(watch)
    if protocol == "rest":
        assert paths.count("/v1/models/sentiment/predict") == 2
    elif protocol == "sse":
        assert paths.count("/v1/models/sentiment/predict/stream") == 2
    else:
        assert paths == []
        assert any(urlsplit(url).path == "/v1/ws" for url in watch.requests)


@contextmanager
def load(server: ThreadedServer) -> Iterator[None]:
    """REST and gRPC requests in the background until the block ends."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def rest() -> None:
        try:
            with httpx.Client(base_url=server.http_url) as client:
                while not stop.is_set():
                    client.post("/v1/models/sentiment/predict", json={"text": "good"}).raise_for_status()
        except BaseException as exc:
            failures.append(exc)

    def grpc() -> None:
        try:
            with Client(server.grpc_url) as client:
                while not stop.is_set():
                    client.predict("good")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=rest), threading.Thread(target=grpc)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []


def test_live_charts_move_under_load(page: Page, server: ThreadedServer) -> None:
    open_dashboard(page, server)
    page.wait_for_function("() => Number(document.body.dataset.metricsEvents) >= 2")
    before = chart_points(page, "chart-throughput")
    with load(server):
        for chart in ("chart-rest-rps", "chart-grpc-rps"):
            page.wait_for_function(
                "id => Number(document.querySelector(`[data-testid=${id}]`).dataset.latest) > 0", arg=chart
            )
        expect(page.get_by_test_id("kpi-rps")).not_to_have_text(re.compile("^(0|\u2013)$"))
        expect(page.get_by_test_id("tile-rest").locator(".tile-p99")).to_have_text(re.compile(r"ms$"))
        # Enough points for a readable picture, and a filled-in playground.
        page.wait_for_function(
            "n => Number(document.querySelector('[data-testid=chart-throughput]').dataset.points) >= n",
            arg=before + 12,
        )
        predict(page, "ws", "I love this product, it works perfectly")
        # The same page in both themes, while the charts are busy.
        light = save_artifact("dashboard-light.png")
        page.screenshot(path=str(light), full_page=True, animations="disabled")
        page.emulate_media(color_scheme="dark")
        dark = save_artifact("dashboard-dark.png")
        page.screenshot(path=str(dark), full_page=True, animations="disabled")
    print(f"screenshots: {light} {dark}")
    assert light.stat().st_size > 10_000
    assert dark.stat().st_size > 10_000
    label = page.get_by_test_id("chart-rest-rps").get_attribute("aria-label") or ""
    assert label.startswith("REST requests per second: req/s")


def test_models_table_and_pushed_events(page: Page, server: ThreadedServer) -> None:
    open_dashboard(page, server)
    table = page.get_by_test_id("models-table")
    expect(table.locator('tr[data-model="sentiment"] .version.ready')).to_have_count(1)
    expect(table.locator('tr[data-model="echo"] .version.ready')).to_have_text(["v1"])
    expect(page.get_by_test_id("kpi-models")).to_have_text("2")
    expect(page.get_by_label("Model", exact=True).locator("option")).to_have_text(["echo", "sentiment"])
    assert page.get_by_label("Model", exact=True).input_value() == "sentiment"

    assert server.server is not None
    assert server.server.services is not None
    bus = server.server.services.events
    server._call(
        lambda: bus.publish("models", "model.loaded", {"name": "extra", "version": "7", "ready": True})
    )
    entry = page.get_by_test_id("event-log").locator('li[data-type="model.loaded"]')
    expect(entry).to_contain_text("extra v7")
    expect(entry).to_have_count(1)
    # Counted too; the server's own events (an alert from the load of an earlier test) may come as well.
    expect(page.get_by_test_id("event-count")).to_have_text(re.compile(r"^[1-9]\d* received$"))
    connected = page.get_by_test_id("event-log").locator('li[data-type="connected"]')
    expect(connected).to_contain_text("live over WebSocket")


def test_falls_back_to_sse_when_websocket_fails(page: Page, server: ThreadedServer) -> None:
    def refuse(ws: WebSocketRoute) -> None:
        ws.close(code=1011, reason="refused by the test")

    page.route_web_socket(re.compile(r"/v1/ws$"), refuse)
    open_dashboard(page, server, live="sse")
    seen = metrics_events(page)
    page.wait_for_function("n => Number(document.body.dataset.metricsEvents) > n", arg=seen)
    expect(page.get_by_test_id("live-status")).to_contain_text("SSE")


def test_sse_can_be_chosen_with_via(page: Page, server: ThreadedServer, watch: PageWatch) -> None:
    open_dashboard(page, server, query="?via=sse", live="sse")
    page.wait_for_function("() => Number(document.body.dataset.metricsEvents) >= 2")
    assert any(urlsplit(url).path == "/v1/events" for url in watch.requests)
    assert not any(urlsplit(url).path == "/v1/ws" for url in watch.requests)
