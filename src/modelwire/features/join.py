"""The feature join: a model that declares ``features`` gets them attached to every instance of a batch,
fetched in ONE store call per batch, whatever the wire the requests came in on.

How it works. ``FeatureJoin`` wraps the model (wrap, don't patch: it is a ``Model`` with the same name,
version, inputs and outputs) and is what the registry's runner, and so the batcher, calls. A batch is the
requests the batcher coalesced (from REST, gRPC, WebSocket, SSE, jobs, queues alike), so the store is asked
once for all of them: the join adds one round trip per batch, never one per item. The store call runs
inside the request's deadline (the ``DataPlane`` bounds the whole run) and within the model's own
``limits.request_timeout_s``.

Each instance must be a JSON object holding ``entity`` (``{"user_id": "u42"}``); it reaches ``predict``
with ``features`` added: ``{"user_stats:avg_rating": 4.5, ...}``. A feature NOT_FOUND or OUTSIDE_MAX_AGE
reads as the model's ``feature_defaults`` entry, or, with none declared, fails that item alone
(``FailedPreconditionError`` naming the feature, the entity and the status); the other items go on. An
item's error names its place in the request (``$.instances[3]``), as every item error does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

from modelwire.errors import FailedPreconditionError, InvalidInputError, ModelError, ModelwireError
from modelwire.features.rows import entity_key
from modelwire.features.service import PRESENT, FeatureService
from modelwire.features.views import FeatureRef
from modelwire.model.base import Model, ModelInfo

__all__ = ["FeatureJoin", "join_features"]


def join_features(model: Model, features: FeatureService, *, timeout_s: float = 30.0) -> Model:
    """``model`` wrapped in a ``FeatureJoin`` when it declares ``features`` (checked against the views:
    a feature no view defines is a ``ConfigurationError`` naming the model), else ``model`` itself."""
    if not model.features:
        return model
    features.views.check_model(model.name, model.features)
    return FeatureJoin(model, features, timeout_s=timeout_s)


class FeatureJoin(Model):
    """``inner`` with its declared features attached to each instance (see the module's docstring)."""

    def __init__(self, inner: Model, features: FeatureService, *, timeout_s: float = 30.0) -> None:
        super().__init__(inner.name, inner.version, **inner.options)
        self.inner = inner
        self.service = features
        self.refs: list[FeatureRef] = features.views.resolve(inner.features)
        self.defaults = dict(inner.feature_defaults)
        self.timeout_s = timeout_s
        self.entities = sorted({e for ref in self.refs for e in features.views.get(ref.view).entities})
        self.inputs = inner.inputs  # type: ignore[misc]  # the instance's own, as the model declares them
        self.outputs = inner.outputs  # type: ignore[misc]

    def load(self) -> Any:
        return self.inner.load()

    def unload(self) -> Any:
        return self.inner.unload()

    def memory_bytes(self) -> int | None:
        return self.inner.memory_bytes()

    def info(self) -> ModelInfo:
        info = self.inner.info()
        info.extra = {**info.extra, "features": [str(r) for r in self.refs], "entities": self.entities}
        return info

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        keep: list[int] = []
        rows: list[dict[str, Any]] = []
        for i, instance in enumerate(batch):
            try:
                rows.append(self._entity(instance))
                keep.append(i)
            except ModelwireError as exc:
                results[i] = exc
        if keep:
            async with asyncio.timeout(self.timeout_s):
                values = await self.service.lookup(self.refs, rows, where="$.entity")
            joined: list[Any] = []
            kept: list[int] = []
            for i, row, found in zip(keep, rows, values, strict=True):
                attached: dict[str, Any] = {}
                for ref, value in zip(self.refs, found, strict=True):
                    name = str(ref)
                    if value.status == PRESENT:
                        attached[name] = value.value
                    elif name in self.defaults:
                        attached[name] = self.defaults[name]
                    else:
                        results[i] = FailedPreconditionError(
                            f"feature {name} of {row} is {value.status} and model {self.name!r} declares "
                            "no default for it",
                            details={"feature": name, "status": value.status},
                        )
                        break
                else:
                    joined.append({**batch[i], "features": attached})
                    kept.append(i)
            if joined:
                outputs = await self._inner_predict(joined)
                for i, output in zip(kept, outputs, strict=True):
                    results[i] = output
        return results

    def _entity(self, instance: Any) -> dict[str, Any]:
        entity = instance.get("entity") if isinstance(instance, dict) else None
        if not isinstance(entity, dict):
            raise InvalidInputError(
                f"model {self.name!r} joins features by {', '.join(self.entities)}: send an object with "
                f'"entity": {{"{self.entities[0]}": ...}}'
            )
        missing = [e for e in self.entities if e not in entity]
        if missing:
            raise InvalidInputError(f"the entity lacks {missing[0]!r}")
        try:
            entity_key([entity[e] for e in self.entities], self.entities, "entity")  # its values' types
        except InvalidInputError as exc:
            exc.field = None  # the DataPlane names the item's place in the request ($.instances[3])
            raise
        return entity

    async def _inner_predict(self, batch: list[Any]) -> list[Any]:
        if inspect.iscoroutinefunction(self.inner.predict):
            outputs = await self.inner.predict(batch)
        else:
            outputs = await asyncio.to_thread(self.inner.predict, batch)
            if inspect.isawaitable(outputs):
                outputs = await outputs
        out = list(outputs)
        if len(out) != len(batch):
            err = ModelError(f"model {self.name!r} returned {len(out)} outputs for {len(batch)} inputs")
            return [err] * len(batch)
        return out
