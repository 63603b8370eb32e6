"""The dashboard's queue consumer panel in headless Chromium: a Redis Streams consumer's messages/s while
messages flow, its redeliveries (an entry another consumer left pending, claimed) and dead letters, as the
``metrics`` snapshots push them; the same counts in ``/metrics``.

Redis as in the queue tests (``tests/protocols/queues/conftest.py``): skipped when unreachable, unless
``CI=true``. The panel is the same for every broker: it shows what ``LiveStats.queue`` counts.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import save_artifact
from tests.protocols.queues.conftest import REDIS_URL, _require
from tests.serving import ServeModule, ThreadedServer

TAG = uuid.uuid4().hex[:10]
STREAM = f"test-{TAG}:requests"
REPLIES = f"test-{TAG}:replies"
ECHO = [{"name": "echo", "source": "tests.models:EchoModel"}]


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    _require(REDIS_URL)
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    keys = list(connection.scan_iter(match=f"test-{TAG}:*", count=1000))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.fixture(scope="module")
def server(serve_module: ServeModule, client: redis.Redis) -> ThreadedServer:
    """A consumer of a stream of the module's own, where an entry is already pending on a consumer that
    died (``ghost``): the server's consumer claims it once idle for ``ack_wait_s``, a redelivery."""
    client.xgroup_create(STREAM, "modelwire", id="0", mkstream=True)
    client.xadd(STREAM, {"body": json.dumps({"text": "left behind"}), "reply_to": REPLIES})
    client.xreadgroup("modelwire", "ghost", {STREAM: ">"}, count=1)
    queue = {"url": REDIS_URL, "name": STREAM, "dead_letter": f"test-{TAG}:dlq", "ack_wait_s": 1.0}
    return serve_module(
        models=ECHO,
        queues=[queue],
        events={"metrics_interval_s": 0.2},
        limits={"shutdown_grace_s": 1.0},
        trained=False,
    )


def send(client: redis.Redis, body: str) -> None:
    client.xadd(STREAM, {"body": body, "reply_to": REPLIES})


def test_the_panel_shows_each_consumers_rate_redeliveries_and_dead_letters(
    page: Page, server: ThreadedServer, client: redis.Redis
) -> None:
    page.goto(server.http_url + "/")
    panel = page.get_by_test_id("consumers-panel")
    expect(panel).to_be_visible()
    row = panel.locator(f'tr[data-consumer="redis:{STREAM}"]')
    expect(row.locator(".consumer-name")).to_have_text(STREAM)
    expect(row.locator('[data-field="redelivered"]')).to_have_text("1", timeout=20_000)  # the ghost's entry

    stop = threading.Event()

    def flow() -> None:  # a steady trickle until the page showed a rate (bounded: 2,000 messages)
        for i in range(2000):
            if stop.is_set():
                return
            send(client, json.dumps({"text": f"m{i}"}))
            time.sleep(0.005)

    sender = threading.Thread(target=flow, daemon=True)
    sender.start()
    try:
        expect(row.locator('[data-field="messages_per_s"]')).not_to_have_text(re.compile(r"^0$|^\u2013$"))
    finally:
        stop.set()
        sender.join(10)
    send(client, "{not json")
    expect(row.locator('[data-field="dead_lettered"]')).to_have_text("1")
    expect(row.locator('[data-field="in_flight"]')).to_have_text("0")
    page.screenshot(path=save_artifact("dashboard-consumers.png"), full_page=True)

    metrics = httpx.get(server.http_url + "/metrics", timeout=10).text
    labels = f'broker="redis",outcome="dead_lettered",queue="{STREAM}"'
    assert f"modelwire_queue_messages_total{{{labels}}} 1.0" in metrics, metrics


def test_the_panel_is_hidden_without_consumers(page: Page, serve_module: ServeModule) -> None:
    plain = serve_module(
        events={"metrics_interval_s": 0.2},
        trained=False,
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
    )
    page.goto(plain.http_url + "/")
    expect(page.locator("body")).to_have_attribute("data-metrics-events", re.compile(r"^[2-9]|\d\d"))
    expect(page.get_by_test_id("consumers-panel")).to_be_hidden()
