"""modelwire's Python client for async jobs: submit a file, follow its progress as it is pushed, read results.

python docs/examples/client_jobs.py reviews.csv http://127.0.0.1:8000      # REST; progress over SSE
python docs/examples/client_jobs.py reviews.csv grpc://127.0.0.1:8001      # gRPC; progress over Jobs/Watch
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from modelwire import AsyncClient, Client, JobEvent, Prediction


def score_file(url: str, path: Path, model: str = "sentiment") -> dict[str, int]:
    """Run every row of a .csv/.ndjson file as one job; count the answers by label."""
    with Client(url) as client:
        job = client.submit_job(path, model=model)  # streamed up; returns once the job is stored

        def progress(event: JobEvent) -> None:  # pushed by the server: no polling
            print(f"{event.job.status:<9} {event.job.done}/{event.job.total}")

        done = job.wait(timeout=600, on_event=progress)
        counts: dict[str, int] = {}
        for row in job.results():  # streamed, in input order
            label = row.result.sentiment or "other" if isinstance(row.result, Prediction) else "error"
            counts[label] = counts.get(label, 0) + 1
    print(f"job {done.id} {done.status}: {counts}")
    return counts


async def score_texts(url: str, texts: list[str]) -> list[str]:
    """The same with the async client, for rows already in memory."""
    async with AsyncClient(url) as client:
        job = await client.submit_job(texts, idempotency_key="example-batch-1")  # safe to send again
        async for event in job.watch():
            if event.job.final:
                break
        return [
            row.result.sentiment or ""
            if isinstance(row.result, Prediction)
            else f"error: {row.result.message}"
            async for row in job.results()
        ]


if __name__ == "__main__":
    file = Path(sys.argv[1])
    server = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8000"
    score_file(server, file)
    print(asyncio.run(score_texts(server, ["I love this product", "Terrible, a waste of money"])))
