"""Bodies of the jobs API (msgspec structs: they decode requests and document responses in OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from modelwire.protocols.http.schemas import ErrorDetail

__all__ = [
    "JobList",
    "JobProgress",
    "JobResult",
    "JobResultsPage",
    "JobState",
    "JobSubmit",
    "TrainSubmit",
    "WebhookAttempt",
    "WebhookState",
]


class JobSubmit(msgspec.Struct, forbid_unknown_fields=True):
    """A job with its inputs inline. For large inputs upload NDJSON, CSV or multipart instead."""

    model: str
    inputs: list[Any]
    version: str | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = {}


class TrainSubmit(msgspec.Struct, forbid_unknown_fields=True):
    """Labelled texts (label 0 = negative, 1 = positive); 20% are held out to measure accuracy."""

    texts: list[str]
    labels: list[int]
    callback_url: str | None = None
    metadata: dict[str, Any] = {}


class JobProgress(msgspec.Struct, omit_defaults=True):
    done: int
    total: int
    errors: int
    stage: str | None = None
    fraction: float | None = None


class WebhookAttempt(msgspec.Struct, omit_defaults=True):
    attempt: int
    time: float
    status_code: int | None = None
    error: str | None = None


class WebhookState(msgspec.Struct):
    status: Literal["pending", "delivered", "failed"] | None
    attempts: list[WebhookAttempt]


class JobState(msgspec.Struct, omit_defaults=True):
    """A job: status, progress (rows done of total, rows that failed), attempts, error, result."""

    id: str
    kind: Literal["predict", "train"]
    model: str
    version: str | None
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    error: ErrorDetail | None
    result: dict[str, Any] | None
    metadata: dict[str, Any]
    callback_url: str | None = None
    webhook: WebhookState | None = None


class JobList(msgspec.Struct):
    """Newest first; pass ``next_cursor`` as ``cursor`` for the next page (``null``: no more)."""

    jobs: list[JobState]
    next_cursor: str | None


class JobResult(msgspec.Struct, omit_defaults=True):
    """One row's result: ``index`` and the model's output fields, or ``result`` (a non-object output), or
    ``error`` (the row failed)."""

    index: int
    error: ErrorDetail | None = None
    result: Any | None = None


class JobResultsPage(msgspec.Struct):
    results: list[JobResult]
    offset: int
    limit: int
    total: int
    next_offset: int | None
