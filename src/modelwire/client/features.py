"""What a wire does for the feature store (``FeatureWire``), and the rows a push sends.

The answers are the REST shapes on both wires: ``get`` Feast's column-wise
``{"metadata": {"feature_names": [...]}, "results": [{"values", "statuses", "event_timestamps"}]}``,
``push`` ``{"view", "applied", "skipped"}``, ``views`` the list ``GET /v1/features`` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["PUSH_CHUNK", "FeatureWire"]

PUSH_CHUNK = 1000
"""Rows per message (gRPC) or per NDJSON write (REST) while a push streams."""


class FeatureWire(Protocol):
    async def get(
        self, features: Sequence[str], entities: Mapping[str, Sequence[Any]], *, full_feature_names: bool
    ) -> dict[str, Any]: ...

    async def push(self, view: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]: ...

    async def views(self) -> list[dict[str, Any]]: ...
