"""Feature views, feature references (``view:feature``) and the typing of a feature's value."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelwire.errors import ConfigurationError, InvalidInputError, NotFoundError
from modelwire.settings import FeatureViewSettings

__all__ = ["FeatureRef", "FeatureView", "FeatureViews", "coerce"]


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "bool": "true or false",
    "float_vector": "a list of numbers",
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def coerce(kind: str, value: Any, where: str) -> Any:
    """``value`` as a feature of type ``kind`` holds it, or ``InvalidInputError`` naming ``where``.

    ``None`` is kept (a feature may be written as null). An int is accepted where a float is declared;
    a bool is never an int.
    """
    if value is None:
        return None
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "float_vector" and isinstance(value, list) and all(map(_finite, value)):
        return [float(v) for v in value]
    raise InvalidInputError(f"{where} must be {_KIND_WORDS[kind]}, not {value!r:.60}", field=where)


@dataclass(frozen=True, slots=True)
class FeatureView:
    """One ``[[feature_views]]`` entry: entity keys, typed features and a TTL."""

    name: str
    entities: tuple[str, ...]
    features: Mapping[str, str]
    ttl_s: float

    @classmethod
    def from_settings(cls, view: FeatureViewSettings) -> FeatureView:
        return cls(view.name, view.entities, dict(view.features), view.ttl_s)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/features`` and ``ListFeatureViews`` show."""
        return {
            "name": self.name,
            "entities": list(self.entities),
            "features": dict(self.features),
            "ttl_s": self.ttl_s,
        }


@dataclass(frozen=True, slots=True)
class FeatureRef:
    """``user_stats:avg_rating``: a feature of a view."""

    view: str
    feature: str

    @classmethod
    def parse(cls, text: str, where: str = "features") -> FeatureRef:
        view, sep, feature = text.partition(":")
        if not sep or not view or not feature:
            raise InvalidInputError(
                f"{text!r:.80} is not a feature reference: write view:feature, e.g. user_stats:avg_rating",
                field=where,
            )
        return cls(view, feature)

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


class FeatureViews:
    """The configured views by name."""

    def __init__(self, views: Iterable[FeatureView]) -> None:
        self._views = {v.name: v for v in views}

    @classmethod
    def from_settings(cls, views: Sequence[FeatureViewSettings]) -> FeatureViews:
        return cls(FeatureView.from_settings(v) for v in views)

    def __iter__(self) -> Any:
        return iter(self._views.values())

    def __len__(self) -> int:
        return len(self._views)

    def get(self, name: str) -> FeatureView:
        view = self._views.get(name)
        if view is None:
            known = ", ".join(sorted(self._views)) or "none is configured"
            raise NotFoundError(f"no feature view {name!r:.80} (views: {known})", details={"view": name[:80]})
        return view

    def resolve(self, refs: Sequence[str], where: str = "features") -> list[FeatureRef]:
        """Parse and check references; an unknown view or feature is ``InvalidInputError`` naming it."""
        out = []
        for i, text in enumerate(refs):
            ref = FeatureRef.parse(text, f"{where}[{i}]")
            view = self._views.get(ref.view)
            if view is None or ref.feature not in view.features:
                what = f"view {ref.view!r}"
                if view is not None:
                    what = f"feature {ref.feature!r} in view {ref.view!r}"
                raise InvalidInputError(f"no {what:.120} ({text!r:.80})", field=f"{where}[{i}]")
            out.append(ref)
        return out

    def check_model(self, model: str, refs: Sequence[str]) -> None:
        """At start: a model asking for a feature no view defines is a ``ConfigurationError``."""
        try:
            self.resolve(refs)
        except InvalidInputError as exc:
            raise ConfigurationError(
                f"model {model!r} declares features = {tuple(refs)}: {exc.message}; "
                "define it in [[feature_views]]"
            ) from None
