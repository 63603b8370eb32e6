"""``modelwire.v1.Jobs``: async jobs over gRPC. Parse, call ``JobManager`` (the same one REST calls), render.

``SubmitStream`` hands the manager the rows message by message, so a large upload is stored as it arrives
and never held whole; its total size is bounded by ``jobs.max_upload_bytes`` like a REST upload. ``Watch``
renders ``jobs.watch.watch_job`` (snapshot first, then each change until the job ends); ``Results`` sends the
stored rows in input order, a chunk of rows per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from modelwire.errors import DeadlineExceededError, InvalidInputError, PayloadTooLargeError
from modelwire.jobs.watch import JobWatch
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.errors import map_errors
from modelwire.protocols.grpc.job_converters import JobConverter

__all__ = ["JobsServicer"]

Context = grpc.aio.ServicerContext[Any, Any]

_CHUNK_ROWS = 1000  # result rows per Results message, ...
_CHUNK_BYTES = 1 << 20  # ... or fewer when they are large (the default receive limit is 4 MiB)


def _job_id(request: Any) -> str:
    if not request.id:
        raise InvalidInputError("name the job: id", field="id")
    return str(request.id)


async def _close_when(watch: JobWatch, closing: asyncio.Event) -> None:
    await closing.wait()
    watch.close()


async def _message_rows(first: Any, rest: AsyncIterator[Any], limit: int) -> AsyncIterator[Sequence[Any]]:
    """The rows of each ``SubmitStream`` message as it arrives, refusing more than ``limit`` bytes in all."""
    size = 0
    message = first
    while message is not None:
        size += message.ByteSize()
        if size > limit:
            raise PayloadTooLargeError(f"the upload is over the limit of {limit} bytes")
        if message is first:
            yield JobConverter.rows_to_domain(first.spec)
        elif message.HasField("spec"):
            raise InvalidInputError("only the first message carries a spec", field="spec")
        yield JobConverter.rows_to_domain(message)
        message = await anext(rest, None)


async def _file_chunks(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """The bytes of a file sent through ``SubmitStream`` (``read_upload`` bounds their total size)."""
    message = first
    while message is not None:
        if message is not first and message.HasField("spec"):
            raise InvalidInputError("only the first message carries a spec", field="spec")
        if (
            message.texts
            or message.instances
            or (message is first and (first.spec.texts or first.spec.instances))
        ):
            raise InvalidInputError("with a content_type, send the rows as data only", field="data")
        if message.data:
            yield message.data
        message = await anext(rest, None)


class JobsServicer(pb_grpc.JobsServicer):  # type: ignore[misc]
    """Every call goes to ``services.jobs``; errors become statuses through ``errors.map_errors``."""

    def __init__(self, services: Facades) -> None:
        self._services = services
        self._jobs = services.jobs
        self._upload_limit = services.settings.jobs.max_upload_bytes

    def _submitted(self, job: dict[str, Any], created: bool) -> Any:
        return pb.SubmitJobResponse(job=JobConverter.from_domain(job), created=created)

    @map_errors
    async def Submit(self, request: Any, context: Context) -> Any:
        job_request = JobConverter.request_to_domain(request)

        async def rows() -> AsyncIterator[Sequence[Any]]:
            yield JobConverter.rows_to_domain(request)

        return self._submitted(*await self._jobs.submit(job_request, rows()))

    @map_errors
    async def SubmitStream(self, request_iterator: AsyncIterator[Any], context: Context) -> Any:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("spec"):
            raise InvalidInputError("the first message must carry the job's spec", field="spec")
        job_request = JobConverter.request_to_domain(first.spec)
        if first.spec.content_type:
            upload = self._jobs.read_upload(
                _file_chunks(first, request_iterator), first.spec.content_type.lower(), kind=job_request.kind
            )
            return self._submitted(*await self._jobs.submit(job_request, upload))
        rows = _message_rows(first, request_iterator, self._upload_limit)
        return self._submitted(*await self._jobs.submit(job_request, rows))

    @map_errors
    async def Get(self, request: Any, context: Context) -> Any:
        return JobConverter.from_domain(await self._jobs.get(_job_id(request)))

    @map_errors
    async def Cancel(self, request: Any, context: Context) -> Any:
        return JobConverter.from_domain(await self._jobs.cancel(_job_id(request)))

    @map_errors
    async def Retry(self, request: Any, context: Context) -> Any:
        return JobConverter.from_domain(await self._jobs.retry(_job_id(request)))

    @map_errors
    async def List(self, request: Any, context: Context) -> Any:
        page = await self._jobs.list(
            status=JobConverter.status_to_domain(request.status),
            limit=request.limit or 50,
            cursor=request.cursor or None,
        )
        return pb.ListJobsResponse(
            jobs=[JobConverter.from_domain(job.to_dict()) for job in page.jobs], next_cursor=page.cursor or ""
        )

    @map_errors
    async def Watch(self, request: Any, context: Context) -> AsyncIterator[Any]:
        services = self._services
        watch = JobWatch(self._jobs, services.events, _job_id(request))
        updates = aiter(watch)
        services.metrics.connection_opened("grpc")
        released = False

        def release(_: object = None) -> None:
            nonlocal released
            if not released:
                released = True
                watch.close()
                services.metrics.connection_closed("grpc")

        # grpc may never resume a handler whose call was cancelled: the done-callback still releases it.
        context.add_done_callback(release)  # type: ignore[arg-type]  # grpc-stubs wants a DoneCallback class
        closer = asyncio.create_task(_close_when(watch, services.closing))
        remaining: float | None = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        type_, when, job = await anext(updates)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceededError("the call's deadline passed; watch again") from None
                yield pb.JobEvent(type=type_, time=when, job=JobConverter.from_domain(job))
        finally:
            closer.cancel()
            release()

    @map_errors
    async def Results(self, request: Any, context: Context) -> AsyncIterator[Any]:
        if request.offset < 0 or request.limit < 0:
            raise InvalidInputError("offset and limit must not be negative", field="offset")
        rows = await self._jobs.results(_job_id(request), offset=request.offset, limit=request.limit or None)
        chunk: list[Any] = []
        size = 0
        async for row in rows:
            chunk.append(JobConverter.result_from_domain(row))
            size += len(row[1])
            if len(chunk) >= _CHUNK_ROWS or size >= _CHUNK_BYTES:
                yield pb.JobResultsChunk(results=chunk)
                chunk, size = [], 0
        if chunk:
            yield pb.JobResultsChunk(results=chunk)
