"""Everything about job states lives here: the statuses, what moves a job between them, and attempts.

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲  │              │ │ └──fail (attempts left: requeue)──▶ queued
      │  │              │ └────fail (no attempts left)───────▶ failed ──retry (by the user)──▶ queued
      │  └──cancel──┐   └──cancel──▶ cancelled
      │             ▼
      │         cancelled
      └──release (graceful shutdown: the attempt is given back)── running

A ``running`` job whose lease (visibility timeout) expired because its worker died is claimed again
(``reclaim``): it stays ``running`` under the new worker, which resumes from the rows without results. Each
claim counts one attempt; when a job's lease expires with ``max_attempts`` used it becomes ``failed`` with
the last error. ``failed`` is the dead-letter state: nothing moves a job out of it except the user's
``retry``, which gives it fresh attempts. ``succeeded``, ``failed`` and ``cancelled`` are final (only
``failed`` may be retried); cancelling a final job is refused (HTTP 409).

Pure: no I/O. Every store backend calls ``transition()`` (or encodes the same table in its queries).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from modelwire.errors import FailedPreconditionError

__all__ = ["FINAL", "TRANSITIONS", "JobStatus", "Trigger", "attempts_left", "transition"]


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


class Trigger(enum.StrEnum):
    """What happens to a job."""

    CLAIM = "claim"  # a worker takes a queued job under a lease
    RECLAIM = "reclaim"  # a worker takes a running job whose lease expired (its worker died)
    RELEASE = "release"  # the worker gives the job back unfinished (shutdown); the attempt does not count
    SUCCEED = "succeed"
    REQUEUE = "requeue"  # the attempt failed and attempts are left
    FAIL = "fail"  # the attempt failed and none are left, or the failure is permanent
    CANCEL = "cancel"  # the user cancels; a running job stops at its next batch
    RETRY = "retry"  # the user retries a failed (dead-lettered) job


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

TRANSITIONS: Mapping[tuple[JobStatus, Trigger], JobStatus] = {
    (JobStatus.QUEUED, Trigger.CLAIM): JobStatus.RUNNING,
    (JobStatus.QUEUED, Trigger.CANCEL): JobStatus.CANCELLED,
    (JobStatus.RUNNING, Trigger.RECLAIM): JobStatus.RUNNING,
    (JobStatus.RUNNING, Trigger.RELEASE): JobStatus.QUEUED,
    (JobStatus.RUNNING, Trigger.SUCCEED): JobStatus.SUCCEEDED,
    (JobStatus.RUNNING, Trigger.REQUEUE): JobStatus.QUEUED,
    (JobStatus.RUNNING, Trigger.FAIL): JobStatus.FAILED,
    (JobStatus.RUNNING, Trigger.CANCEL): JobStatus.CANCELLED,
    (JobStatus.FAILED, Trigger.RETRY): JobStatus.QUEUED,
}


def transition(status: JobStatus | str, trigger: Trigger) -> JobStatus:
    """The status after ``trigger``; ``FailedPreconditionError`` when the table has no such move."""
    current = JobStatus(status)
    try:
        return TRANSITIONS[(current, trigger)]
    except KeyError:
        raise FailedPreconditionError(_refusal(current, trigger), details={"status": current.value}) from None


def attempts_left(attempts: int, max_attempts: int) -> bool:
    """Whether a job that has been claimed ``attempts`` times may be claimed again."""
    return attempts < max_attempts


def _refusal(status: JobStatus, trigger: Trigger) -> str:
    if trigger is Trigger.CANCEL:
        return f"the job is already {status.value}; only queued or running jobs can be cancelled"
    if trigger is Trigger.RETRY:
        return f"the job is {status.value}; only failed jobs can be retried"
    return f"a {status.value} job cannot {trigger.value}"
