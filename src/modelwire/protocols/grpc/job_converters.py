"""``modelwire.v1.Jobs`` messages <-> the job manager's terms. Pure functions: no I/O, no core calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from google.protobuf import json_format, struct_pb2

from modelwire.errors import InvalidInputError
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.store import JobKind, ResultRow
from modelwire.protocols.grpc._generated.modelwire.v1 import jobs_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2

__all__ = ["MAX_KEY_CHARS", "STATUS_FROM_DOMAIN", "JobConverter"]

MAX_KEY_CHARS = 255  # as REST's Idempotency-Key header

STATUS_FROM_DOMAIN: dict[str, pb.JobStatus] = {
    "queued": pb.JOB_STATUS_QUEUED,
    "running": pb.JOB_STATUS_RUNNING,
    "succeeded": pb.JOB_STATUS_SUCCEEDED,
    "failed": pb.JOB_STATUS_FAILED,
    "cancelled": pb.JOB_STATUS_CANCELLED,
}
_STATUS_TO_DOMAIN: dict[int, str] = {number: name for name, number in STATUS_FROM_DOMAIN.items()}
_KINDS: dict[str, JobKind] = {"": "predict", "predict": "predict", "train": "train"}
_decode = msgspec.json.Decoder().decode


def _struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if not value:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _error(raw: Mapping[str, Any]) -> Any:
    details = raw.get("details")
    error_id = details.get("error_id") if isinstance(details, Mapping) else None
    return predictor_pb2.Error(
        code=str(raw.get("code", "INTERNAL")),
        message=str(raw.get("message", "")),
        field=str(raw.get("field") or ""),
        error_id=str(error_id or ""),
    )


class JobConverter:
    """``SubmitJobRequest`` and friends -> domain; job dicts and result rows -> protobuf."""

    @staticmethod
    def request_to_domain(spec: Any) -> JobRequest:
        """A ``SubmitJobRequest`` (its rows apart: see ``rows_to_domain``) as a ``JobRequest``."""
        kind = _KINDS.get(spec.kind)
        if kind is None:
            raise InvalidInputError(
                f"kind must be 'predict' or 'train', not {spec.kind[:40]!r}", field="kind"
            )
        if not spec.model:
            raise InvalidInputError("name the model", field="model")
        if len(spec.idempotency_key) > MAX_KEY_CHARS:
            raise InvalidInputError(
                f"idempotency_key is longer than {MAX_KEY_CHARS} characters", field="idempotency_key"
            )
        metadata = json_format.MessageToDict(spec.metadata) if spec.HasField("metadata") else {}
        return JobRequest(
            model=spec.model,
            kind=kind,
            version=spec.version or None,
            callback_url=spec.callback_url or None,
            metadata=metadata,
            idempotency_key=spec.idempotency_key or None,
        )

    @staticmethod
    def rows_to_domain(message: Any) -> Sequence[Any]:
        """The rows one message carries: its ``texts``, or its ``instances`` as plain values."""
        if message.texts and message.instances:
            raise InvalidInputError("send texts or instances, not both in one message", field="instances")
        if message.texts:
            return list(message.texts)
        return [json_format.MessageToDict(value) for value in message.instances]

    @staticmethod
    def status_to_domain(status: int) -> str | None:
        if status == pb.JOB_STATUS_UNSPECIFIED:
            return None
        try:
            return _STATUS_TO_DOMAIN[status]
        except KeyError:
            raise InvalidInputError(f"unknown job status {status}", field="status") from None

    @staticmethod
    def from_domain(job: Mapping[str, Any]) -> Any:
        """A job as every API shows it (``Job.to_dict()``) as a protobuf ``Job``."""
        progress = job.get("progress") or {}
        webhook = job.get("webhook")
        return pb.Job(
            id=job["id"],
            kind=job.get("kind") or "predict",
            model=job.get("model") or "",
            version=job.get("version") or "",
            status=STATUS_FROM_DOMAIN.get(job.get("status", ""), pb.JOB_STATUS_UNSPECIFIED),
            progress=pb.JobProgress(
                done=int(progress.get("done", 0)),
                total=int(progress.get("total", 0)),
                errors=int(progress.get("errors", 0)),
                stage=str(progress.get("stage") or ""),
                fraction=progress.get("fraction"),
            ),
            attempts=int(job.get("attempts", 0)),
            max_attempts=int(job.get("max_attempts", 0)),
            created_at=float(job.get("created_at") or 0.0),
            updated_at=float(job.get("updated_at") or 0.0),
            started_at=job.get("started_at"),
            finished_at=job.get("finished_at"),
            error=_error(job["error"]) if job.get("error") else None,
            result=_struct(job.get("result")),
            metadata=_struct(job.get("metadata")),
            callback_url=job.get("callback_url") or "",
            webhook=None
            if not isinstance(webhook, Mapping)
            else pb.JobWebhook(
                status=str(webhook.get("status") or ""),
                attempts=[
                    pb.WebhookAttempt(
                        attempt=int(a.get("attempt", 0)),
                        time=float(a.get("time", 0.0)),
                        status_code=int(a.get("status_code") or 0),
                        error=str(a.get("error") or ""),
                    )
                    for a in webhook.get("attempts", ())
                ],
            ),
        )

    @staticmethod
    def result_from_domain(row: ResultRow) -> Any:
        """One stored result row (``(index, JSON body, is_error)``) as a ``JobResult``."""
        index, body, is_error = row
        if is_error:
            return pb.JobResult(index=index, error=_error(_decode(body)))
        output = struct_pb2.Value()
        value = _decode(body)
        if isinstance(value, dict):
            output.struct_value.update(value)  # the usual case, 3x faster than json_format
        else:
            json_format.ParseDict(value, output)
        return pb.JobResult(index=index, output=output)
