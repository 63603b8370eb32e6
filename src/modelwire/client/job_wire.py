"""The contract both job wires implement: what a submit asks for, and the calls a ``JobWire`` answers.

``AsyncJobHandle`` (``jobs.py``) holds the jobs logic and talks to a ``JobWire``; ``_rest_jobs.py`` and
``_grpc_jobs.py`` implement one over their transport's connection. Both sides import this module and neither
imports the other; ``wires.py`` picks the implementation for an open transport. Jobs and result rows cross
this boundary in the REST shapes (a job as ``GET /v1/jobs/{id}`` shows it, a row as one line of
``GET /v1/jobs/{id}/results``), whichever the wire.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelwire.client.job_inputs import JobKind, Source

__all__ = ["JobSubmission", "JobWire", "Update"]

Update = tuple[str, float, dict[str, Any]]
"""One change of a watched job, as a wire reports it: ``(type, time, the whole job in the REST shape)``."""


@dataclass(frozen=True, slots=True)
class JobSubmission:
    """What a submit asks for, besides its rows."""

    model: str
    kind: JobKind = "predict"
    version: str | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None


class JobWire(Protocol):
    """Jobs over one wire. Jobs and rows are in the REST shapes; every method raises only ModelwireErrors."""

    async def submit(self, job: JobSubmission, source: Source) -> tuple[dict[str, Any], bool]: ...

    async def get(self, job_id: str) -> dict[str, Any]: ...

    async def cancel(self, job_id: str) -> dict[str, Any]: ...

    async def list(
        self, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    def results(self, job_id: str, *, offset: int, limit: int | None) -> AsyncGenerator[dict[str, Any]]: ...

    def watch(self, job_id: str) -> AsyncGenerator[Update]: ...
