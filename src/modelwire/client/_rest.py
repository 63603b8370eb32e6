"""The REST wire, over httpx (HTTP/1.1, or HTTP/2: ALPN on https, prior knowledge on http).

Answers are read by pure functions (``read_answer``, ``error_from_response``, ``error_from_wire``) that
know nothing of sockets, so they are tested on bytes alone; ``map_httpx_exceptions`` is the one place an
httpx exception becomes a ``ModelwireError``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, aconnect_sse

from modelwire.client.results import Health
from modelwire.client.tls import untrusted_hint
from modelwire.client.transport import Endpoint, Output
from modelwire.errors import (
    DeadlineExceededError,
    ErrorCode,
    InternalError,
    ModelwireError,
    UnavailableError,
    error_from_code,
)

__all__ = ["RestTransport", "error_from_response", "error_from_wire", "map_httpx_exceptions", "read_answer"]

# Used only when an error body is not modelwire's JSON shape (a proxy's page, a bare status).
_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.FAILED_PRECONDITION,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_ARGUMENT,
    429: ErrorCode.RESOURCE_EXHAUSTED,
    502: ErrorCode.UNAVAILABLE,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.DEADLINE_EXCEEDED,
}


@contextlib.contextmanager
def map_httpx_exceptions(url: str) -> Iterator[None]:
    """Translate httpx's exceptions into the modelwire error tree."""
    try:
        yield
    except httpx.ConnectTimeout:
        raise UnavailableError(f"could not connect to {url} in time") from None
    except httpx.TimeoutException:
        raise DeadlineExceededError(f"{url} did not answer in time") from None
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        reason = f"cannot reach {url}: {exc or type(exc).__name__}"
        if isinstance(exc, httpx.RemoteProtocolError) and url.startswith("http://") and "illegal" in str(exc):
            # granian answers a cleartext request on its TLS port with a TLS alert, not HTTP
            reason += " (the server did not answer in HTTP: if it serves HTTPS, use an https:// URL)"
        raise UnavailableError(untrusted_hint(reason) or reason) from None
    except httpx.HTTPError as exc:
        raise UnavailableError(f"request to {url} failed: {exc or type(exc).__name__}") from None


