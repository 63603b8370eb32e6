"""The public ``Model`` base class: the one extension point every runtime implements."""

from __future__ import annotations

import enum
import inspect
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelwire.monitoring.profiles import ReferenceProfile

__all__ = ["Datatype", "Model", "TensorSpec"]


class Datatype(enum.StrEnum):
    """Open Inference Protocol tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One declared input or output. ``shape`` includes the batch dimension as ``-1``."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...] = (-1,)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype.value, "shape": list(self.shape)}


@dataclass(slots=True)
class ModelInfo:
    """What a loaded model says about itself (served by the metadata endpoints)."""

    name: str
    version: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)


class Model:
    """Base class of every servable model.

    A model receives a *batch*: a list of instances, one per request item, and returns one output per
    instance, in order. An output may be an ``Exception`` (ideally a ``ModelwireError``) to fail that item
    alone. ``predict`` may be ``def`` (run in a worker thread, off the event loop) or ``async def``.

    Subclass it to serve your own::

        class Reverse(Model):
            inputs = (TensorSpec("text", Datatype.BYTES),)
            outputs = (TensorSpec("reversed", Datatype.BYTES),)

            def load(self) -> None:
                self.suffix = "!"

            def predict(self, batch):
                return [{"reversed": text[::-1] + self.suffix} for text in batch]

    and run ``modelwire serve mypackage.models:Reverse``.
    """

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("input", Datatype.BYTES),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("output", Datatype.BYTES),)
    platform: ClassVar[str] = "python"
    warmup_inputs: ClassVar[tuple[Any, ...]] = ()
    """Instances run once, as one batch, after ``load`` and before the version is ready (the registry
    does it), so the first request never pays the cold path. A failing one fails the load."""
    features: ClassVar[tuple[str, ...]] = ()
    """Online features the model needs (``("user_stats:avg_rating", ...)``; docs/features.md): a request's
    instance then carries ``{"entity": {"user_id": "u42"}, ...}`` and reaches ``predict`` with
    ``"features": {"user_stats:avg_rating": 4.5, ...}`` added, fetched for the whole batch in one store
    call (``features/join.py``)."""
    feature_defaults: ClassVar[Mapping[str, Any]] = {}
    """What a missing or expired feature reads as; a feature without a default fails the item instead."""
    entities: Sequence[str] = ()
    """The entity key a request's instances carry (``("user_id",)``): set by the feature join
    (``features/join.py``) from the views of the model's features; empty for a model joining none. A
    ``"sticky": "entity"`` canary split keys on it (``model/traffic.py``)."""

    def __init__(self, name: str, version: str = "1", **options: Any) -> None:
        self.name = name
        self.version = version
        self.options = options

    def load(self) -> Any:
        """Load weights and warm up. Sync or async; called once before the model serves."""
        return None

    def unload(self) -> Any:
        """Release what ``load`` took. Sync or async."""
        return None

    def memory_bytes(self) -> int | None:
        """The memory this loaded model holds, when the runtime knows it better than a measurement (memory
        kept outside Python objects: a native session, a GPU). ``None`` (the default): the memory budget
        measures the load instead (``model/footprint.py``)."""
        return None

    def predict(self, batch: Sequence[Any]) -> Any:
        """Return one output per instance of ``batch``, in order (a list, or awaitable of one)."""
        raise NotImplementedError

    async def predict_stream(self, instance: Any) -> AsyncIterator[Any]:
        """Yield partial outputs for one instance. The default yields the single full prediction."""
        result = self.predict([instance])
        if inspect.isawaitable(result):
            result = await result
        yield next(iter(result))

    def info(self) -> ModelInfo:
        """Metadata served by ``GET /v2/models/{name}`` and ``ModelMetadata``."""
        return ModelInfo(self.name, self.version, self.platform, tuple(self.inputs), tuple(self.outputs))

    def reference(self) -> tuple[ReferenceProfile | None, str]:
        """The reference profile the drift monitors compare this version's traffic with, and where it
        came from (or why there is none): ``(None, "no reference")`` unless a runtime saves one."""
        return None, "no reference: this model's runtime saves no profile"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.predict)
