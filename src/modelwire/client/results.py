"""What the client returns: typed, frozen results built from either wire's answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelwire.errors import ModelwireError

__all__ = ["Event", "Health", "ModelSummary", "ModelVersionStatus", "Prediction", "StreamedPrediction"]


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


@dataclass(frozen=True, slots=True)
class StreamedPrediction:
    """One answer of ``stream_predict``, sent as soon as it was ready (not in input order).

    ``index`` is the input's position in ``texts``; ``result`` is its ``Prediction``, or the error that
    input alone met (the other inputs still answer).
    """

    index: int
    result: Prediction | ModelwireError

    @property
    def ok(self) -> bool:
        return isinstance(self.result, Prediction)


@dataclass(frozen=True, slots=True)
class Event:
    """One event from the server's event bus, whichever wire (SSE, WebSocket, gRPC) brought it.

    ``topic`` is where it was published (``metrics``, ``models``, ``server``, ``jobs/<id>``) and ``type``
    what happened (``metrics``, ``model.loaded``, ``server.stopping``, ...). Keep ``id`` to resume later
    with ``events(..., last_event_id=id)``. A ``reset`` (``is_reset``; ``id`` is None) says events were
    missed because the id was too old: re-read the state instead of trusting a gap-free stream.

    >>> e = Event.from_dict({"id": 7, "topic": "models", "type": "model.loaded", "time": 1.5, "data": {}})
    >>> e.id, e.type, e.is_reset
    (7, 'model.loaded', False)
    """

    id: int | None
    topic: str
    type: str
    time: float
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_reset(self) -> bool:
        return self.type == "reset"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        raw_id = raw.get("id")
        try:
            event_id = int(raw_id) if raw_id not in (None, "") else None
        except (TypeError, ValueError):
            event_id = None
        data = raw.get("data")
        stamp = raw.get("time")
        return cls(
            id=event_id,
            topic=str(raw.get("topic") or ""),
            type=str(raw.get("type") or ""),
            time=float(stamp) if isinstance(stamp, int | float) else 0.0,
            data=dict(data) if isinstance(data, Mapping) else {},
        )
