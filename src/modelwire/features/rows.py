"""A feature row, validated: the entity key, typed values and the event time (pure, no I/O).

A row (pushed or consumed) is a JSON object holding the view's entity key(s), some or all of its features
and ``event_timestamp`` (RFC 3339, or epoch seconds); a row without it takes the arrival time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from modelwire.errors import InvalidInputError
from modelwire.features.views import FeatureView, coerce

__all__ = ["EntityKey", "Row", "entity_key", "parse_row", "parse_timestamp"]

EntityKey = str
"""An entity's key as the stores keep it: the JSON array of its key values as strings (``["u42"]``)."""


def entity_key(values: Sequence[Any], names: Sequence[str], where: str) -> EntityKey:
    """The store key of an entity from its key values (strings or whole numbers)."""
    parts = []
    for name, value in zip(names, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidInputError(
                f"{where}.{name} must be a string or an integer, not {value!r:.40}", field=f"{where}.{name}"
            )
        text = str(value)
        if not text or len(text) > 256:
            raise InvalidInputError(f"{where}.{name} must be 1 to 256 characters", field=f"{where}.{name}")
        parts.append(text)
    return msgspec.json.encode(parts).decode()


def parse_timestamp(value: Any, where: str) -> float:
    """RFC 3339 (``2026-01-02T03:04:05Z``; no zone: UTC) or epoch seconds, to epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    raise InvalidInputError(
        f"{where} must be RFC 3339 (2026-01-02T03:04:05Z) or epoch seconds, not {value!r:.60}", field=where
    )


@dataclass(frozen=True, slots=True)
class Row:
    """One entity's feature values at one event time."""

    entity: EntityKey
    values: Mapping[str, Any]
    event_ts: float


def parse_row(
    view: FeatureView,
    raw: Any,
    now: float,
    where: str = "$",
    fields: Mapping[str, str] | None = None,
) -> Row:
    """Validate ``raw`` against ``view`` (``fields`` renames message fields first). Unknown fields are
    refused, so a typo is an error, not a silently dropped feature."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where} must be a JSON object, not {type(raw).__name__}", field=where)
    if fields:
        raw = {fields.get(k, k): v for k, v in raw.items()}
    missing = [name for name in view.entities if name not in raw]
    if missing:
        raise InvalidInputError(
            f"{where} lacks the entity key {missing[0]!r} of view {view.name!r}",
            field=f"{where}.{missing[0]}",
        )
    key = entity_key([raw[name] for name in view.entities], view.entities, where)
    values: dict[str, Any] = {}
    event_ts = now
    for name, value in raw.items():
        if name in view.entities:
            continue
        if name == "event_timestamp":
            event_ts = parse_timestamp(value, f"{where}.event_timestamp")
            continue
        kind = view.features.get(name)
        if kind is None:
            raise InvalidInputError(
                f"{where}.{name:.60} is not a feature of view {view.name!r} "
                f"(features: {', '.join(view.features)})",
                field=f"{where}.{name:.60}",
            )
        values[name] = coerce(kind, value, f"{where}.{name}")
    if not values:
        raise InvalidInputError(f"{where} holds no feature of view {view.name!r}", field=where)
    return Row(key, values, event_ts)
