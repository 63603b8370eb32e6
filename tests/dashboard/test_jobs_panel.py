"""The dashboard's jobs panel in headless Chromium: submit a batch from the page and watch its progress bar
move with pushed events (WebSocket, or SSE) to done; jobs submitted elsewhere appear live; cancel; errors.

Every test fails on a console error, an uncaught page error or a request to a non-loopback host (the
``page`` fixture). Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from playwright.sync_api import Locator, Page, expect

from modelwire import Client, Datatype, Model, TensorSpec
from tests.dashboard.conftest import PageWatch, save_artifact
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer


class StepModel(Model):
    """Echoes, one permit of ``steps`` per row: the test lets rows through a few at a time."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "step", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.steps = threading.Semaphore(0)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        for _ in batch:
            if not self.steps.acquire(timeout=60):
                raise TimeoutError("the test never let this row through")
        return [{"echo": item} for item in batch]


@pytest.fixture(scope="module")
def step() -> StepModel:
    return StepModel()


@pytest.fixture(scope="module")
def server(serve_module: ServeModule, step: StepModel) -> Iterator[ThreadedServer]:
    """Overrides the folder's: two rows per job batch, progress after each."""
    yield serve_module(
        EchoModel("echo"),
        step,
        events={"metrics_interval_s": 0.2},
        jobs={"batch_size": 2, "progress_interval_ms": 0},
        limits={"shutdown_grace_s": 1.0},
    )
    for _ in range(1000):
        step.steps.release()  # nothing stays blocked when serve_module stops it


def open_dashboard(page: Page, server: ThreadedServer, live: str) -> Locator:
    page.goto(f"{server.http_url}/{'?via=sse' if live == 'sse' else ''}")
    expect(page.locator("body")).to_have_attribute("data-live", live)  # subscribed to jobs/* by now
    panel = page.get_by_test_id("jobs-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("jobs-model").locator("option[value=step]")).to_be_attached()
    return panel


def submit_batch(page: Page, model: str, texts: Sequence[str]) -> None:
    page.get_by_test_id("jobs-model").select_option(model)
    page.get_by_test_id("jobs-texts").fill("\n".join(texts))
    page.get_by_test_id("jobs-submit").click()


def newest_row(page: Page) -> Locator:
    return page.get_by_test_id("jobs-list").get_by_test_id("job-row").first


@pytest.mark.parametrize("live", ["ws", "sse"])
def test_submit_a_batch_and_watch_it_finish(
    page: Page, server: ThreadedServer, step: StepModel, live: str
) -> None:
    panel = open_dashboard(page, server, live)
    submit_batch(page, "step", ["first", "second", "  ", "third", "fourth"])  # the blank line is no row
    row = newest_row(page)
    bar = row.get_by_test_id("job-progress")
    expect(row.get_by_test_id("job-count")).to_have_text("0/4")
    expect(page.get_by_test_id("jobs-texts")).to_have_value("")

    step.steps.release(2)  # one batch of two rows: the bar moves to half, pushed
    expect(bar).to_have_attribute("aria-valuenow", "50")
    expect(row).to_have_attribute("data-status", "running")
    expect(row.get_by_test_id("job-count")).to_have_text("2/4")

    step.steps.release(2)
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(row.get_by_test_id("job-count")).to_have_text("4/4")
    expect(row.get_by_test_id("job-status")).to_have_text("succeeded")
    assert int(row.get_attribute("data-events") or 0) >= 3  # running, progress, succeeded at least
    fill = bar.locator(".job-progress-fill")
    page.wait_for_function(  # the bar's width eases in: let it arrive before the screenshot
        "([fill, bar]) => fill.getBoundingClientRect().width >= bar.getBoundingClientRect().width - 0.5",
        arg=[fill.element_handle(), bar.element_handle()],
    )
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=save_artifact(f"dashboard-jobs-{live}.png"))

    job_id = row.get_attribute("data-job-id")
    with Client(server.http_url) as client:
        results = list(client.job(str(job_id)).results())
    assert [r.result.output["echo"] for r in results] == ["first", "second", "third", "fourth"]  # type: ignore[union-attr]


def test_jobs_from_elsewhere_appear_live_and_cancel_from_the_page(page: Page, server: ThreadedServer) -> None:
    open_dashboard(page, server, "ws")
    with Client(server.grpc_url) as client:
        job = client.submit_job(["one", "two"], model="step")  # waits at the model: running, 0/2
        row = page.locator(f'[data-testid="job-row"][data-job-id="{job.id}"]')
        expect(row).to_be_visible()
        expect(row).to_have_attribute("data-status", "running")
        row.get_by_test_id("job-cancel").click()
        expect(row).to_have_attribute("data-status", "cancelled")
        expect(row.get_by_test_id("job-cancel")).to_be_hidden()
        assert job.status().status == "cancelled"


def test_a_refused_batch_shows_the_servers_error(
    page: Page, server: ThreadedServer, watch: PageWatch
) -> None:
    open_dashboard(page, server, "ws")
    watch.expected_statuses.add(400)
    rows_before = page.get_by_test_id("job-row").count()
    submit_batch(page, "echo", ["   ", ""])  # lines, but no text in any
    error = page.get_by_test_id("jobs-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("INVALID_ARGUMENT")
    expect(error).to_contain_text("no rows")
    assert page.get_by_test_id("job-row").count() == rows_before


def test_event_log_shows_readable_lines(page: Page, server: ThreadedServer) -> None:
    open_dashboard(page, server, "ws")
    log = page.get_by_test_id("event-log")
    submit_batch(page, "echo", ["one", "two"])
    row = newest_row(page)
    expect(row).to_have_attribute("data-status", "succeeded")
    job_id = row.get_attribute("data-job-id")
    assert job_id

    succeeded = log.locator('li[data-type="job.succeeded"]').first
    expect(succeeded.locator(".e-type")).to_have_text("job.succeeded")
    expect(succeeded.locator(".e-data")).to_have_text(f"job {job_id[:8]} · succeeded · 2/2 rows · echo")
    expect(succeeded.locator(".e-time")).to_have_text(re.compile(r"^\d{2}:\d{2}:\d{2}$"))

    assert server.server is not None
    assert server.server.services is not None
    bus = server.server.services.events
    server._call(lambda: bus.publish("server", "server.ready", {"ready": True}))
    server._call(
        lambda: bus.publish("models", "model.loaded", {"name": "extra", "version": "7", "ready": False})
    )
    expect(log.locator('li[data-type="server.ready"] .e-data')).to_have_text("ready")
    expect(log.locator('li[data-type="model.loaded"] .e-data')).to_have_text("extra v7 (not ready)")

    text = log.inner_text()
    assert '{"' not in text, text
    log.scroll_into_view_if_needed()
    log.screenshot(path=save_artifact("dashboard-event-log.png"))
