"""Jobs over REST: ``/v1/jobs``, ``/v1/models/{name}/train``, and ``/v1/events?topics=jobs/<id>`` (SSE).

Uses the ``RestTransport``'s httpx client and its error boundary (``map_httpx_exceptions``,
``error_from_response``). Uploads are request bodies streamed from an async iterator of bytes (a file read
chunk by chunk, or rows encoded as NDJSON as they come), so nothing is held whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, aconnect_sse

from modelwire.client._rest import (
    RestTransport,
    error_from_response,
    error_from_wire,
    map_httpx_exceptions,
    read_answer,
)
from modelwire.client.job_inputs import RowChunks, Source, media_type_for, read_file
from modelwire.client.job_wire import JobSubmission, Update
from modelwire.errors import InternalError, InvalidInputError, UnavailableError
from modelwire.jobs.watch import FINAL_STATUSES, SNAPSHOT, apply_event

__all__ = ["RECHECK_S", "RestJobWire"]

RECHECK_S = 5.0
"""With no event for this long, the job is read again (a lost final event must not hang ``wait``)."""
_END = object()


async def _ndjson(chunks: RowChunks) -> AsyncGenerator[bytes]:
    async with contextlib.aclosing(chunks):
        async for rows in chunks:
            yield "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()


def _job_path(job_id: str, tail: str = "") -> str:
    if not job_id:
        raise InvalidInputError("name the job: id", field="id")
    return f"/v1/jobs/{quote(job_id, safe='')}{tail}"


class RestJobWire:
    """``JobWire`` over one ``RestTransport``."""

    def __init__(self, transport: RestTransport) -> None:
        self._rest = transport
        self._http: httpx.AsyncClient = transport._http
        self._url = transport._url

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with map_httpx_exceptions(self._url):
            response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.headers, response.content)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        return read_answer(response.status_code, response.headers, response.content)

    # -- submit -------------------------------------------------------------------------------------

    async def submit(self, job: JobSubmission, source: Source) -> tuple[dict[str, Any], bool]:
        headers = {"Idempotency-Key": job.idempotency_key} if job.idempotency_key else {}
        path = "/v1/jobs" if job.kind == "predict" else f"/v1/models/{quote(job.model, safe='')}/train"
        if isinstance(source, Sequence):
            body = self._json_body(job, source)
            response = await self._call("POST", path, json=body, headers=headers)
        else:
            params: dict[str, str] = {"model": job.model}
            if job.version:
                params["version"] = job.version
            if job.callback_url:
                params["callback_url"] = job.callback_url
            if job.metadata:
                params["metadata"] = json.dumps(dict(job.metadata))
            content: AsyncGenerator[bytes]
            if isinstance(source, Path):
                headers["Content-Type"] = media_type_for(source)
                headers["Content-Length"] = str(source.stat().st_size)  # lets the server refuse it at once
                content = read_file(source)
            else:
                headers["Content-Type"] = "application/x-ndjson"
                content = _ndjson(source)
            try:
                async with contextlib.aclosing(content):  # a refused upload stops reading its source
                    response = await self._call("POST", path, params=params, headers=headers, content=content)
            except UnavailableError:
                await self._explain(job, path)
                raise
        answer = read_answer(response.status_code, response.headers, response.content)
        return answer, response.status_code == 202

    async def _explain(self, job: JobSubmission, path: str) -> None:
        """An upload the server refused early may lose its answer with the connection (the server stops
        reading and closes). The same submit with no rows brings back a refusal of the job itself (unknown
        model, callback, queue full); with no rows nothing is ever stored."""
        try:
            await self._call("POST", path, json=self._json_body(job, []))
        except InvalidInputError as exc:
            if exc.field != "$.inputs":  # "the job has no rows": the spec itself is fine
                raise
        except UnavailableError:
            pass  # really unreachable: the caller raises its own error

    @staticmethod
    def _json_body(job: JobSubmission, rows: Sequence[Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {"metadata": dict(job.metadata)}
        if job.callback_url:
            extra["callback_url"] = job.callback_url
        if job.kind == "train":
            if job.version:
                raise InvalidInputError("training makes a new version: name none", field="version")
            return {
                "texts": [row.get("text") for row in rows],
                "labels": [row.get("label") for row in rows],
                **extra,
            }
        if job.version:
            extra["version"] = job.version
        return {"model": job.model, "inputs": list(rows), **extra}

    # -- read and act -------------------------------------------------------------------------------

    async def get(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._json("GET", _job_path(job_id))
        return answer

    async def cancel(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._json("DELETE", _job_path(job_id))
        return answer

    async def list(
        self, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        answer = await self._json("GET", "/v1/jobs", params=params)
        if not isinstance(answer, Mapping) or not isinstance(answer.get("jobs"), list):
            raise InternalError("the server's job list is not a list")
        return answer["jobs"], answer.get("next_cursor") or None

    async def results(self, job_id: str, *, offset: int, limit: int | None) -> AsyncGenerator[dict[str, Any]]:
        """``GET /v1/jobs/{id}/results`` as NDJSON, line by line as it arrives."""
        params: dict[str, Any] = {"offset": offset}
        if limit is not None:
            params["limit"] = limit
        with map_httpx_exceptions(self._url):
            async with self._http.stream("GET", _job_path(job_id, "/results"), params=params) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise error_from_response(response.status_code, response.headers, body)
                async for line in response.aiter_lines():
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError:
                            raise InternalError(
                                f"the server sent a result line that is not JSON: {line[:80]!r}"
                            ) from None

    # -- watch --------------------------------------------------------------------------------------

    async def watch(self, job_id: str) -> AsyncGenerator[Update]:
        """Subscribe to ``jobs/<id>`` over SSE, and only once subscribed read the job (the snapshot), so
        nothing between the two is missed; then merge each pushed event into the job until it ends."""
        path = _job_path(job_id)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        subscribed = asyncio.Event()
        reader = asyncio.create_task(self._read_events(job_id, queue, subscribed))
        try:
            await self.get(job_id)  # an unknown job fails here, not as a topic error
            waiting = asyncio.create_task(subscribed.wait())
            await asyncio.wait((waiting, reader), return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if reader.done():
                reader.result()  # the subscription failed: raise why
                return
            current = await self._json("GET", path)
            yield SNAPSHOT, time.time(), current
            while current["status"] not in FINAL_STATUSES:
                try:
                    item = await asyncio.wait_for(queue.get(), RECHECK_S)
                except TimeoutError:
                    fresh = await self._json("GET", path)
                    if fresh != current:
                        changed = fresh["status"] != current["status"]
                        current = fresh
                        yield f"job.{fresh['status']}" if changed else "job.progress", time.time(), current
                    continue
                if item is _END:
                    reader.result()
                    return
                type_, when, data = item
                updated = apply_event(current, type_, data)
                if updated is not None:
                    current = updated
                    yield type_, when, current
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read_events(self, job_id: str, queue: asyncio.Queue[Any], subscribed: asyncio.Event) -> None:
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        params = {"topics": f"jobs/{job_id}"}
        try:
            with map_httpx_exceptions(self._url):
                async with aconnect_sse(
                    self._http, "GET", "/v1/events", params=params, timeout=timeout
                ) as source:
                    response = source.response
                    if response.status_code >= 400:
                        body = await response.aread()
                        raise error_from_response(response.status_code, response.headers, body)
                    try:
                        async for sse in source.aiter_sse():
                            subscribed.set()  # the first message (retry:) comes once the server subscribed
                            if sse.data and sse.event != "reset":
                                queue.put_nowait(_event(sse.event, sse.data))
                    except SSEError as exc:
                        raise InternalError(
                            f"the server did not answer with an event stream: {exc}"
                        ) from None
        finally:
            queue.put_nowait(_END)


def _event(kind: str, data: str) -> tuple[str, float, dict[str, Any]]:
    """One SSE message of ``/v1/events`` as ``(type, time, data)``; ``event: error`` raises its error."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise InternalError(f"the server sent an event whose data is not JSON: {data[:80]!r}") from None
    if not isinstance(payload, dict):
        raise InternalError(f"the server sent an event that is not an object: {data[:80]!r}")
    if kind == "error":
        raise error_from_wire(payload.get("error", payload))
    inner = payload.get("data")
    stamp = payload.get("time")
    return (
        str(payload.get("type") or kind),
        float(stamp) if isinstance(stamp, int | float) else time.time(),
        inner if isinstance(inner, dict) else {},
    )