def error_from_wire(raw: Mapping[str, Any]) -> ModelwireError:
    """Rebuild an error from modelwire's JSON shape ``{"code", "message", "field"?, ...}``."""
    details = raw.get("details")
    retry = raw.get("retry_after_s")
    reason = raw.get("reason")
    return error_from_code(
        str(raw.get("code", ErrorCode.INTERNAL.value)),
        str(raw.get("message", "")),
        reason=reason if isinstance(reason, str) else None,
        field=raw.get("field") if isinstance(raw.get("field"), str) else None,
        retry_after_s=float(retry) if isinstance(retry, int | float) else None,
        details=dict(details) if isinstance(details, Mapping) else None,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> ModelwireError:
    """The error an HTTP error response stands for: its JSON error body, else its status."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    raw = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(raw, dict) and isinstance(raw.get("code"), str):
        return error_from_wire(raw)
    code = _STATUS_CODES.get(status, ErrorCode.INTERNAL)
    text = body[:200].decode("utf-8", "replace").strip()
    message = f"HTTP {status}" + (f": {text}" if text else "")
    if code is ErrorCode.INTERNAL:
        return InternalError(message)
    return error_from_code(code.value, message, retry_after_s=_retry_after(headers))


def read_answer(status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """The decoded JSON of a successful answer; raises the error an unsuccessful one stands for."""
    if status >= 400:
        raise error_from_response(status, headers, body)
    try:
        return json.loads(body)
    except ValueError:
        raise InternalError(f"the server sent a body that is not JSON (HTTP {status})") from None


def _item(raw: Any) -> Output | ModelwireError:
    if not isinstance(raw, Mapping):
        raise InternalError(f"the server sent a prediction that is not an object: {raw!r:.80}")
    error = raw.get("error")
    if len(raw) == 1 and isinstance(error, Mapping) and "code" in error:
        return error_from_wire(error)
    return raw


def _predict_path(model: str, version: str | None) -> str:
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{quote(version, safe='')}"
    return path + "/predict"


class RestTransport:
    """modelwire's REST API: ``/v1/models/...`` for predictions and listing, ``/v2/health/*`` for health."""

    def __init__(self, endpoint: Endpoint, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = endpoint.url.rstrip("/")
        # On cleartext http, HTTP/2 means prior knowledge (h2c); on https, ALPN picks it.
        prior_knowledge = endpoint.http2 and endpoint.scheme == "http"
        self._http = httpx.AsyncClient(
            base_url=endpoint.url,
            timeout=endpoint.timeout,
            headers=dict(endpoint.headers),
            http1=not prior_knowledge,
            http2=endpoint.http2,
            transport=transport,  # tests pass httpx.MockTransport
            verify=endpoint.tls.ssl_context() if endpoint.scheme == "https" else True,
        )
        self.http_version: str | None = None  # of the last answer: "HTTP/1.1" or "HTTP/2"

    async def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with map_httpx_exceptions(self._url):
            response = await self._http.request(method, path, json=body)
        self.http_version = response.http_version
        return response

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._send(method, path, body)
        return read_answer(response.status_code, response.headers, response.content)

    async def predict(self, text: str, *, model: str, version: str | None) -> Output:
        answer = await self._call("POST", _predict_path(model, version), {"text": text})
        item = _item(answer)
        if isinstance(item, ModelwireError):
            raise item
        return item

    async def predict_batch(
        self, texts: Sequence[str], *, model: str, version: str | None
    ) -> list[Output | ModelwireError]:
        answer = await self._call("POST", _predict_path(model, version), {"texts": list(texts)})
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(texts):
            raise InternalError("the server's batch answer does not hold one prediction per text")
        return [_item(raw) for raw in predictions]

    async def models(self) -> list[Output]:
        answer = await self._call("GET", "/v1/models")
        models = answer.get("models") if isinstance(answer, dict) else None
        if not isinstance(models, list):
            raise InternalError("the server's model list is not a list")
        return models

    async def health(self) -> Health:
        live = await self._send("GET", "/v2/health/live")
        ready = await self._send("GET", "/v2/health/ready")
        return Health(live=live.status_code == 200, ready=ready.status_code == 200)

    async def events(self, topics: Sequence[str], *, last_event_id: int | None) -> AsyncGenerator[Output]:
        """``GET /v1/events`` as Server-Sent Events. Reads wait as long as the stream lives."""
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        params = {"topics": ",".join(topics)}
        with map_httpx_exceptions(self._url):
            async with aconnect_sse(
                self._http, "GET", "/v1/events", params=params, headers=headers, timeout=timeout
            ) as source:
                response = source.response
                if response.status_code >= 400:
                    body = await response.aread()
                    raise error_from_response(response.status_code, response.headers, body)
                try:
                    async for sse in source.aiter_sse():
                        if sse.data:  # a message with no data (the first `retry:`) is not an event
                            yield _sse_event(sse.event, sse.data, sse.id)
                except SSEError as exc:
                    raise InternalError(f"the server did not answer with an event stream: {exc}") from None

    async def aclose(self) -> None:
        await self._http.aclose()


def _sse_event(kind: str, data: str, event_id: str) -> Output:
    """One SSE message of ``/v1/events`` as the event's dict; ``event: error`` raises its error."""
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        raise InternalError(f"the server sent an event whose data is not JSON: {data[:80]!r}") from None
    if kind == "error":
        raise error_from_wire(payload.get("error", payload) if isinstance(payload, dict) else {})
    if kind == "reset":
        return {"id": None, "topic": "", "type": "reset", "time": time.time(), "data": payload}
    if not isinstance(payload, dict):
        raise InternalError(f"the server sent an event that is not an object: {data[:80]!r}")
    return {"id": event_id or payload.get("id"), **{k: v for k, v in payload.items() if k != "id"}}
