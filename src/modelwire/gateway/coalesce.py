"""``Coalescer``: the requests that reach a gateway together for one model version go upstream as ONE call.

How it works. ``RemoteModel.predict`` (one per caller: the gateway's ``DataPlane`` has already admitted the
request, checked its limits and picked its version, canary split included) turns each instance into a
``BatchItem`` carrying the caller's ``traceparent`` and request id, and hands the items with the caller's
deadline to ``Coalescer.run``, which applies the server's batching policy (``plan`` and ``next_yields``
from ``model/batching.py``) to the hop:

- **Idle hop**: fewer than ``max_calls`` calls in flight, nothing queued and no sign of load: the caller
  makes its own ``PredictBatch`` call in its own task, at once; concurrency 1 pays nothing for coalescing
  (no queue, no extra task), and cancelling the caller cancels its call, as before coalescing.
- **Busy hop**: the items queue; a driver task sends everything that arrived meanwhile as one call (up to
  ``max_batch`` items) as soon as a call slot is free. Once a call has carried two or more callers, the
  driver lets the loop run a few cycles before each dispatch so that requests already on their way join,
  and stops doing so when that gathers nothing (``next_yields``), so the idle path comes back.

- **Deadline**: the call's timeout is the earliest deadline of its items; an item whose deadline already
  passed is not sent. When the call fails DEADLINE_EXCEEDED, a caller with time left sends again
  (``RemoteModel``), so a neighbour's short deadline costs it one more call, not its answer.
- **Errors**: an item's own error comes back on that item only; a failure of the call as a whole
  (unreachable, refused credentials, overload, the deadline) is ``CallFailed`` for every item of it, which
  ``RemoteModel`` raises, as when the caller's own call failed.
- **Cancellation**: a caller that leaves (client gone, its deadline) cancels its items; they are skipped if
  not sent yet, and otherwise their answers are dropped.
- A model service without ``BatchPredictor`` (an older release) answers UNIMPLEMENTED: the items come back
  ``Unsupported`` and ``RemoteModel`` sends them one call per request, as before, from then on.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelwire.client._grpc import _output
from modelwire.errors import (
    DeadlineExceededError,
    InternalError,
    ModelwireError,
    UnavailableError,
    error_from_code,
)
from modelwire.model.batching import BatchPolicy, Flush, Wait, next_yields, plan
from modelwire.protocols.grpc._generated.modelwire.v1 import batch_pb2 as pb

__all__ = [
    "UNSUPPORTED",
    "CallFailed",
    "Coalescer",
    "Item",
    "Unsupported",
    "UpstreamMissing",
    "error_from_proto",
]


@dataclass(frozen=True, slots=True)
class Item:
    """One instance of one caller: its message (text or MessagePack, trace ids) and its deadline."""

    message: Any  # pb.BatchItem, ``id`` set when sent
    deadline: float | None  # time.monotonic() clock
    size: int = 0  # the message's bytes: a call stays under ``max_bytes``


@dataclass(frozen=True, slots=True)
class CallFailed:
    """The upstream call carrying this item failed as a whole."""

    error: ModelwireError


class UpstreamMissing(Exception):
    """Raised by a ``Send`` when the model service does not know ``BatchPredictor`` (UNIMPLEMENTED)."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """The model service has no ``BatchPredictor``: send this item the old way."""


UNSUPPORTED = Unsupported()
logger = logging.getLogger("modelwire.gateway")


def error_from_proto(error: Any) -> ModelwireError:
    """A ``BatchError`` as the ``ModelwireError`` it stands for (what a unary status would have given)."""
    return error_from_code(
        error.code or "INTERNAL",
        error.message,
        reason=error.reason or None,
        field=error.field or None,
        retry_after_s=error.retry_after_s if error.HasField("retry_after_s") else None,
        details={"error_id": error.error_id} if error.error_id else None,
    )


Send = Callable[[Any, float | None, tuple[tuple[str, str], ...]], Any]
"""``(BatchRequest, timeout, metadata) -> awaitable BatchResponse``: raises ``ModelwireError``."""


class _Upstream:
    """One ``PredictBatch`` for a list of items: one result, error or marker per item; never raises."""

    def __init__(
        self, name: str, version: str, send: Send, result: Callable[[Mapping[str, Any]], Any]
    ) -> None:
        self.name, self.version = name, version
        self._send = send
        self._result = result
        self.supported = True

    async def predict(self, batch: Sequence[Item]) -> list[Any]:
        if not self.supported:
            return [UNSUPPORTED] * len(batch)
        now = time.monotonic()
        results: list[Any] = [None] * len(batch)
        request = pb.BatchRequest(model=self.name, version=self.version)
        deadline: float | None = None
        sent: list[int] = []
        for i, item in enumerate(batch):
            if item.deadline is not None and item.deadline <= now:
                results[i] = CallFailed(DeadlineExceededError("no time left to call the model services"))
                continue
            if item.deadline is not None and (deadline is None or item.deadline < deadline):
                deadline = item.deadline
            message = request.items.add()
            message.CopyFrom(item.message)
            message.id = str(i)
            sent.append(i)
        if not sent:
            return results
        first = batch[sent[0]].message
        metadata = (("traceparent", first.traceparent), ("x-request-id", first.request_id))
        timeout = None if deadline is None else deadline - now
        try:
            reply = await self._send(request, timeout, metadata if first.traceparent else ())
        except UpstreamMissing:
            self.supported = False
            for i in sent:
                results[i] = UNSUPPORTED
            return results
        except ModelwireError as exc:
            for i in sent:
                results[i] = CallFailed(exc)
            return results
        expected = set(sent)
        for answer in reply.results:
            index = int(answer.id) if answer.id.isdigit() else -1
            if index not in expected:
                error = InternalError(f"a model service answered an unknown item ({answer.id!r:.20})")
                return [CallFailed(error) if i in expected else r for i, r in enumerate(results)]
            expected.discard(index)
            if answer.WhichOneof("result") == "error":
                results[index] = error_from_proto(answer.error)
            else:
                results[index] = self._result(_output(answer.output))
        for i in expected:
            results[i] = CallFailed(InternalError("a model service left an item unanswered"))
        return results


@dataclass(slots=True)
class _Waiting:
    item: Item
    future: asyncio.Future[Any]
    first: bool  # the first item of its caller: counts the callers in a call


class Coalescer:
    """One model version's queue of items on their way upstream, sent as ``PredictBatch`` calls.

    >>> results = await coalescer.run([Item(message, deadline)])  # one result, error or marker per item
    """

    def __init__(
        self,
        name: str,
        version: str,
        send: Send,
        result: Callable[[Mapping[str, Any]], Any],
        *,
        max_batch: int,
        max_calls: int,
        max_bytes: int = 8 * 1024 * 1024,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.max_bytes = max_bytes
        """Most bytes of items in one queued call (half the hop's message limit: room for the answers)."""
        self._upstream = _Upstream(name, version, send, result)
        self.policy = BatchPolicy(max_batch_size=max_batch, max_delay_s=0.0, max_concurrency=max_calls)
        self._on_batch = on_batch
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._wakeup = asyncio.Event()
        self._running = 0
        self._yields = 0
        self._driver: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def supported(self) -> bool:
        """False once a model service answered UNIMPLEMENTED (an older release without ``PredictBatch``)."""
        return self._upstream.supported

    async def run(self, items: Sequence[Item]) -> list[Any]:
        """Send ``items`` with whatever else is waiting; one result, ``ModelwireError`` or marker per item."""
        if self._closed:
            raise UnavailableError(f"model {self.name!r} is shutting down")
        if not self._queue and not self._yields and self._running < self.policy.max_concurrency:
            # The hop is idle and there is no sign of load: this caller's call, in its own task, at once.
            return await self._call_alone(items)
        loop = asyncio.get_running_loop()
        if self._driver is None or self._driver.done():
            # A context of its own: the driver outlives this request, and must carry no caller's trace.
            self._driver = loop.create_task(
                self._drive(), name=f"coalescer:{self.name}", context=contextvars.Context()
            )
        waiting = [_Waiting(item, loop.create_future(), i == 0) for i, item in enumerate(items)]
        self._queue.extend(waiting)
        self._wakeup.set()
        futures = [w.future for w in waiting]
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:  # the caller left: its items are skipped, or their answers dropped
            for future in futures:
                future.cancel()
            raise

    async def _call_alone(self, items: Sequence[Item]) -> list[Any]:
        self._running += 1
        try:
            if self._on_batch is not None:
                self._on_batch(len(items))
            return await self._upstream.predict(items)
        finally:
            self._running -= 1
            if self._queue:
                self._wakeup.set()

    async def _drive(self) -> None:
        while not self._closed:
            self._drop_cancelled_head()
            step = plan(len(self._queue), 0.0, self._running, self.policy)
            if isinstance(step, Flush):
                if self._yields and step.size < self.policy.max_batch_size:
                    step = await self._gather_more()
                    if not isinstance(step, Flush):
                        continue
                self._dispatch(step.size)
                continue
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _gather_more(self) -> Flush | Wait:
        """Under load, let the loop run a few cycles so that requests already on their way join."""
        before = len(self._queue)
        for _ in range(self._yields):
            await asyncio.sleep(0)
            if self._closed or len(self._queue) >= self.policy.max_batch_size:
                break
        self._drop_cancelled_head()
        self._yields = next_yields(self._yields, max(0, len(self._queue) - before), 0, self.policy)
        return plan(len(self._queue), 0.0, self._running, self.policy)

    def _drop_cancelled_head(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()

    def _dispatch(self, size: int) -> None:
        taken: list[_Waiting] = []
        total = 0
        while self._queue and len(taken) < size:
            waiting = self._queue[0]
            if taken and total + waiting.item.size > self.max_bytes:
                break  # the next call takes it
            self._queue.popleft()
            if not waiting.future.done():
                taken.append(waiting)
                total += waiting.item.size
        if not taken:
            return
        if not self._yields:
            self._yields = next_yields(0, 0, sum(w.first for w in taken), self.policy)
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._call(taken))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _call(self, taken: list[_Waiting]) -> None:
        try:
            if self._on_batch is not None:
                self._on_batch(len(taken))
            try:
                results = await self._upstream.predict([w.item for w in taken])
            except Exception as exc:  # a bug here must not leave callers waiting forever
                error = InternalError(f"the call to the model services for {self.name!r} failed")
                logger.error("coalesced call failed [error_id=%s]", error.error_id, exc_info=exc)
                results = [CallFailed(error)] * len(taken)
            for waiting, result in zip(taken, results, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(result)
        finally:
            self._running -= 1
            self._wakeup.set()

    async def close(self) -> None:
        """Fail what is still queued; cancel the calls in flight and the driver."""
        self._closed = True
        self._wakeup.set()
        gone = CallFailed(UnavailableError(f"model {self.name!r} is shutting down"))
        while self._queue:
            waiting = self._queue.popleft()
            if not waiting.future.done():
                waiting.future.set_result(gone)
        tasks = [*self._calls, *([self._driver] if self._driver is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
