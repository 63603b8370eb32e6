"""The Python client: one API over REST and gRPC, chosen by the URL's scheme.

    from modelwire import Client

    with Client("grpc://127.0.0.1:8001") as client:       # or "http://127.0.0.1:8000"
        print(client.predict("I love this product"))

How it is built:

- ``AsyncClient`` (``async_client.py``) is the client. It validates arguments, calls a ``Transport``
  (``transport.py``, the contract every wire implements) and turns plain answers into typed results
  (``results.py``). ``wires.py`` is the one module that names the concrete wires: it opens the one an
  endpoint needs, so the contracts never import their implementations.
- A transport speaks one wire: ``_rest.py`` (httpx, HTTP/1.1 or HTTP/2; Server-Sent Events with
  httpx-sse) and ``_grpc.py`` (grpc.aio with the generated ``modelwire.v1`` stubs); ``_ws.py`` opens a
  WebSocket per stream (``stream_predict``, ``events`` on an http URL). Each turns its library's
  exceptions and its error answers into the modelwire error tree at one boundary
  (``map_httpx_exceptions`` / ``map_grpc_errors`` / ``map_ws_exceptions``), so callers only ever see
  ``ModelwireError``s.
- Jobs (``jobs.py``): ``submit_job`` returns an ``AsyncJobHandle`` / ``JobHandle``; inputs are sorted into
  inline rows, a file or a row stream by ``job_inputs.py``; the wires are ``_rest_jobs.py`` and
  ``_grpc_jobs.py``, on the transport's own connection, implementing ``job_wire.py``'s ``JobWire``;
  ``job_results.py`` holds the typed answers.
- ``Client`` (``sync_client.py``) is not a second implementation: it runs the ``AsyncClient`` on a
  private event loop in a background thread and waits for each call, so there is one copy of every
  request, parser and error mapping.
"""

from __future__ import annotations

from modelwire.client.async_client import DEFAULT_TIMEOUT, DEFAULT_URL, AsyncClient
from modelwire.client.job_results import JobEvent, JobInfo, JobPage, JobResult
from modelwire.client.jobs import AsyncJobHandle, JobHandle
from modelwire.client.results import (
    Event,
    Health,
    ModelSummary,
    ModelVersionStatus,
    Prediction,
    StreamedPrediction,
)
from modelwire.client.sync_client import Client

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "Event",
    "Health",
    "JobEvent",
    "JobHandle",
    "JobInfo",
    "JobPage",
    "JobResult",
    "ModelSummary",
    "ModelVersionStatus",
    "Prediction",
    "StreamedPrediction",
]
