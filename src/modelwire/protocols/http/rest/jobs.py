"""REST face of async jobs: ``/v1/jobs`` and ``/v1/models/{name}/train``. Parse, call ``JobManager``, render.

Uploads (NDJSON, CSV, multipart) are handed to the manager as the request's byte stream; JSON bodies are
read whole, within ``limits.max_body_bytes`` like every JSON body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from fastapi import FastAPI
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from modelwire.errors import (
    InternalError,
    InvalidInputError,
    ModelwireError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.store import JobKind, render_result
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import decode_json, discard, discard_budget, encode, read_body
from modelwire.protocols.http.disconnect import ClientDisconnectedError
from modelwire.protocols.http.rest.job_openapi import DOCS
from modelwire.protocols.http.rest.job_schemas import JobSubmit, TrainSubmit

__all__ = ["JobRoutes", "add_jobs_routes"]

_JSON = ("application/json",)
logger = logging.getLogger("modelwire.jobs")


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(value), status, headers=headers, media_type="application/json")


def _accepted(job: dict[str, Any], created: bool) -> Response:
    headers = {"Location": f"/v1/jobs/{job['id']}"}
    if job["status"] in ("queued", "running"):
        headers["Retry-After"] = "1"
    return _json(job, 202 if created else 200, headers)


def _int(request: Request, name: str, default: int | None, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # Present means given: ``?limit=`` is malformed, not the default. ASCII digits only: ``str.isdigit``
    # also takes "²" (which ``int`` refuses) and "٣" (which it reads as 3).
    if not (raw.isascii() and raw.isdigit()) or (high is not None and int(raw) > high):
        bound = f" from 0 to {high}" if high is not None else " of 0 or more"
        raise InvalidInputError(f"{name} must be a whole number{bound}", field=name)
    return int(raw)


async def _stream(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:  # the upload is aborted (nothing stored); nobody is left to answer
        raise ClientDisconnectedError from None


async def _chunks(items: Sequence[Any], size: int = 2000) -> AsyncIterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class JobRoutes:
    """Handlers bound to one ``Facades``."""

    def __init__(self, services: Facades) -> None:
        self.jobs = services.jobs
        self.json_limit = services.settings.limits.max_body_bytes
        self.upload_limit = services.settings.jobs.max_upload_bytes
        self.max_depth = services.settings.limits.max_json_depth

    async def submit(self, request: Request) -> Response:
        return await self._submit(request, "predict", None)

    async def train(self, request: Request) -> Response:
        return await self._submit(request, "train", request.path_params["name"])

    async def _submit(self, request: Request, kind: JobKind, model: str | None) -> Response:
        media, options = parse_options_header(request.headers.get("content-type", ""))
        media_type = media.decode("latin-1").lower()
        try:
            return await self._submit_as(request, kind, model, media_type, options)
        except ModelwireError:
            if not (media_type in _JSON or media_type.endswith("+json")):  # read_body discards its own
                # an upload refused (partly) unread: see body.py
                await discard(request.stream(), discard_budget(request, self.json_limit))
            raise

    async def _submit_as(
        self, request: Request, kind: JobKind, model: str | None, media_type: str, options: dict[bytes, bytes]
    ) -> Response:
        if not media_type:  # what a page can send cross-site without a preflight: refused, as by read_body
            raise UnsupportedMediaTypeError(
                "a job without Content-Type is not accepted: send application/json, application/x-ndjson, "
                "text/csv or multipart/form-data"
            )
        key = request.headers.get("idempotency-key") or None
        if key is not None and len(key) > 255:
            raise InvalidInputError("Idempotency-Key is longer than 255 characters", field="Idempotency-Key")
        rows: AsyncIterator[Sequence[Any]]
        spec: tuple[str | None, dict[str, Any], str | None]
        if media_type in _JSON or media_type.endswith("+json"):
            raw = await read_body(request, self.json_limit, media_types=_JSON)
            if kind == "train":
                train = decode_json(raw, TrainSubmit, max_depth=self.max_depth)
                if len(train.texts) != len(train.labels):
                    raise InvalidInputError("texts and labels must have the same length", field="$.labels")
                labelled = [{"text": t, "label": y} for t, y in zip(train.texts, train.labels, strict=True)]
                rows, spec = _chunks(labelled), (train.callback_url, train.metadata, None)
            else:
                body = decode_json(raw, JobSubmit, max_depth=self.max_depth)
                model, rows, spec = (
                    body.model,
                    _chunks(body.inputs),
                    (body.callback_url, body.metadata, body.version),
                )
        else:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.upload_limit:
                raise PayloadTooLargeError(
                    f"the upload is {declared} bytes; the limit is {self.upload_limit}"
                )
            query = request.query_params
            model = model or query.get("model")
            if not model:
                raise InvalidInputError("name the model: ?model=<name>", field="model")
            metadata = (
                decode_json(query["metadata"].encode(), dict[str, Any], max_depth=self.max_depth)
                if "metadata" in query
                else {}
            )
            spec = (query.get("callback_url"), metadata, query.get("version"))
            boundary = options.get(b"boundary", b"").decode("latin-1") or None
            rows = self.jobs.read_upload(_stream(request), media_type, kind=kind, boundary=boundary)
        assert model is not None
        callback_url, metadata, version = spec
        job_request = JobRequest(model, kind, version, callback_url, dict(metadata), key)
        job, created = await self.jobs.submit(job_request, rows)
        return _accepted(job, created)

    async def get(self, request: Request) -> Response:
        return _json(await self.jobs.get(request.path_params["job_id"]))

    async def cancel(self, request: Request) -> Response:
        return _json(await self.jobs.cancel(request.path_params["job_id"]))

    async def retry(self, request: Request) -> Response:
        return _accepted(await self.jobs.retry(request.path_params["job_id"]), True)

    async def list(self, request: Request) -> Response:
        page = await self.jobs.list(
            status=request.query_params.get("status") or None,
            limit=_int(request, "limit", 50) or 0,
            cursor=request.query_params.get("cursor") or None,
        )
        return _json({"jobs": [job.to_dict() for job in page.jobs], "next_cursor": page.cursor})

    async def results(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        fmt = request.query_params.get("format", "ndjson")
        offset = _int(request, "offset", 0) or 0
        if fmt == "json":
            limit = _int(request, "limit", 1000, high=10_000) or 0
            total = (await self.jobs.get(job_id))["progress"]["total"]
            rows = [
                render_result(r) async for r in await self.jobs.results(job_id, offset=offset, limit=limit)
            ]
            end = offset + limit
            tail = msgspec.json.encode(
                {
                    "offset": offset,
                    "limit": limit,
                    "total": total,
                    "next_offset": end if end < total else None,
                }
            )
            return Response(
                b'{"results":[' + b",".join(rows) + b"]," + tail[1:], media_type="application/json"
            )
        if fmt != "ndjson":
            raise InvalidInputError("format must be ndjson or json", field="format")
        results = aiter(await self.jobs.results(job_id, offset=offset, limit=_int(request, "limit", None)))
        # Read the first row before answering: a store that fails now is an ordinary JSON error (5xx).
        first = await anext(results, None)

        async def lines() -> AsyncIterator[bytes]:
            batch: list[bytes] = [] if first is None else [render_result(first)]
            try:
                async for row in results:
                    batch.append(render_result(row))
                    if len(batch) >= 1000:
                        yield b"\n".join(batch) + b"\n"
                        batch = []
            except ModelwireError as exc:
                # The 200 is sent: the stream ends with one line without an index, the error in the
                # documented shape (docs/jobs.md); the rows before it are good, read on from their end.
                batch.append(encode({"error": exc.to_dict()}))
            except Exception:
                error = InternalError("reading the results failed")
                logger.exception("job %s: reading results failed [error_id=%s]", job_id, error.error_id)
                batch.append(encode({"error": error.to_dict()}))
            if batch:
                yield b"\n".join(batch) + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")


def add_jobs_routes(app: FastAPI, services: Facades) -> None:
    """``/v1/jobs`` (submit, list), ``/v1/jobs/{job_id}`` (status, cancel), its results and retry, and
    ``/v1/models/{name}/train``."""
    routes = JobRoutes(services)
    add = app.add_api_route
    add("/v1/jobs", routes.submit, methods=["POST"], **DOCS["submit"])
    add("/v1/jobs", routes.list, methods=["GET"], **DOCS["list"])
    add("/v1/jobs/{job_id}", routes.get, methods=["GET"], **DOCS["get"])
    add("/v1/jobs/{job_id}", routes.cancel, methods=["DELETE"], **DOCS["cancel"])
    add("/v1/jobs/{job_id}/results", routes.results, methods=["GET"], **DOCS["results"])
    add("/v1/jobs/{job_id}/retry", routes.retry, methods=["POST"], **DOCS["retry"])
    add("/v1/models/{name}/train", routes.train, methods=["POST"], **DOCS["train"])
