"""Calls a model's ``predict`` safely, with its exceptions translated.

This is the one boundary where a model framework's exceptions become ``ModelwireError``s.

Where a sync ``predict`` runs. In a worker thread by default, so a slow model never stalls the event loop
(health checks, other models, streams). But handing a call to a thread and back costs two wake-ups and two
GIL hand-overs, which for a model that answers in a fraction of a millisecond is most of a request at low
concurrency. So each runner measures its model's calls (``CallCost``) and, once it has seen enough of them,
runs a call *inline on the loop* when the call is expected to take less than ``inline_below_s`` (the
``batching.inline_below_ms`` setting, 1 ms by default; 0: always a thread). The estimate scales with the
batch's size, and one inline call that takes long (an unusual input, a model that got slower) lifts it over
the limit at once, so the next calls go back to the thread, where they are measured again. What the loop can
be held for is thus about one call of a model measured as cheap, as by any Python code run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.trace import Tracer

from modelwire.errors import InvalidInputError, ModelError, ModelwireError
from modelwire.model.base import Model
from modelwire.observability.tracing import child_span, sampled

__all__ = ["CallCost", "ModelRunner", "TracedRunner", "map_model_exceptions"]

logger = logging.getLogger("modelwire.model")


@contextlib.contextmanager
def map_model_exceptions(model: Model) -> Iterator[None]:
    """Translate anything a model raises into the error tree, logging unexpected ones with an error id."""
    try:
        yield
    except ModelwireError:
        raise
    except (ValueError, TypeError) as exc:
        # Frameworks (scikit-learn, numpy, onnxruntime) raise these for inputs of the wrong shape or type.
        raise InvalidInputError(f"model {model.name!r} rejected the input: {exc}") from exc
    except Exception as exc:
        err = ModelError(f"model {model.name!r} failed while predicting")
        logger.exception("model %s version %s raised [error_id=%s]", model.name, model.version, err.error_id)
        raise err from exc


def _per_item(model: Model, outputs: Any, expected: int) -> list[Any]:
    try:
        items = list(outputs)
    except TypeError as exc:
        raise ModelError(f"model {model.name!r} returned {type(outputs).__name__}, not a sequence") from exc
    if len(items) != expected:
        err = ModelError(f"model {model.name!r} returned {len(items)} outputs for {expected} inputs")
        logger.error("%s [error_id=%s]", err.message, err.error_id)
        raise err
    return [_item_error(model, item) if isinstance(item, BaseException) else item for item in items]


def _item_error(model: Model, exc: BaseException) -> ModelwireError:
    if isinstance(exc, ModelwireError):
        return exc
    if isinstance(exc, ValueError | TypeError):
        return InvalidInputError(f"model {model.name!r} rejected the input: {exc}")
    err = ModelError(f"model {model.name!r} failed on this item")
    logger.error("model %s item failed: %r [error_id=%s]", model.name, exc, err.error_id)
    return err


class CallCost:
    """What a model's sync calls have cost: decides whether the next call may run inline on the loop.

    An exponentially weighted mean of the calls' wall time and of their batch sizes; a call of ``n`` items
    is expected to take ``mean_s * n / mean_items`` (the fixed part of a call scaled too: on the safe side).
    Nothing is inline before ``warmup`` calls have been measured, nor ever with a limit of 0. Weight 1/4:
    one call 5x over the limit lifts the mean over it.
    """

    __slots__ = ("calls", "limit_s", "mean_items", "mean_s", "warmup")

    def __init__(self, limit_s: float, warmup: int = 8) -> None:
        self.limit_s = limit_s
        self.warmup = warmup
        self.calls = 0
        self.mean_s = 0.0
        self.mean_items = 1.0

    def inline(self, items: int) -> bool:
        """True when a call of ``items`` items is expected to finish within the limit."""
        if self.calls < self.warmup or self.limit_s <= 0:
            return False
        return self.mean_s * items < self.limit_s * self.mean_items

    def observe(self, seconds: float, items: int) -> None:
        if self.calls == 0:
            self.mean_s, self.mean_items = seconds, float(items)
        else:
            self.mean_s += (seconds - self.mean_s) * 0.25
            self.mean_items += (items - self.mean_items) * 0.25
        self.calls += 1


def _in_thread(
    loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, fn: Any, arg: Any, cost: CallCost
) -> asyncio.Future[Any]:
    """``loop.run_in_executor(executor, fn, arg)`` with one hand-back instead of two chained futures.

    ``run_in_executor`` wraps the executor's ``concurrent.futures.Future`` in an asyncio one and copies
    the state across with callbacks on both sides; here the worker sets the asyncio future itself, through
    ``call_soon_threadsafe`` (the same one wake-up of the loop). A future cancelled before the worker
    starts skips the call, as a cancelled ``run_in_executor`` does.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def call() -> None:
        if future.cancelled():
            return
        started = time.perf_counter()
        try:
            result = fn(arg)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            _hand_back(loop, _fail, future, exc)
        else:
            _hand_back(loop, _succeed, future, result)
        finally:
            # Read and written from this worker only while the loop awaits the call: the runner's cost
            # object is shared, but a model's calls measured in threads at the same time (max_concurrency
            # > 1) only blur the mean, which is all it is.
            cost.observe(time.perf_counter() - started, len(arg))

    executor.submit(call)
    return future


