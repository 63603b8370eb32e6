"""Test models for the gateway tests: real ``Model`` subclasses, loaded by ``modelwire model-service``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from modelwire import Datatype, Model, TensorSpec
from modelwire.errors import ErrorCode, error_from_code
from modelwire.observability.tracing import current_trace


class PidModel(Model):
    """``{"echo": text, "pid": <the serving process>}`` after ``delay_s``: the reply says who answered."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("echo", Datatype.BYTES),
        TensorSpec("pid", Datatype.INT64),
    )

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        await asyncio.sleep(float(self.options.get("delay_s", 0.0)))
        return [{"echo": text, "pid": os.getpid()} for text in batch]


class CancelledModel(Model):
    """Sleeps ``delay_s``; when cancelled first, writes ``<marker_dir>/<request id>`` (the trace's)."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        try:
            await asyncio.sleep(float(self.options.get("delay_s", 30.0)))
        except asyncio.CancelledError:
            trace = current_trace()
            name = trace.request_id if trace is not None else "no-trace"
            (Path(self.options["marker_dir"]) / name).write_text(trace.trace_id if trace else "")
            raise
        return [{"output": text} for text in batch]


class RaisingModel(Model):
    """Raises the error whose ``ErrorCode`` is the text (``INTERNAL``: a plain exception, as a bug would)."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        code = ErrorCode(batch[0])
        if code is ErrorCode.INTERNAL:
            raise RuntimeError("a bug in the model")
        retry = 7.0 if code in (ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE) else None
        raise error_from_code(
            code.value, f"raised {code.value} on purpose", retry_after_s=retry, field="$.why"
        )


class TagModel(Model):
    """``{"tag": <option tag>}``: tells in-process model services apart."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        return [{"tag": self.options["tag"]} for _ in batch]


class FlakyModel(Model):
    """Every odd-numbered call raises UNAVAILABLE (an overloaded service): a retry on the next one works.
    With the option ``always``, every call does."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str, version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.calls = 0

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.calls += 1
        if self.calls % 2 or self.options.get("always"):
            raise error_from_code("UNAVAILABLE", "busy, try again", retry_after_s=0.0)
        return [{"call": self.calls} for _ in batch]


class GatedEchoModel(Model):
    """``{"echo": text}`` per item; ``"bad"`` is that item's own error. Records every call's batch and the
    time left of its deadline; a batch holding ``"hold"`` waits for ``hold``, one holding ``"block"`` for
    ``block`` (events the test sets). For coalescing tests, in the test's own process."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str, version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.calls: list[list[str]] = []
        self.time_left: list[float | None] = []
        self.hold = asyncio.Event()
        self.block = asyncio.Event()

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        from modelwire.core.deadline import remaining_s
        from modelwire.errors import InvalidInputError

        self.calls.append(list(batch))
        self.time_left.append(remaining_s())
        if "hold" in batch:
            await self.hold.wait()
        if "block" in batch:
            await self.block.wait()
        return [
            InvalidInputError("a bad item", field="$.text") if text == "bad" else {"echo": text}
            for text in batch
        ]
