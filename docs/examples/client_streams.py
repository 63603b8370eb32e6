"""modelwire's Python client for streams: pipelined predictions and live events.

python docs/examples/client_streams.py http://127.0.0.1:8000      # WebSocket and SSE
python docs/examples/client_streams.py grpc://127.0.0.1:8001      # gRPC streams
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

from modelwire import AsyncClient, Client, Prediction


def classify(url: str, texts: Iterable[str]) -> dict[int, str]:
    """Classify many texts over one stream; answers arrive as each is ready, with their input's index."""
    labels: dict[int, str] = {}
    with Client(url) as client:
        for item in client.stream_predict(texts):  # WebSocket on http://, PredictStream on grpc://
            if isinstance(item.result, Prediction):
                labels[item.index] = f"{item.result.sentiment} ({item.result.confidence:.2f})"
            else:  # this text alone failed; the others still answer
                labels[item.index] = f"error: {item.result.message}"
            print(item.index, labels[item.index])
    return labels


async def busiest_protocol(url: str, snapshots: int = 3) -> tuple[str, float]:
    """A few live metrics snapshots (one a second): the protocol with the most requests/s, and its rate."""
    totals: dict[str, float] = {}
    async with AsyncClient(url) as client:
        seen = 0
        async for event in client.events(["metrics"]):  # SSE on http://, Events/Subscribe on grpc://
            for protocol, stats in event.data["protocols"].items():
                totals[protocol] = totals.get(protocol, 0.0) + stats["requests_per_s"]
            seen += 1
            if seen == snapshots:
                break
    busiest = max(totals, key=lambda protocol: totals[protocol])
    return busiest, totals[busiest] / snapshots


if __name__ == "__main__":
    server = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    classify(server, ["I love this product", "Terrible, a waste of money", ""])
    name, rate = asyncio.run(busiest_protocol(server))
    print(f"busiest: {name} at {rate:.1f} requests/s")