def _timed(fn: Any, arg: Any, cost: CallCost) -> Any:
    started = time.perf_counter()
    try:
        return fn(arg)
    finally:
        cost.observe(time.perf_counter() - started, len(arg))


def _hand_back(loop: asyncio.AbstractEventLoop, setter: Any, future: asyncio.Future[Any], value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody awaits the answer
        loop.call_soon_threadsafe(setter, future, value)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class ModelRunner:
    """Runs one model's ``predict`` on a batch and returns one result or ``ModelwireError`` per item."""

    def __init__(
        self, model: Model, executor: ThreadPoolExecutor | None = None, *, inline_below_s: float = 0.0
    ) -> None:
        self.model = model
        self._executor = executor
        self._is_async = inspect.iscoroutinefunction(model.predict)
        self.cost = CallCost(inline_below_s)
        """The model's measured calls; a sync call expected under ``inline_below_s`` runs on the loop."""

    def inline(self, items: int) -> bool:
        """True when a call of ``items`` items would run on the loop, with no await in it."""
        return not self._is_async and self.cost.inline(items)

    async def run(self, batch: Sequence[Any]) -> list[Any]:
        with map_model_exceptions(self.model):
            if self._is_async:
                outputs = await self.model.predict(batch)
            else:
                cost = self.cost
                if cost.inline(len(batch)):
                    started = time.perf_counter()
                    try:
                        outputs = self.model.predict(batch)
                    finally:
                        cost.observe(time.perf_counter() - started, len(batch))
                else:
                    loop = asyncio.get_running_loop()
                    if self._executor is None:  # the loop's default executor (tests, tools)
                        outputs = await loop.run_in_executor(None, _timed, self.model.predict, batch, cost)
                    else:
                        outputs = await _in_thread(loop, self._executor, self.model.predict, batch, cost)
                if inspect.isawaitable(outputs):
                    outputs = await outputs
        return _per_item(self.model, outputs, len(batch))


class TracedRunner:
    """A ``ModelRunner`` whose every call is a ``model predict <name>`` span (span export on).

    It wraps the runner (the registry puts it in only when a tracer is installed), so with export off the
    model call costs nothing more than before.
    """

    def __init__(self, runner: ModelRunner, tracer: Tracer) -> None:
        self.runner = runner
        self.model = runner.model
        self._tracer = tracer

    def inline(self, items: int) -> bool:
        return self.runner.inline(items)

    async def run(self, batch: Sequence[Any]) -> list[Any]:
        if not sampled():
            return await self.runner.run(batch)
        attributes: dict[str, str | int] = {
            "modelwire.model": self.model.name,
            "modelwire.model.version": self.model.version,
            "modelwire.batch.size": len(batch),
        }
        with child_span(self._tracer, f"model predict {self.model.name}", attributes):
            return await self.runner.run(batch)
