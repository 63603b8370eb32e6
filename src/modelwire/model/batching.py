"""Adaptive batching.

How it works. Every request item becomes a ``_Pending`` on one FIFO per model; the items of one ``run``
call share one ``_Call``: a future and a list of results, the future resolved when the last item is (so a
job's 256 rows cost one future and one wake-up of their caller, not 256 and a ``gather``). A single asyncio
task, the driver, asks the pure function ``plan()`` what to do with the queue and does it:

* ``Flush(n)``: take the first ``n`` live items, call the model once on them (at most
  ``max_concurrency`` such calls at a time), and give each item its own result or error.
* ``Wait(seconds)``: sleep until that long has passed or a new item arrives, then ask again.

The policy is adaptive: while the model is busy the queue grows, and the next call takes everything that
arrived meanwhile (up to ``max_batch_size``), so batches grow with load and cost nothing at low load.
``max_delay_ms`` is how long an item may wait for companions while the model is idle; 0 dispatches at once.

Yielding to the loop before a dispatch. Some listeners hand requests to the loop one poll cycle at a time:
grpc.aio accepts one call per completion-queue round trip, so at concurrency 32 the batcher sees one or two
calls at a time while the rest wait inside gRPC's core, and an idle model would take nearly every call
alone (a model call and a thread hop each). So when there is evidence of concurrent load, the driver lets
the loop run up to ``max_yields`` more cycles before it dispatches to an idle model, and the items
delivered meanwhile join the batch. ``next_yields`` adapts that number: a batch of two or more callers
formed while the model was busy starts it, yielding that gathers items keeps it, yielding that gathers nothing
halves it down to 0; so a lone caller (concurrency 1) never sees a batch of two and pays nothing: its
item is dispatched at once, as before. A cycle that brought nothing first yields the core
(``os.sched_yield``): the threads that hand requests to the loop (granian's, which complete every WebSocket
``receive()``; gRPC's poller) may share it, and a cycle of the loop cannot see what they had no CPU to hand
over (WebSocket messages batched 3.5 items per call without it, 27 with it; docs/decisions.md, "WebSocket
pipelining and the 100,000-row job").

A lone call to an idle model that runs inline (``ModelRunner.inline``: a sync model measured cheap, see
``model/runner.py``) is run in the caller's own task: no batch task, nothing to wake the caller. Nothing
could have joined its batch anyway (the queue was empty and the call holds the loop until it ends).

When the model rejects a whole call with ``InvalidInputError`` (one malformed row is enough for most
frameworks), each item is retried alone, so the error reaches only the caller that sent it.

Cancelling a request (client gone, deadline passed) cancels its call's future; the items of a cancelled
call are skipped when a batch is formed, so they never reach the model. An item already inside a running
call is simply not answered. ``BatchingRunner`` has the same ``run(batch)`` face as ``ModelRunner``: it
wraps, never patches.

With span export on (``observability/tracing.py``), each item keeps its request's trace context: when its
batch is dispatched it gets a ``batch wait`` span (enqueued -> dispatched), and the model call runs in the
context of the batch's first request, so its ``model predict`` span is a child of that request's span.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import os
import time
from collections.abc import Callable, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Tracer

from modelwire.errors import InvalidInputError, ModelwireError, UnavailableError
from modelwire.model.runner import ModelRunner, TracedRunner
from modelwire.observability.tracing import sampled, wall_ns_ago

__all__ = ["BatchPolicy", "BatchingRunner", "Flush", "Wait", "next_yields", "plan"]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_delay_s: float = 0.0
    max_concurrency: int = 1
    max_yields: int = 32
    """Most loop cycles to let pass before dispatching to an idle model under load (0: never yield)."""


@dataclass(frozen=True, slots=True)
class Flush:
    size: int


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float | None  # None: until something changes


def plan(queued: int, oldest_age_s: float, running: int, policy: BatchPolicy) -> Flush | Wait:
    """Decide the next step from the queue alone. Pure: no clock, no I/O."""
    if queued == 0 or running >= policy.max_concurrency:
        return Wait(None)
    if queued >= policy.max_batch_size:
        return Flush(policy.max_batch_size)
    remaining = policy.max_delay_s - oldest_age_s
    if remaining <= 0:
        return Flush(queued)
    return Wait(remaining)


def next_yields(yields: int, gathered: int, callers: int, policy: BatchPolicy) -> int:
    """How many loop cycles to yield before the next dispatch to an idle model. Pure.

    ``yields`` is the current number; ``gathered`` how many items arrived while this dispatch yielded
    (0 when it did not); ``callers`` how many ``run`` calls the dispatched items came from. Yielding that
    gathered something keeps it at ``max_yields``; yielding that gathered nothing halves it (down to 0:
    dispatch at once); a batch of two or more callers formed without yielding (they arrived while the
    model was busy) is evidence of concurrent load, and sets it to ``max_yields``. One caller's many
    items are not.
    """
    if yields > 0:
        return policy.max_yields if gathered else yields // 2
    return policy.max_yields if callers >= 2 else 0


def _nothing_else_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """True when no other callback than timers and the loop's own wake-up drain waits to run in this turn.

    Under concurrent load the other requests are there (granian and grpc.aio hand them over as callbacks),
    and running a lone call at once would give each of them a model call of its own, never a batch: in an
    A/B at c=32 that cost 0.77x the req/s. asyncio's loops keep that queue in ``_ready`` (private, read
    only; tests/model/test_batching.py fails if it goes); a loop without it (uvloop) never takes the
    shortcut.
    """
    ready = getattr(loop, "_ready", None)
    if ready is None:
        return False
    drain = getattr(loop, "_read_from_self", None)
    for handle in ready:
        if not isinstance(handle, asyncio.TimerHandle) and getattr(handle, "_callback", None) != drain:
            return False
    return True


class _Call:
    """One ``run`` call's items: one future, resolved with every item's result once the last one has its."""

    __slots__ = ("future", "left", "results")

    def __init__(self, future: asyncio.Future[list[Any]], size: int) -> None:
        self.future = future
        self.results: list[Any] = [None] * size
        self.left = size

    def resolve(self, index: int, value: Any) -> None:
        """Item ``index``'s output or ``ModelwireError`` (a value, as ``gather(return_exceptions=True)``)."""
        if self.future.done():  # the caller gave up
            return
        self.results[index] = value
        self.left -= 1
        if not self.left:
            self.future.set_result(self.results)


