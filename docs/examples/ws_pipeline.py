"""Many predictions in flight on one WebSocket, answers matched by id, and live events on the same socket.

    answers = await predict_all("ws://127.0.0.1:8000/v1/ws", ["I love it", "Awful."])
    # {0: {"sentiment": "positive", ...}, 1: {"sentiment": "negative", ...}}

Every text is sent at once, without waiting: the server answers each as soon as it is ready (not in the order
sent), so replies are matched to requests by ``id``. The server reads at most ``ws.max_inflight`` (64) of
a socket's requests at a time; past that, ``send`` simply waits (TCP backpressure), so sending everything up
front is safe. Messages the client does not know (``{"op": "ping"}`` keep-alives) are skipped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import connect


async def predict_all(url: str, texts: Sequence[str], *, model: str | None = None) -> dict[int, Any]:
    """``{index: answer}`` for every text; an answer is the model's output, or ``{"error": {...}}``."""
    answers: dict[int, Any] = {}
    async with connect(url, subprotocols=["modelwire.v1.json"]) as ws:

        async def send_all() -> None:
            for i, text in enumerate(texts):
                message = {"id": i, "op": "predict", "text": text}
                if model:
                    message["model"] = model
                await ws.send(json.dumps(message))

        sending = asyncio.create_task(send_all())
        while len(answers) < len(texts):
            reply = json.loads(await ws.recv())
            if reply.get("op") == "error" and reply["id"] is not None:
                answers[reply["id"]] = {"error": reply["error"]}
            elif "op" not in reply:  # a prediction: the output, the request's id, the version that answered
                answers[reply.pop("id")] = reply
        await sending
    return answers


async def watch_models(url: str, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events on the ``models`` topic (subscribe, read, unsubscribe)."""
    events: list[dict[str, Any]] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "models", "id": "sub"}))
        while len(events) < count:
            message = json.loads(await ws.recv())
            if message.get("op") == "event":
                events.append(message)
        await ws.send(json.dumps({"op": "unsubscribe", "topic": "models"}))
    return events


if __name__ == "__main__":
    texts = ["I love this product", "An awful, boring film.", "Absolutely wonderful acting"]
    for i, answer in sorted(asyncio.run(predict_all("ws://127.0.0.1:8000/v1/ws", texts)).items()):
        print(texts[i], "->", answer)
