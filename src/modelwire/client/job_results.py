"""What the client returns for jobs: typed, frozen values built from either wire's answer.

Both wires hand these constructors the REST shapes (a job as ``GET /v1/jobs/{id}`` shows it, a result row
as one line of ``GET /v1/jobs/{id}/results``); the gRPC wire converts its messages to those shapes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelwire.client.results import Prediction
from modelwire.errors import ModelwireError

__all__ = ["FINAL_STATUSES", "JobEvent", "JobInfo", "JobPage", "JobResult"]

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def _error(raw: Mapping[str, Any]) -> ModelwireError:
    from modelwire.client._rest import error_from_wire  # here: importing the client loads no httpx

    return error_from_wire(raw)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job's state: ``status`` is ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.

    ``done`` of ``total`` rows have a result (``errors`` of them an error); a training job reports its
    ``stage`` and ``fraction`` instead. ``error`` says why a ``failed`` job failed; ``result`` is what a
    finished job produced besides its rows (training: the new ``version`` and its held-out ``accuracy``).

    >>> job = JobInfo.from_dict({"id": "7", "status": "running", "progress": {"done": 5, "total": 20}})
    >>> job.status, job.fraction, job.final
    ('running', 0.25, False)
    """

    id: str
    status: str
    kind: str = "predict"
    model: str = ""
    version: str | None = None
    done: int = 0
    total: int = 0
    errors: int = 0
    stage: str | None = None
    attempts: int = 0
    max_attempts: int = 0
    created_at: float | None = None
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: ModelwireError | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The job exactly as the server described it."""
    stage_fraction: float | None = None
    """A training job's progress through its current ``stage``, 0..1."""

    @property
    def final(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status in FINAL_STATUSES

    @property
    def fraction(self) -> float | None:
        """How far the job is, 0..1 (rows done of total, or the training stage's own fraction)."""
        if self.stage_fraction is not None:
            return self.stage_fraction
        if self.total:
            return self.done / self.total
        return 1.0 if self.status == "succeeded" else None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JobInfo:
        given = raw.get("progress")
        progress: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        error = raw.get("error")
        result, metadata = raw.get("result"), raw.get("metadata")
        return cls(
            id=str(raw["id"]),
            status=str(raw.get("status") or ""),
            kind=str(raw.get("kind") or "predict"),
            model=str(raw.get("model") or ""),
            version=str(raw["version"]) if raw.get("version") else None,
            done=int(progress.get("done") or 0),
            total=int(progress.get("total") or 0),
            errors=int(progress.get("errors") or 0),
            stage=str(progress["stage"]) if progress.get("stage") else None,
            attempts=int(raw.get("attempts") or 0),
            max_attempts=int(raw.get("max_attempts") or 0),
            created_at=_float(raw.get("created_at")),
            updated_at=_float(raw.get("updated_at")),
            started_at=_float(raw.get("started_at")),
            finished_at=_float(raw.get("finished_at")),
            error=_error(error) if isinstance(error, Mapping) else None,
            result=dict(result) if isinstance(result, Mapping) else {},
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
            raw=dict(raw),
            stage_fraction=_float(progress.get("fraction")),
        )


@dataclass(frozen=True, slots=True)
class JobResult:
    """One row's result: ``index`` is the row's position in the job's input; ``result`` its
    ``Prediction``, or the error that row alone met (one bad row does not fail the job).

    >>> JobResult.from_dict({"index": 3, "sentiment": "positive", "confidence": 0.9}).result.sentiment
    'positive'
    """

    index: int
    result: Prediction | ModelwireError

    @property
    def ok(self) -> bool:
        return isinstance(self.result, Prediction)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JobResult:
        index = int(raw["index"])
        error = raw.get("error")
        if isinstance(error, Mapping) and len(raw) == 2:
            return cls(index, _error(error))
        return cls(index, Prediction.from_output({k: v for k, v in raw.items() if k != "index"}))


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change of a watched job: ``type`` (``job.snapshot`` first, then ``job.running``,
    ``job.progress``, ``job.succeeded``, ...) and the whole ``job`` as of that change."""

    type: str
    time: float
    job: JobInfo


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``list_jobs``, newest first; pass ``next_cursor`` for the next (``None``: no more)."""

    jobs: tuple[JobInfo, ...]
    next_cursor: str | None = None