@dataclass(slots=True)
class _Pending:
    instance: Any
    call: _Call
    index: int  # its place in the call's results; 0 also counts the callers in a batch
    enqueued_at: float
    trace: Any = None  # the request's OpenTelemetry context, export on only


BatchObserver = Callable[[int], None]


class BatchingRunner:
    """Coalesces concurrent ``run`` calls for one model into fewer ``predict`` calls."""

    def __init__(
        self,
        runner: ModelRunner | TracedRunner,
        policy: BatchPolicy,
        *,
        on_batch: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        tracer: Tracer | None = None,
    ) -> None:
        self.runner = runner
        self._tracer = tracer
        """Span export on: each item keeps its request's trace context for its ``batch wait`` span."""
        self.model = runner.model
        self.policy = policy
        self._on_batch = on_batch
        self._clock = clock
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._running = 0
        self._driver: asyncio.Task[None] | None = None
        self._calls: dict[asyncio.Task[None], list[_Pending]] = {}
        self._closed = False
        self._yields = 0

    async def run(self, batch: Sequence[Any]) -> list[Any]:
        """Queue every item and wait for all of them; one result or ``ModelwireError`` per item."""
        if self._closed:
            raise UnavailableError(f"model {self.model.name!r} is shutting down")
        if not batch:
            return []
        loop = asyncio.get_running_loop()
        if self._driver is None or self._driver.done():
            # A context of its own: the driver outlives this request, so it must not carry its trace,
            # deadline or principal into the batches it dispatches for other requests.
            self._driver = loop.create_task(
                self._drive(), name=f"batcher:{self.model.name}", context=contextvars.Context()
            )
        now = self._clock()
        trace = otel_context.get_current() if self._tracer is not None else None
        call = _Call(loop.create_future(), len(batch))
        pending = [_Pending(item, call, i, now, trace) for i, item in enumerate(batch)]
        if (
            not self._yields
            and not self._queue
            and self._running < self.policy.max_concurrency
            and len(pending) <= self.policy.max_batch_size
            and self.runner.inline(len(pending))
            and _nothing_else_ready(loop)
        ):
            # The model is idle, nothing waits, nothing else is ready to run on the loop (so nothing could
            # join this batch in this turn) and this call will run on the loop (model/runner.py): run it in
            # this task, with no task of its own nor a wake-up of the caller. It cannot be cancelled
            # half-way: an inline call has no await in it.
            self._running += 1
            await self._call(pending)
        else:
            self._queue.extend(pending)
            # The common case at low load: the model is idle, so dispatch here rather than wake the driver.
            if not self._yields:
                step = plan(len(self._queue), 0.0, self._running, self.policy)
                if isinstance(step, Flush):
                    self._dispatch(step.size)
            if self._queue:
                self._wakeup.set()
        try:
            return await call.future
        except BaseException:  # this caller was cancelled: its items still queued are skipped
            call.future.cancel()
            raise

    async def _drive(self) -> None:
        while not self._closed:
            self._drop_cancelled_head()
            oldest = self._clock() - self._queue[0].enqueued_at if self._queue else 0.0
            step = plan(len(self._queue), oldest, self._running, self.policy)
            if isinstance(step, Flush):
                if self._yields and step.size < self.policy.max_batch_size:
                    step = await self._gather_more()
                    if not isinstance(step, Flush):
                        continue
                self._dispatch(step.size)
                continue
            self._wakeup.clear()
            if step.seconds is None:
                await self._wakeup.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step.seconds):
                    await self._wakeup.wait()

    async def _gather_more(self) -> Flush | Wait:
        """Let the loop run up to ``self._yields`` cycles so that calls already on the way are queued too."""
        before = last = len(self._queue)
        for _ in range(self._yields):
            if len(self._queue) == last:
                # The last cycle brought nothing: give the core to threads that deliver requests (granian's,
                # gRPC's poller) before the next one. Without this, on a core shared with them, a cycle of the
                # loop cannot see what they have not had the CPU to hand over, and batches stay small.
                os.sched_yield()
            last = len(self._queue)
            await asyncio.sleep(0)
            if self._closed or len(self._queue) >= self.policy.max_batch_size:
                break
        self._drop_cancelled_head()
        gathered = max(0, len(self._queue) - before)
        self._yields = next_yields(self._yields, gathered, 0, self.policy)
        oldest = self._clock() - self._queue[0].enqueued_at if self._queue else 0.0
        return plan(len(self._queue), oldest, self._running, self.policy)

    def _drop_cancelled_head(self) -> None:
        while self._queue and self._queue[0].call.future.done():
            self._queue.popleft()

    def _dispatch(self, size: int) -> None:
        taken: list[_Pending] = []
        while self._queue and len(taken) < size:
            item = self._queue.popleft()
            if not item.call.future.done():
                taken.append(item)
        if not taken:
            return
        if not self._yields:
            self._yields = next_yields(0, 0, sum(not item.index for item in taken), self.policy)
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._call(taken))
        self._calls[task] = taken

    async def _call(self, taken: list[_Pending]) -> None:
        try:
            if self._on_batch is not None:
                self._on_batch(len(taken))
            token = self._trace_batch(taken) if taken[0].trace is not None else None
            try:
                results: list[Any] = await self.runner.run([p.instance for p in taken])
            except InvalidInputError as exc:
                # The model rejected the whole call (one malformed row makes most frameworks raise), so
                # one caller's bad input would fail every request it was batched with: retry each alone.
                results = await self._one_by_one(taken) if len(taken) > 1 else [exc]
            except ModelwireError as exc:
                results = [exc] * len(taken)
            finally:
                if token is not None:
                    otel_context.detach(token)
            for item, result in zip(taken, results, strict=True):
                item.call.resolve(item.index, result)
        finally:
            self._running -= 1
            self._calls.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            if self._queue:  # the driver has work only when something waits
                self._wakeup.set()

    def _trace_batch(self, taken: list[_Pending]) -> Token[otel_context.Context]:
        """Export on: a ``batch wait`` span per item, then the first request's context made current."""
        tracer = self._tracer
        if tracer is not None:
            now = self._clock()
            for item in taken:
                if item.trace is not None and sampled(item.trace):
                    wait = tracer.start_span(
                        "batch wait",
                        context=item.trace,
                        start_time=wall_ns_ago(now - item.enqueued_at),
                        attributes={"modelwire.model": self.model.name, "modelwire.batch.size": len(taken)},
                    )
                    wait.end()
        return otel_context.attach(taken[0].trace)

    async def _one_by_one(self, taken: list[_Pending]) -> list[Any]:
        results: list[Any] = []
        for item in taken:
            if item.call.future.done():  # cancelled meanwhile: not worth a model call
                results.append(None)
                continue
            if self._on_batch is not None:
                self._on_batch(1)
            try:
                results.extend(await self.runner.run([item.instance]))
            except ModelwireError as exc:
                results.append(exc)
        return results

    async def close(self) -> None:
        """Fail what is still queued; finish the running calls someone still waits for, cancel the rest."""
        self._closed = True
        self._wakeup.set()
        while self._queue:
            item = self._queue.popleft()
            item.call.resolve(item.index, UnavailableError(f"model {self.model.name!r} is shutting down"))
        # Wait on the callers' futures, not the calls: a call whose callers all gave up (deadline passed,
        # client gone) may be stuck in a hung model, and must not hold shutdown hostage.
        awaited = {p.call.future for taken in self._calls.values() for p in taken if not p.call.future.done()}
        if awaited:
            await asyncio.wait(awaited)
        orphans = list(self._calls)
        for task in orphans:
            task.cancel()
        if orphans:
            await asyncio.gather(*orphans, return_exceptions=True)
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
