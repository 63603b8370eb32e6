"""The transition table: every allowed move, and the refusals users see (409)."""

from __future__ import annotations

import pytest

from modelwire.errors import ErrorCode, FailedPreconditionError
from modelwire.jobs.states import FINAL, TRANSITIONS, JobStatus, Trigger, attempts_left, transition


@pytest.mark.parametrize(("start", "trigger", "end"), [(s, t, e) for (s, t), e in TRANSITIONS.items()])
def test_every_move_in_the_table(start: JobStatus, trigger: Trigger, end: JobStatus) -> None:
    assert transition(start, trigger) is end
    assert transition(start.value, trigger) is end


def test_final_states_only_leave_by_a_retry_of_a_failed_job() -> None:
    for status in FINAL:
        allowed = {t for (s, t) in TRANSITIONS if s is status}
        assert allowed == ({Trigger.RETRY} if status is JobStatus.FAILED else set())
    assert {s.final for s in JobStatus} == {True, False}
    assert not JobStatus.RUNNING.final


@pytest.mark.parametrize("status", sorted(FINAL))
def test_cancelling_a_final_job_is_refused(status: JobStatus) -> None:
    with pytest.raises(FailedPreconditionError) as info:
        transition(status, Trigger.CANCEL)
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    assert status.value in info.value.message


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_only_failed_jobs_can_be_retried(status: JobStatus) -> None:
    with pytest.raises(FailedPreconditionError, match="only failed jobs"):
        transition(status, Trigger.RETRY)


def test_a_queued_job_cannot_succeed_without_running() -> None:
    with pytest.raises(FailedPreconditionError):
        transition(JobStatus.QUEUED, Trigger.SUCCEED)


def test_attempts_left() -> None:
    assert attempts_left(0, 1)
    assert attempts_left(2, 3)
    assert not attempts_left(3, 3)
