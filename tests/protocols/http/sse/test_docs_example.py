"""docs/examples/follow_events.py, the SSE client the docs show, against a real server."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from modelwire.app.lifecycle import Server
from modelwire.events.bus import LocalEventBus
from tests.protocols.http.sse.conftest import wait_until

EXAMPLE = Path(__file__).resolve().parents[4] / "docs" / "examples" / "follow_events.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("follow_events", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_follow_yields_events_and_resumes_after_a_given_id(
    example: ModuleType, live: Server, bus: LocalEventBus
) -> None:
    url = f"http://127.0.0.1:{live.http_port}"
    events = example.follow(url, ["jobs/doc"])
    first = asyncio.ensure_future(anext(events))
    await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
    published = [await bus.publish("jobs/doc", "job.progress", {"step": n}) for n in range(3)]
    ids = [e.id for e in published if e is not None]
    got = [await first, await anext(events), await anext(events)]
    await events.aclose()
    assert [(e["id"], e["type"], e["data"]) for e in got] == [
        (ids[n], "job.progress", {"step": n}) for n in range(3)
    ]
    resumed = example.follow(url, ["jobs/doc"], last_event_id=str(ids[0]))
    assert [(await anext(resumed))["id"], (await anext(resumed))["id"]] == ids[1:]
    await resumed.aclose()


async def test_follow_reports_a_reset(example: ModuleType, live: Server) -> None:
    events = example.follow(f"http://127.0.0.1:{live.http_port}", ["server"], last_event_id="foreign")
    reset = await anext(events)
    await events.aclose()
    assert reset["type"] == "reset"
    assert reset["data"]["last_event_id"] == "foreign"
