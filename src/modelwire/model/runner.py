"""Calls a model's ``predict`` safely: off the event loop when it is sync, with its exceptions translated.

This is the one boundary where a model framework's exceptions become ``ModelwireError``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.trace import Tracer

from modelwire.errors import InvalidInputError, ModelError, ModelwireError
from modelwire.model.base import Model
from modelwire.observability.tracing import child_span, sampled

__all__ = ["ModelRunner", "TracedRunner", "map_model_exceptions"]

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


def _in_thread(
    loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, fn: Any, arg: Any
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
        try:
            result = fn(arg)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            _hand_back(loop, _fail, future, exc)
        else:
            _hand_back(loop, _succeed, future, result)

    executor.submit(call)
    return future


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

    def __init__(self, model: Model, executor: ThreadPoolExecutor | None = None) -> None:
        self.model = model
        self._executor = executor
        self._is_async = inspect.iscoroutinefunction(model.predict)

    async def run(self, batch: Sequence[Any]) -> list[Any]:
        with map_model_exceptions(self.model):
            if self._is_async:
                outputs = await self.model.predict(batch)
            else:
                loop = asyncio.get_running_loop()
                if self._executor is None:
                    outputs = await loop.run_in_executor(None, self.model.predict, batch)
                else:
                    outputs = await _in_thread(loop, self._executor, self.model.predict, batch)
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
