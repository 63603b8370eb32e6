"""The payload log's records: one CloudEvents 1.0 envelope per sampled inference call (pure functions).

The envelope follows KServe's payload logger where it fits: ``specversion``, ``id`` (the request id),
``source``, ``type``, ``time``, ``datacontenttype``, and its extension attributes ``inferenceservicename``
(the model) and ``endpoint`` (the version); it differs in logging request and response as one event (type
``io.modelwire.inference.payload``), so a line is a complete example for offline analysis. ``data``::

    {"request_id", "trace_id", "model", "version", "protocol", "inputs" (or "inputs_sha256"),
     "outputs", "latency_ms", "status"}

``inputs`` as given (``full``), as a SHA-256 of each input's JSON (``hash``: joins without the text), or
left out (``redact``). An output that is an error is ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["PAYLOAD_TYPE", "payload_event", "payload_files", "render_output"]

PAYLOAD_TYPE = "io.modelwire.inference.payload"


def payload_files(folder: Path) -> list[Path]:
    """The payload log's files in ``folder``, oldest first (their names sort by start time)."""
    return sorted(folder.glob("payloads-*.ndjson")) if folder.is_dir() else []


def render_output(result: Any) -> Any:
    if isinstance(result, BaseException):
        code = getattr(getattr(result, "code", None), "value", "INTERNAL")
        message = getattr(result, "message", None) or type(result).__name__
        return {"error": {"code": code, "message": message}}
    return result


def _sha256(value: Any) -> str:
    try:
        raw = msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError):
        raw = repr(value).encode()
    return hashlib.sha256(raw).hexdigest()


def payload_event(
    *,
    source: str,
    request_id: str,
    trace_id: str,
    model: str,
    version: str | None,
    protocol: str,
    instances: Sequence[Any],
    results: Sequence[Any] | None,
    latency_s: float,
    status: str,
    time: float,
    inputs: str,
) -> dict[str, Any]:
    """The envelope of one call; ``inputs`` is ``full``, ``hash`` or ``redact``."""
    data: dict[str, Any] = {
        "request_id": request_id,
        "trace_id": trace_id,
        "model": model,
        "version": version,
        "protocol": protocol,
    }
    if inputs == "full":
        data["inputs"] = list(instances)
    elif inputs == "hash":
        data["inputs_sha256"] = [_sha256(item) for item in instances]
    data["outputs"] = None if results is None else [render_output(r) for r in results]
    data["latency_ms"] = round(latency_s * 1000.0, 3)
    data["status"] = status
    stamp = (
        dt.datetime.fromtimestamp(time, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return {
        "specversion": "1.0",
        "id": request_id,
        "source": source,
        "type": PAYLOAD_TYPE,
        "time": stamp,
        "datacontenttype": "application/json",
        "inferenceservicename": model,
        "endpoint": version or "",
        "data": data,
    }
