"""Async jobs from the client: ``submit_job`` returns a handle to poll, watch, wait on, read and cancel.

How it is built (as the rest of the client): ``AsyncJobHandle`` holds the logic and a ``JobWire``
(``job_wire.py``; REST in ``_rest_jobs.py``, gRPC in ``_grpc_jobs.py``, opened by ``wires.py``) speaks the
wire; ``JobHandle`` is the blocking face, running the same coroutines on the sync ``Client``'s private loop
(it receives the client as a ``LoopRunner``).

Inputs become one of three sources (``job_inputs.py``), whichever the wire: a short sequence of rows is sent
inline (one JSON body, one unary call); a file (``pathlib.Path``, ``.csv`` / ``.ndjson`` / ``.jsonl``) is
streamed as bytes and parsed by the server exactly as a REST upload; any other iterable (a generator, a long
list, an async iterable) is streamed in chunks of rows. Neither is ever held whole in memory.

``watch()`` is push: Server-Sent Events on ``http(s)://`` and ``Jobs/Watch`` on ``grpc(s)://``, both starting
with the job's current state so nothing is missed. ``wait()`` follows ``watch()``; it polls only when the
push stream ends before the job does (a server shutting down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Generator, Mapping
from typing import Any, Protocol, TypeVar

from modelwire.client.job_inputs import JobInputs, to_source
from modelwire.client.job_results import JobEvent, JobInfo, JobPage, JobResult
from modelwire.client.job_wire import JobSubmission, JobWire
from modelwire.errors import DeadlineExceededError, InvalidInputError

__all__ = ["AsyncJobHandle", "JobHandle", "LoopRunner", "list_jobs", "submit_job"]

_POLL_S = (0.2, 2.0)  # polling fallback: first and longest interval

T = TypeVar("T")


class LoopRunner(Protocol):
    """What ``JobHandle`` needs from the sync ``Client``: run a coroutine, or step an async iterator, on the
    client's private loop and wait. The client hands itself in (``JobHandle(self, handle)``), so this module
    never imports ``sync_client``, which imports it."""

    def _run(self, coro: Coroutine[Any, Any, T]) -> T: ...

    def _iterate(self, stream: AsyncIterator[T]) -> Generator[T]: ...


async def submit_job(wire: JobWire, job: JobSubmission, inputs: JobInputs) -> AsyncJobHandle:
    """Check the arguments, send the rows, and return a handle on the stored job."""
    if not isinstance(job.model, str) or not job.model:
        raise InvalidInputError("name the model", field="model")
    if not isinstance(job.metadata, Mapping):
        raise InvalidInputError("metadata must be a mapping", field="metadata")
    raw, created = await wire.submit(job, to_source(inputs, job.kind))
    return AsyncJobHandle(wire, JobInfo.from_dict(raw), created=created)


async def list_jobs(wire: JobWire, *, status: str | None, limit: int, cursor: str | None) -> JobPage:
    jobs, next_cursor = await wire.list(status=status, limit=limit, cursor=cursor)
    return JobPage(tuple(JobInfo.from_dict(raw) for raw in jobs), next_cursor)


class AsyncJobHandle:
    """A submitted job. ``info`` is its state as last seen; the methods ask the server.

    job = await client.submit_job(["great", "awful"])
    await job.wait(timeout=60)
    async for row in job.results():
        print(row.index, row.result)
    """

    def __init__(self, wire: JobWire, info: JobInfo, *, created: bool = True) -> None:
        self._wire = wire
        self.info = info
        self.created = created
        """False when an ``idempotency_key`` named a job submitted before: this handle is that job."""

    @property
    def id(self) -> str:
        return self.info.id

    async def status(self) -> JobInfo:
        """The job's state now (one request)."""
        self.info = JobInfo.from_dict(await self._wire.get(self.id))
        return self.info

    async def cancel(self) -> JobInfo:
        """Cancel the job (a running one stops at its next batch). ``FailedPreconditionError`` if it ended."""
        self.info = JobInfo.from_dict(await self._wire.cancel(self.id))
        return self.info

    async def watch(self) -> AsyncGenerator[JobEvent]:
        """The job's current state (``job.snapshot``), then each change as the server pushes it, until the
        job ends. Ends early (without a final state) only if the server closes the stream (shutdown)."""
        updates = self._wire.watch(self.id)
        try:
            async for type_, when, raw in updates:
                self.info = JobInfo.from_dict(raw)
                yield JobEvent(type_, when, self.info)
        finally:
            await updates.aclose()

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the sync face's signature, as the issue names it
        *,
        on_event: Callable[[JobEvent], object] | None = None,
    ) -> JobInfo:
        """Wait until the job ends (whatever its status) and return its final state.

        ``on_event`` is called with each pushed ``JobEvent`` (to draw progress, say). Raises
        ``DeadlineExceededError`` when ``timeout`` seconds pass first (the job goes on).
        """
        events = self.watch()
        try:
            async with asyncio.timeout(timeout):
                async for event in events:
                    if on_event is not None:
                        on_event(event)
                    if event.job.final:
                        return event.job
                delay = _POLL_S[0]
                while not (info := await self.status()).final:  # the push stream ended early
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _POLL_S[1])
                return info
        except TimeoutError:
            raise DeadlineExceededError(
                f"job {self.id} did not end within {timeout:g} s (it is {self.info.status})"
            ) from None
        finally:
            await events.aclose()

    async def results(self, *, offset: int = 0, limit: int | None = None) -> AsyncGenerator[JobResult]:
        """The rows' results in input order, streamed (a row without a result yet is skipped)."""
        if offset < 0 or (limit is not None and limit < 0):
            raise InvalidInputError("offset and limit must not be negative", field="offset")
        async with contextlib.aclosing(self.result_pages(offset=offset, limit=limit)) as pages:
            async for page in pages:
                for row in page:
                    yield row

    async def result_pages(
        self, *, offset: int = 0, limit: int | None = None, size: int = 1000
    ) -> AsyncGenerator[list[JobResult]]:
        """``results()`` in lists of up to ``size`` rows (what the sync face steps through: one hop
        between threads per page, not per row)."""
        if offset < 0 or (limit is not None and limit < 0):
            raise InvalidInputError("offset and limit must not be negative", field="offset")
        rows = self._wire.results(self.id, offset=offset, limit=limit)
        page: list[JobResult] = []
        try:
            async for raw in rows:
                page.append(JobResult.from_dict(raw))
                if len(page) >= size:
                    yield page
                    page = []
            if page:
                yield page
        finally:
            await rows.aclose()

    def __repr__(self) -> str:
        return f"AsyncJobHandle({self.id!r}, status={self.info.status!r})"


