"""Jobs over gRPC: ``modelwire.v1.Jobs`` on the ``GrpcTransport``'s channel, through its error boundary.

Replies are converted to the REST shapes (a job as ``GET /v1/jobs/{id}`` shows it, a result row as a line of
``GET /v1/jobs/{id}/results``), so ``JobInfo``/``JobResult`` read both wires alike. A file goes up through
``SubmitStream`` as raw bytes with its content type (the server parses it exactly as a REST upload); an
iterable of rows goes up through ``SubmitStream`` in chunks of rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2

from modelwire.client._grpc import GrpcTransport, map_grpc_errors
from modelwire.client.job_inputs import RowChunks, Source, media_type_for, read_file
from modelwire.client.job_wire import JobSubmission, Update
from modelwire.errors import InternalError, InvalidInputError, UnavailableError
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2_grpc as pb_grpc

__all__ = ["GrpcJobWire", "job_from_message", "result_from_message"]

_STATUS = {
    pb.JOB_STATUS_QUEUED: "queued",
    pb.JOB_STATUS_RUNNING: "running",
    pb.JOB_STATUS_SUCCEEDED: "succeeded",
    pb.JOB_STATUS_FAILED: "failed",
    pb.JOB_STATUS_CANCELLED: "cancelled",
}
_STATUS_NUMBER = {name: number for number, name in _STATUS.items()}
_CORE_WRITE_FAILURE = "Internal error from Core"


def _error(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"code": message.code or "INTERNAL", "message": message.message}
    if message.field:
        out["field"] = message.field
    if message.error_id:
        out["details"] = {"error_id": message.error_id}
    return out


def job_from_message(job: Any) -> dict[str, Any]:
    """A ``Job`` message as the REST API shows the job."""
    progress: dict[str, Any] = {
        "done": job.progress.done,
        "total": job.progress.total,
        "errors": job.progress.errors,
    }
    if job.progress.stage:
        progress["stage"] = job.progress.stage
    if job.progress.HasField("fraction"):
        progress["fraction"] = job.progress.fraction
    out: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "model": job.model,
        "version": job.version or None,
        "status": _STATUS.get(job.status, "unknown"),
        "progress": progress,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at if job.HasField("started_at") else None,
        "finished_at": job.finished_at if job.HasField("finished_at") else None,
        "error": _error(job.error) if job.HasField("error") else None,
        "result": json_format.MessageToDict(job.result) if job.HasField("result") else None,
        "metadata": json_format.MessageToDict(job.metadata),
    }
    if job.callback_url:
        out["callback_url"] = job.callback_url
    return out


def result_from_message(row: Any) -> dict[str, Any]:
    """A ``JobResult`` as a line of ``GET /v1/jobs/{id}/results``."""
    if row.WhichOneof("outcome") == "error":
        return {"index": row.index, "error": _error(row.error)}
    output = json_format.MessageToDict(row.output)
    if isinstance(output, dict):
        return {"index": row.index, **output}
    return {"index": row.index, "result": output}


def _rows(rows: Sequence[Any]) -> dict[str, Any]:
    """``texts`` when every row is a string, else ``instances``."""
    if all(isinstance(row, str) for row in rows):
        return {"texts": list(rows)}
    values = []
    for row in rows:
        value = struct_pb2.Value()
        try:
            json_format.ParseDict(row, value)
        except (json_format.ParseError, TypeError) as exc:
            raise InvalidInputError(f"a row is not JSON-serialisable: {exc}", field="inputs") from None
        values.append(value)
    return {"instances": values}


class GrpcJobWire:
    """``JobWire`` over one ``GrpcTransport``'s channel."""

    def __init__(self, transport: GrpcTransport) -> None:
        self._target = transport._target
        self._timeout = transport._timeout
        self._metadata = transport._metadata
        self._stub = pb_grpc.JobsStub(transport._channel)

    def _spec(self, job: JobSubmission, **rows: Any) -> Any:
        metadata = struct_pb2.Struct()
        metadata.update(dict(job.metadata))
        return pb.SubmitJobRequest(
            model=job.model,
            kind=job.kind,
            version=job.version or "",
            callback_url=job.callback_url or "",
            metadata=metadata,
            idempotency_key=job.idempotency_key or "",
            **rows,
        )

    async def submit(self, job: JobSubmission, source: Source) -> tuple[dict[str, Any], bool]:
        if isinstance(source, Sequence):
            with map_grpc_errors(self._target):
                reply = await self._stub.Submit(
                    self._spec(job, **_rows(source)), timeout=self._timeout, metadata=self._metadata
                )
        else:
            chunks = self._file(job, source) if isinstance(source, Path) else self._chunks(job, source)
            reply = await self._upload(job, chunks)
        return job_from_message(reply.job), reply.created

    async def _upload(self, job: JobSubmission, chunks: AsyncGenerator[Any]) -> Any:
        """``SubmitStream``, written from this task (not grpc's): when the server answers early (an unknown
        model, over a limit) the rows stop being read at once, and nothing is left pending on the loop.
        No deadline: an upload takes as long as it takes (the server bounds its size)."""
        call = self._stub.SubmitStream(metadata=self._metadata)
        try:
            try:
                with map_grpc_errors(self._target):
                    try:
                        async for message in chunks:
                            await call.write(message)
                        await call.done_writing()
                    except asyncio.InvalidStateError:
                        pass  # the server already ended the call: its status (read below) says why
                    return await call
            except InternalError as exc:
                if str(exc) != _CORE_WRITE_FAILURE:
                    raise
            await self._explain(job)
            raise UnavailableError(
                "the server ended the upload before it was complete, and grpcio lost its reason "
                "(grpc/grpc#36066); nothing was stored: check the upload limits and try again"
            )
        finally:
            call.cancel()  # a no-op once the call is done
            await chunks.aclose()

    async def _explain(self, job: JobSubmission) -> None:
        """grpcio (grpc/grpc#36066) replaces the server's status with INTERNAL when a write races the end of
        the call. Asking again with the spec alone and no rows brings back the server's own refusal of it
        (unknown model, callback, queue full, ...); with no rows nothing is ever stored."""
        try:
            with map_grpc_errors(self._target):
                spec = self._spec(dataclasses.replace(job, idempotency_key=None))  # as REST's retry: no key
                await self._stub.Submit(spec, timeout=self._timeout, metadata=self._metadata)
        except InvalidInputError as exc:
            if exc.field != "$.inputs":  # "the job has no rows" means the spec itself was fine
                raise

    async def _file(self, job: JobSubmission, path: Path) -> AsyncGenerator[Any]:
        spec = self._spec(job, content_type=media_type_for(path))
        yield pb.SubmitJobChunk(spec=spec)
        async with contextlib.aclosing(read_file(path)) as data:
            async for chunk in data:
                yield pb.SubmitJobChunk(data=chunk)

    async def _chunks(self, job: JobSubmission, chunks: RowChunks) -> AsyncGenerator[Any]:
        yield pb.SubmitJobChunk(spec=self._spec(job))
        async with contextlib.aclosing(chunks):
            async for rows in chunks:
                yield pb.SubmitJobChunk(**_rows(rows))

    async def get(self, job_id: str) -> dict[str, Any]:
        with map_grpc_errors(self._target):
            reply = await self._stub.Get(
                pb.GetJobRequest(id=job_id), timeout=self._timeout, metadata=self._metadata
            )
        return job_from_message(reply)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        with map_grpc_errors(self._target):
            reply = await self._stub.Cancel(
                pb.CancelJobRequest(id=job_id), timeout=self._timeout, metadata=self._metadata
            )
        return job_from_message(reply)

    async def list(
        self, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if status is not None and status not in _STATUS_NUMBER:
            known = ", ".join(_STATUS_NUMBER)
            raise InvalidInputError(f"unknown status {status!r}: use one of {known}", field="status")
        request = pb.ListJobsRequest(
            status=_STATUS_NUMBER.get(status or "", pb.JOB_STATUS_UNSPECIFIED),
            limit=limit,
            cursor=cursor or "",
        )
        with map_grpc_errors(self._target):
            reply = await self._stub.List(request, timeout=self._timeout, metadata=self._metadata)
        return [job_from_message(job) for job in reply.jobs], reply.next_cursor or None

    async def results(self, job_id: str, *, offset: int, limit: int | None) -> AsyncGenerator[dict[str, Any]]:
        """``Jobs/Results``; no deadline on the whole stream (it may be long), as ``events``."""
        request = pb.JobResultsRequest(id=job_id, offset=offset, limit=limit or 0)
        call = self._stub.Results(request, metadata=self._metadata)
        try:
            with map_grpc_errors(self._target):
                async for chunk in call:
                    for row in chunk.results:
                        yield result_from_message(row)
        finally:
            call.cancel()

    async def watch(self, job_id: str) -> AsyncGenerator[Update]:
        """``Jobs/Watch``: the server sends the snapshot first and ends the stream when the job ends."""
        call = self._stub.Watch(pb.WatchJobRequest(id=job_id), metadata=self._metadata)
        try:
            with map_grpc_errors(self._target):
                async for event in call:
                    yield event.type, event.time, job_from_message(event.job)
        finally:
            call.cancel()
