"""The models panel's memory budget in headless Chromium (docs/admin.md, "Memory budget"): the budget, what
is used, each version's measured size, last use and pin, updated live from the ``models`` events as calls
bring unloaded models back; pin and unpin through the page, checked on the server too (a pinned model is
never unloaded). Hidden on a server without a budget. Four ``Sized`` models (tests/protocols/
test_memory_budget.py) of which two fit beside the pinned one in 10 MiB."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import PageWatch, save_artifact
from tests.protocols.test_memory_budget import spec
from tests.serving import ServeModule, ThreadedServer

MIB = 1 << 20


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    models = [spec("pinned", 1, pinned=True), spec("a", 4), spec("b", 4), spec("c", 4)]
    return serve_module(
        models=models,
        memory_budget="10MiB",
        batching={"enabled": False},
        events={"metrics_interval_s": 0.2},
    )


def memory(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/v1/admin/memory")
    assert answer.status_code == 200, answer.text
    return {m["name"]: m for m in answer.json()["models"]}


def call(client: httpx.Client, name: str) -> None:
    answer = client.post(f"/v1/models/{name}/predict", json={"instance": "x"})
    assert answer.status_code == 200, answer.text


def test_the_memory_budget_in_the_models_panel(page: Page, server: ThreadedServer, watch: PageWatch) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        page.goto(server.http_url + "/")
        panel = page.get_by_test_id("models-memory")
        expect(panel).to_be_visible()
        expect(page.get_by_test_id("memory-summary")).to_contain_text("used of 10.0 MiB")
        rows = {name: panel.locator(f'tr[data-model="{name}"]') for name in ("pinned", "a", "b", "c")}
        for row in rows.values():
            expect(row).to_have_count(1)
        expect(rows["pinned"].locator(".memory-pinned")).to_contain_text("pinned")
        expect(rows["pinned"].get_by_test_id("memory-pin")).to_have_text("Unpin")

        state = memory(client)
        unloaded = next(name for name in ("a", "b", "c") if state[name]["state"] != "ready")
        expect(rows[unloaded].locator(".memory-state")).to_have_text("unloaded by budget")
        # a call brings it back: the models events update the panel, with its size and last use
        call(client, unloaded)
        expect(rows[unloaded].locator(".memory-state")).to_have_text("ready")
        size = memory(client)[unloaded]["size_bytes"]
        expect(rows[unloaded].locator(".memory-size")).to_have_text(f"{size / MIB:.1f} MiB")
        expect(rows[unloaded].locator(".memory-last-used")).not_to_have_text("never")
        evicted = next(name for name, m in memory(client).items() if m["state"] != "ready")
        expect(rows[evicted].locator(".memory-state")).to_have_text("unloaded by budget")

        # pin the model just brought back through the page: the others' calls never unload it
        rows[unloaded].get_by_test_id("memory-pin").click()
        expect(rows[unloaded].get_by_test_id("memory-pin")).to_have_text("Unpin")
        expect(page.get_by_test_id("memory-status")).to_contain_text(f"{unloaded}: pinned")
        assert client.get(f"/v1/admin/models/{unloaded}").json()["pinned"] is True
        for name in ("a", "b", "c", "a", "b", "c"):
            call(client, name)
            assert memory(client)[unloaded]["state"] == "ready"
        expect(rows[unloaded].locator(".memory-state")).to_have_text("ready")
        page.screenshot(path=save_artifact("dashboard-memory-budget.png"), full_page=True)

        rows[unloaded].get_by_test_id("memory-pin").click()
        expect(rows[unloaded].get_by_test_id("memory-pin")).to_have_text("Pin")
        assert client.get(f"/v1/admin/models/{unloaded}").json()["pinned"] is False


def test_no_memory_panel_without_a_budget(page: Page, serve_module: ServeModule) -> None:
    plain = serve_module(events={"metrics_interval_s": 0.2})
    page.goto(plain.http_url + "/")
    expect(page.locator('tr[data-model="sentiment"]')).to_be_visible()
    expect(page.get_by_test_id("models-admin")).to_be_visible()  # the admin actions are there
    expect(page.get_by_test_id("models-memory")).to_be_hidden()
