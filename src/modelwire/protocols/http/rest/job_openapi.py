"""How the jobs routes appear in ``/openapi.json``: bodies by content type, parameters, statuses."""

from __future__ import annotations

from typing import Any

from modelwire.protocols.http.openapi import body, responses
from modelwire.protocols.http.rest.job_schemas import (
    JobList,
    JobResult,
    JobResultsPage,
    JobState,
    JobSubmit,
    TrainSubmit,
)

__all__ = ["DOCS"]

_TAGS: list[Any] = ["jobs"]


def _ok(type_: type, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": responses(type_)[200]["content"]}


_ERROR = responses(JobState)[400]["content"]


def _errors(**codes: str) -> dict[int | str, dict[str, Any]]:
    return {int(code.lstrip("e")): {"description": text, "content": _ERROR} for code, text in codes.items()}


def _param(name: str, where: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "schema": schema or {"type": "string"}}


_UPLOADS = {
    "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON value per line"}},
    "text/csv": {"schema": {"type": "string", "description": "a header naming the columns, or none"}},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        }
    },
}
_UPLOAD_PARAMS = [
    _param("callback_url", "query", "Webhook URL for the final state (uploads; JSON bodies carry it inline)"),
    _param("metadata", "query", "A JSON object kept with the job (uploads)"),
    _param("Idempotency-Key", "header", "The same key and body return the same job (200), never a second"),
]


def _body(type_: type) -> dict[str, Any]:
    extra = body(type_)
    extra["requestBody"]["content"].update(_UPLOADS)
    return extra


_SUBMIT_ERRORS = _errors(
    e400="Malformed body, no rows, or a callback URL that is not allowed",
    e404="Unknown model or version",
    e413="Upload over jobs.max_upload_bytes or jobs.max_rows (nothing is stored)",
    e415="A content type that is not JSON, NDJSON, CSV or multipart",
    e422="The Idempotency-Key was used with a different body",
    e503="Queue over jobs.max_queue_depth (Retry-After)",
)
_JOB_ID = [_param("job_id", "path", "The job's id")]

DOCS: dict[str, dict[str, Any]] = {
    "submit": {
        "tags": _TAGS,
        "summary": "Submit a batch job (202 Accepted; poll Location, or watch jobs/{id} events)",
        "status_code": 202,
        "openapi_extra": {
            **_body(JobSubmit),
            "parameters": [
                _param("model", "query", "The model (uploads; JSON bodies carry it inline)"),
                _param("version", "query", "A model version (uploads)"),
                *_UPLOAD_PARAMS,
            ],
        },
        "responses": {
            202: _ok(JobState, description="Accepted: the job is stored and queued"),
            200: _ok(JobState, description="The job this Idempotency-Key already created"),
            **_SUBMIT_ERRORS,
        },
    },
    "train": {
        "tags": _TAGS,
        "summary": "Train a new version of a model from labelled rows (a job: 202 Accepted)",
        "status_code": 202,
        "openapi_extra": {
            **_body(TrainSubmit),
            "parameters": [_param("name", "path", "The model to train"), *_UPLOAD_PARAMS],
        },
        "responses": {
            202: _ok(JobState, description="Accepted: training is queued; the result holds the new version"),
            200: _ok(JobState, description="The job this Idempotency-Key already created"),
            **_SUBMIT_ERRORS,
        },
    },
    "list": {
        "tags": _TAGS,
        "summary": "List jobs, newest first",
        "openapi_extra": {
            "parameters": [
                _param("status", "query", "queued, running, succeeded, failed or cancelled"),
                _param(
                    "limit",
                    "query",
                    "Page size, 1 to 1000 (default 50)",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                ),
                _param("cursor", "query", "next_cursor of the previous page"),
            ]
        },
        "responses": {200: _ok(JobList), **_errors(e400="Unknown status or bad limit")},
    },
    "get": {
        "tags": _TAGS,
        "summary": "A job's status, progress, attempts, error and result",
        "openapi_extra": {"parameters": _JOB_ID},
        "responses": {200: _ok(JobState), **_errors(e404="Unknown job (or removed after its retention)")},
    },
    "cancel": {
        "tags": _TAGS,
        "summary": "Cancel a queued or running job (a running one stops at its next batch)",
        "openapi_extra": {"parameters": _JOB_ID},
        "responses": {
            200: _ok(JobState, description="The cancelled job"),
            **_errors(e404="Unknown job", e409="The job already finished"),
        },
    },
    "retry": {
        "tags": _TAGS,
        "summary": "Queue a failed job again (rows with a result are not re-run)",
        "status_code": 202,
        "openapi_extra": {"parameters": _JOB_ID},
        "responses": {
            202: _ok(JobState, description="Queued again"),
            **_errors(e404="Unknown job", e409="The job did not fail"),
        },
    },
    "results": {
        "tags": _TAGS,
        "summary": "A job's results in input order: NDJSON streamed, or JSON pages (?format=json)",
        "openapi_extra": {
            "parameters": [
                *_JOB_ID,
                _param("format", "query", "ndjson (default) or json", {"enum": ["ndjson", "json"]}),
                _param("offset", "query", "First row index", {"type": "integer", "minimum": 0, "default": 0}),
                _param(
                    "limit",
                    "query",
                    "Rows (json: at most 10000, default 1000; ndjson: any, default all)",
                    {"type": "integer", "minimum": 0},
                ),
            ]
        },
        "responses": {
            200: {
                "description": "One result per line (NDJSON), or a page of them (JSON)",
                "content": {
                    "application/x-ndjson": {
                        "schema": responses(JobResult)[200]["content"]["application/json"]["schema"]
                    },
                    **responses(JobResultsPage)[200]["content"],
                },
            },
            **_errors(e400="Bad format, offset or limit", e404="Unknown job"),
        },
    },
}