class JobHandle:
    """The blocking face of ``AsyncJobHandle`` (what ``Client.submit_job`` returns); same methods, no await.

    job = client.submit_job(Path("reviews.csv"))
    print(job.wait(timeout=600).status)
    for row in job.results():
        print(row.index, row.result)
    """

    def __init__(self, client: LoopRunner, handle: AsyncJobHandle) -> None:
        self._client = client
        self._async = handle

    @property
    def id(self) -> str:
        return self._async.id

    @property
    def info(self) -> JobInfo:
        return self._async.info

    @property
    def created(self) -> bool:
        return self._async.created

    def status(self) -> JobInfo:
        """See ``AsyncJobHandle.status``."""
        return self._client._run(self._async.status())

    def cancel(self) -> JobInfo:
        """See ``AsyncJobHandle.cancel``."""
        return self._client._run(self._async.cancel())

    def wait(
        self, timeout: float | None = None, *, on_event: Callable[[JobEvent], object] | None = None
    ) -> JobInfo:
        """See ``AsyncJobHandle.wait``. ``on_event`` runs on the client's own thread."""
        return self._client._run(self._async.wait(timeout, on_event=on_event))

    def watch(self) -> Generator[JobEvent]:
        """See ``AsyncJobHandle.watch``."""
        return self._client._iterate(self._async.watch())

    def results(self, *, offset: int = 0, limit: int | None = None) -> Generator[JobResult]:
        """See ``AsyncJobHandle.results``."""
        pages = self._client._iterate(self._async.result_pages(offset=offset, limit=limit))

        def rows() -> Generator[JobResult]:
            try:
                for page in pages:
                    yield from page
            finally:
                pages.close()  # leaving the loop early closes the stream there

        return rows()

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r}, status={self.info.status!r})"
