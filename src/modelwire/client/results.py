"""What the client returns: typed, frozen results built from either wire's answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Health", "ModelSummary", "ModelVersionStatus", "Prediction"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model output.

    ``sentiment`` and ``confidence`` are filled for models that answer in the default model's shape
    (``{"sentiment": "positive", "confidence": 0.93}``); ``output`` always holds the whole answer.

    >>> p = Prediction.from_output({"sentiment": "positive", "confidence": 0.93})
    >>> p.sentiment, p.confidence
    ('positive', 0.93)
    """

    sentiment: str | None
    confidence: float | None
    output: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_output(cls, output: Mapping[str, Any]) -> Prediction:
        sentiment = output.get("sentiment")
        confidence = output.get("confidence")
        return cls(
            sentiment=sentiment if isinstance(sentiment, str) else None,
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            output=dict(output),
        )

    def to_dict(self) -> dict[str, Any]:
        """The model's answer as the server sent it (the seed's ``{"sentiment", "confidence"}``)."""
        return dict(self.output)


@dataclass(frozen=True, slots=True)
class ModelVersionStatus:
    """One version of a served model and whether it is ready to predict."""

    version: str
    ready: bool


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """A served model: its versions, which one answers by default, and the runtime serving it."""

    name: str
    default_version: str
    versions: tuple[ModelVersionStatus, ...]
    platform: str

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSummary:
        return cls(
            name=str(raw["name"]),
            default_version=str(raw["default_version"]),
            versions=tuple(
                ModelVersionStatus(str(v["version"]), bool(v["ready"])) for v in raw.get("versions", ())
            ),
            platform=str(raw.get("platform", "")),
        )

    @property
    def ready(self) -> bool:
        """Whether every version of the model is ready."""
        return bool(self.versions) and all(v.ready for v in self.versions)


@dataclass(frozen=True, slots=True)
class Health:
    """``live``: the server answers. ``ready``: every model is loaded and requests are accepted."""

    live: bool
    ready: bool
