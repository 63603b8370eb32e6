"""Test doubles: real subclasses of the public ``Model`` (as MLServer's tests/fixtures.py does)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from modelwire import Datatype, InvalidInputError, Model, TensorSpec


class EchoModel(Model):
    """Returns ``{"echo": text, "length": len(text)}``; records every batch it was called with."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("echo", Datatype.BYTES),
        TensorSpec("length", Datatype.INT64),
    )

    def __init__(self, name: str = "echo", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.calls: list[list[Any]] = []
        self._lock = threading.Lock()

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        with self._lock:
            self.calls.append(list(batch))
        delay = float(self.options.get("delay_s", 0.0))
        if delay:
            time.sleep(delay)
        out: list[Any] = []
        for item in batch:
            if not isinstance(item, str):
                out.append(InvalidInputError(f"text must be a string, not {type(item).__name__}"))
            elif item == "bad":
                out.append(InvalidInputError("the model refuses the text 'bad'"))
            else:
                out.append({"echo": item, "length": len(item)})
        return out


class SumModel(Model):
    """Async model: sums a row of numbers."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("values", Datatype.FP32, (-1, -1)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("total", Datatype.FP64),)

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        return [float(sum(row)) for row in batch]


class ErrorModel(Model):
    """Raises a plain exception from predict: the server must answer INTERNAL with an error id."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        raise RuntimeError("secret internal detail that must not reach the client")


class SlowModel(Model):
    """Sleeps ``delay_s`` (default 0.5) before answering; ``hang`` models one that never returns in time."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("echo", Datatype.BYTES),)

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        await asyncio.sleep(float(self.options.get("delay_s", 0.5)))
        return [{"echo": item} for item in batch]


class IdentityModel(Model):
    """Answers each instance with itself and the Python type it arrived as (what crossed the wire)."""

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        return [{"value": item, "type": type(item).__name__} for item in batch]


class CrashModel(Model):
    """Echoes, but ends the whole process (exit code 3) on the text ``crash``: a poison message."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        import os

        if "crash" in batch:
            os._exit(3)
        return [{"echo": item} for item in batch]
