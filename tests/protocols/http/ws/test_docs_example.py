"""docs/examples/ws_pipeline.py, the WebSocket client the docs show, against a real server."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

from tests.protocols.http.ws.conftest import ws_url
from tests.serving import ThreadedServer

EXAMPLE = Path(__file__).resolve().parents[4] / "docs" / "examples" / "ws_pipeline.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ws_pipeline", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_predict_all(server: ThreadedServer) -> None:
    example = load_example()
    texts = ["I love this product", "An awful, boring film."] * 50
    answers = await example.predict_all(ws_url(server), texts)
    assert [answers[i]["sentiment"] for i in range(len(texts))] == ["positive", "negative"] * 50
    echoed = await example.predict_all(ws_url(server), ["ok", "bad"], model="echo")
    assert echoed[0] == {"echo": "ok", "length": 2, "version": "1"}
    assert echoed[1]["error"]["code"] == "INVALID_ARGUMENT"


async def test_watch_models(server: ThreadedServer) -> None:
    example = load_example()
    assert server.server is not None
    assert server.server.services is not None
    bus = server.server.services.events
    watching = asyncio.create_task(example.watch_models(ws_url(server), 2))
    while not watching.done() and bus.subscriber_count == 0:
        await asyncio.sleep(0.01)
    for version in ("7", "8"):
        server._call(lambda v=version: bus.publish("models", "model.loaded", {"name": "m", "version": v}))
    events = await asyncio.wait_for(watching, 10)
    assert [e["data"]["version"] for e in events] == ["7", "8"]
