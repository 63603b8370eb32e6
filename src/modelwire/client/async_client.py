"""``AsyncClient``: the client itself. The sync ``Client`` drives this same object (see ``sync_client``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from modelwire.client.admin import _UNSET, open_admin_wire, traffic_body
from modelwire.client.job_inputs import JobInputs
from modelwire.client.job_results import JobInfo, JobPage
from modelwire.client.job_wire import JobSubmission, JobWire
from modelwire.client.jobs import AsyncJobHandle, list_jobs, submit_job
from modelwire.client.results import Event, Health, ModelSummary, Prediction, StreamedPrediction
from modelwire.client.tls import ClientTLS
from modelwire.client.transport import (
    Endpoint,
    EventStreamer,
    EventWire,
    PredictStreamer,
    PredictWire,
    Transport,
    choose_wire,
    parse_url,
    with_credentials,
)
from modelwire.client.wires import open_feature_wire, open_job_wire, open_transport, open_websocket
from modelwire.errors import InvalidInputError, ModelwireError
from modelwire.events.topics import expand_families, parse_topics

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_URL", "AsyncClient"]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0


class AsyncClient:
    """Talk to a modelwire server over REST or gRPC, chosen by the URL's scheme.

    ``http://`` and ``https://`` speak REST (``http2=True`` for HTTP/2: prior knowledge on ``http``,
    ALPN on ``https``); ``grpc://`` (cleartext) and ``grpcs://`` (TLS) speak gRPC. Results are typed and
    every failure is a ``ModelwireError``: ``UnavailableError`` when the server cannot be reached,
    ``DeadlineExceededError`` when ``timeout`` (seconds, per call) runs out, and the server's own error
    otherwise. ``headers`` go with every call (as gRPC metadata on gRPC).

    ``api_key`` (default: the ``MODELWIRE_API_KEY`` environment variable) or ``token`` (a JWT) is sent as
    ``Authorization: Bearer ...`` on REST, SSE, the WebSocket handshake and as gRPC ``authorization``
    metadata.

    On ``https://`` and ``grpcs://``, ``ca_cert`` is the PEM CA to trust instead of the system's (the
    ``ca.pem`` of ``modelwire certs init``); ``client_cert`` + ``client_key`` answer a mutual-TLS server.

        async with AsyncClient("grpc://127.0.0.1:8001") as client:
            prediction = await client.predict("I love this product")
            print(prediction.sentiment, prediction.confidence)

    The connection is opened by the first call, in the event loop making it.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        http2: bool = False,
        api_key: str | None = None,
        token: str | None = None,
        ca_cert: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
    ) -> None:
        headers = with_credentials(headers, api_key=api_key, token=token)
        tls = ClientTLS(ca_cert=ca_cert, client_cert=client_cert, client_key=client_key)
        self._endpoint: Endpoint = parse_url(url, timeout=timeout, headers=headers, http2=http2, tls=tls)
        self._transport: Transport | None = None
        self._streams: set[AsyncGenerator[Any]] = set()  # open streams, closed by aclose()
        self._closed = False

    @property
    def url(self) -> str:
        return self._endpoint.url

    @property
    def protocol(self) -> str:
        """``"grpc"`` or ``"rest"``."""
        return "grpc" if self._endpoint.is_grpc else "rest"

    def _wire(self) -> Transport:
        if self._closed:
            raise RuntimeError("this client is closed")
        if self._transport is None:
            self._transport = open_transport(self._endpoint)
        return self._transport

    async def predict(self, text: str, *, model: str = "sentiment", version: str | None = None) -> Prediction:
        """Predict one text. Raises the server's error for it (``InvalidInputError`` for empty text, ...)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, not {type(text).__name__}", field="$.text")
        output = await self._wire().predict(text, model=model, version=version)
        return Prediction.from_output(output)

    async def predict_batch(
        self, texts: Sequence[str], *, model: str = "sentiment", version: str | None = None
    ) -> list[Prediction | ModelwireError]:
        """Predict many texts in one go. A text that fails gives its error in its place; the others still
        answer. What fails the whole call (unknown model, server unreachable, ...) is raised."""
        if isinstance(texts, str | bytes):
            raise InvalidInputError(
                "texts must be a sequence of strings, not a single string", field="$.texts"
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(
                    f"texts[{i}] must be a string, not {type(text).__name__}", field=f"$.texts[{i}]"
                )
        if not texts:
            return []
        outputs = await self._wire().predict_batch(texts, model=model, version=version)
        return [out if isinstance(out, ModelwireError) else Prediction.from_output(out) for out in outputs]

    async def stream_predict(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        model: str | None = None,
        version: str | None = None,
        transport: PredictWire | None = None,
    ) -> AsyncIterator[StreamedPrediction]:
        """Predict many texts over one stream, yielding each answer as soon as it is ready.

        Answers come in the order they finish, each with its input's ``index``; an input that fails
        carries its error and the others go on. ``texts`` may be an async iterable: inputs are sent as it
        yields them, while answers arrive. The wire is WebSocket on an ``http(s)://`` URL and gRPC
        ``PredictStream`` on a ``grpc(s)://`` one. ``model=None`` is the server's default model.
        ``timeout`` bounds each wait for an answer, not the whole stream.

            async for item in client.stream_predict(["great", "awful"]):
                print(item.index, item.result)

        What fails the whole stream (unknown model, server gone) is raised.
        """
        if isinstance(texts, str | bytes):
            raise InvalidInputError(
                "texts must be a sequence of strings, not a single string", field="$.texts"
            )
        wire = choose_wire(self._endpoint, transport, ("ws", "grpc"), "ws")
        streamer = cast(PredictStreamer, self._wire() if wire == "grpc" else self._websocket())
        outputs = streamer.stream_predict(_checked(texts), model=model, version=version)
        self._streams.add(outputs)
        try:
            async for index, out in outputs:
                result = out if isinstance(out, ModelwireError) else Prediction.from_output(out)
                yield StreamedPrediction(index, result)
        finally:
            self._streams.discard(outputs)
            await outputs.aclose()

    async def events(
        self,
        topics: Sequence[str] | str,
        *,
        last_event_id: int | str | None = None,
        transport: EventWire | None = None,
    ) -> AsyncIterator[Event]:
        """Follow event-bus topics: ``metrics``, ``models``, ``server``, ``jobs/<id>``, ``jobs`` (every job,
        also spelt ``jobs/*``), ``*``.

        Over Server-Sent Events (the default on ``http(s)://``), WebSocket (``transport="ws"``) or gRPC
        ``Events/Subscribe`` (on ``grpc(s)://``). ``last_event_id`` (SSE and gRPC) resumes after that
        event; if it is too old the first event is a reset (``Event.is_reset``). The iteration ends when
        the server shuts down; a reader so slow the server dropped it gets ``ResourceExhaustedError``.

            async for event in client.events(["models", "server"]):
                print(event.type, event.data)
        """
        named = topics.split(",") if isinstance(topics, str) else topics
        chosen = sorted(parse_topics(expand_families(t.strip() for t in named)))
        wire = choose_wire(self._endpoint, transport, ("sse", "ws", "grpc"), "sse")
        resume = _event_id(last_event_id)
        streamer = cast(EventStreamer, self._websocket() if wire == "ws" else self._wire())
        raw_events = streamer.events(chosen, last_event_id=resume)
        self._streams.add(raw_events)
        try:
            async for raw in raw_events:
                yield Event.from_dict(raw)
        finally:
            self._streams.discard(raw_events)
            await raw_events.aclose()

    def _websocket(self) -> PredictStreamer | EventStreamer:
        if self._closed:
            raise RuntimeError("this client is closed")
        return open_websocket(self._endpoint)

    # -- jobs (client/jobs.py) ---------------------------------------------------------------------

    async def submit_job(
        self,
        inputs: JobInputs,
        *,
        model: str = "sentiment",
        version: str | None = None,
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJobHandle:
        """Submit an async job: the server stores it and answers at once; the handle follows it.

        ``inputs`` is a list of rows (texts, or any JSON value for other models), any iterable or async
        iterable of rows (streamed, never held whole), or a ``pathlib.Path`` to a ``.csv`` / ``.ndjson``
        file (streamed as bytes). ``callback_url`` gets the final state, signed; the same
        ``idempotency_key`` and request return the job submitted first (``handle.created`` is False).

            job = await client.submit_job(["great", "awful"])
            done = await job.wait(timeout=60)
            async for row in job.results():
                print(row.index, row.result)
        """
        spec = JobSubmission(model, "predict", version, callback_url, metadata or {}, idempotency_key)
        return await submit_job(self._job_wire(), spec, inputs)

    async def submit_training(
        self,
        data: JobInputs,
        *,
        model: str = "sentiment",
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJobHandle:
        """Train a new version of ``model`` on the server, as a job (``POST /v1/models/{name}/train``).

        ``data``: ``{"text", "label"}`` rows or ``(text, label)`` pairs (label 0 or 1), or a ``pathlib.Path``
        to a CSV with text,label columns. On success ``job.wait().result`` holds the new ``version`` and
        its held-out ``accuracy``; the server serves the version at once.
        """
        spec = JobSubmission(model, "train", None, callback_url, metadata or {}, idempotency_key)
        return await submit_job(self._job_wire(), spec, data)

    async def job(self, job_id: str) -> AsyncJobHandle:
        """A handle on a job submitted earlier (by anyone); ``JobNotFoundError`` if there is none."""
        wire = self._job_wire()
        return AsyncJobHandle(wire, JobInfo.from_dict(await wire.get(job_id)), created=False)

    async def list_jobs(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Jobs newest first, optionally only those in ``status``; ``limit`` 1..1000 per page."""
        return await list_jobs(self._job_wire(), status=status, limit=limit, cursor=cursor)

    def _job_wire(self) -> JobWire:
        return open_job_wire(self._wire())

    # -- features (client/features.py) -------------------------------------------------------------

    async def get_features(
        self,
        features: Sequence[str],
        entities: Mapping[str, Sequence[str | int]],
        *,
        full_feature_names: bool = False,
    ) -> dict[str, Any]:
        """Online features of many entities in one call, in Feast's column-wise shape on both wires.

        answer = await client.get_features(["user_stats:avg_rating"], {"user_id": ["u1", "u2"]})
        answer["results"][1]["values"]  # [4.5, None]
        answer["results"][1]["statuses"]  # ["PRESENT", "NOT_FOUND"]
        """
        wire = open_feature_wire(self._wire())
        return await wire.get(features, entities, full_feature_names=full_feature_names)

    async def push_features(self, view: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Write rows of ``view`` (streamed: NDJSON on REST, client streaming on gRPC); answers
        ``{"view", "applied", "skipped"}`` (skipped: older than the stored values)."""
        return await open_feature_wire(self._wire()).push(view, rows)

    async def feature_views(self) -> list[dict[str, Any]]:
        """The feature views: name, entities, typed features, TTL."""
        return await open_feature_wire(self._wire()).views()

    async def models(self) -> list[ModelSummary]:
        """The served models, their versions and readiness."""
        return [ModelSummary.from_dict(raw) for raw in await self._wire().models()]

    async def health(self) -> Health:
        """Whether the server is live and ready. Raises ``UnavailableError`` if it cannot be reached."""
        return await self._wire().health()

    # -- model management (needs models:admin; docs/admin.md) -------------------------------------------

    async def model_versions(self) -> list[dict[str, Any]]:
        """Every model version, served or in the repository: ``{"name", "version", "state", "reason"}``."""
        return await open_admin_wire(self._wire()).index()

    async def model_state(self, name: str) -> dict[str, Any]:
        """A model's default version, versions (state, reason, metrics), traffic and history."""
        return await open_admin_wire(self._wire()).get(name)

    async def load_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Load a version (default: the default one); it is ready (warmed up) when this returns."""
        return await open_admin_wire(self._wire()).load(name, version)

    async def unload_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Unload a version (default: every version); calls in flight finish."""
        return await open_admin_wire(self._wire()).unload(name, version)

    async def delete_version(self, name: str, version: str) -> dict[str, Any]:
        """Unload a version and delete its artifact (not the default, nor one taking traffic)."""
        return await open_admin_wire(self._wire()).delete(name, version)

    async def set_default(self, name: str, version: str) -> dict[str, Any]:
        """Make ``version`` the default (``rollback`` returns to the one before)."""
        return await open_admin_wire(self._wire()).set_default(name, str(version))

    async def set_traffic(
        self, name: str, *, versions: Any = _UNSET, sticky: Any = _UNSET, shadow: Any = _UNSET
    ) -> dict[str, Any]:
        """Canary split (``versions={"1": 90, "2": 10}``, ``sticky="principal"|"header"|"entity"|None``)
        and/or shadow (``shadow={"version": "3", "percent": 100}`` or ``None``); what is not given stays."""
        body = traffic_body(versions, sticky, shadow)
        return await open_admin_wire(self._wire()).set_traffic(name, body)

    async def rollback(self, name: str) -> dict[str, Any]:
        """The default and all traffic back to the previous default."""
        return await open_admin_wire(self._wire()).rollback(name)

    async def memory(self) -> dict[str, Any]:
        """The memory budget: ``budget_bytes`` (``None``: no budget), ``used_bytes`` and every version's
        ``size_bytes``, ``last_used`` (Unix seconds), ``pinned``, ``state``."""
        return await open_admin_wire(self._wire()).memory()

    async def pin_model(self, name: str, pinned: bool = True) -> dict[str, Any]:
        """Pin a model (the memory budget never unloads it), or unpin it with ``pinned=False``."""
        return await open_admin_wire(self._wire()).set_pinned(name, pinned)

    async def aclose(self) -> None:
        """Close the connection and any stream still open (a loop left by ``break``). Safe to call twice."""
        self._closed = True
        streams, self._streams = list(self._streams), set()
        for stream in streams:
            with contextlib.suppress(Exception):  # one being iterated elsewhere closes when it next yields
                await stream.aclose()
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"


async def _checked(texts: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    """The texts as an async iterator, each checked to be a string before it is sent."""
    index = 0
    if isinstance(texts, AsyncIterable):
        async for text in texts:
            yield _text(text, index)
            index += 1
    else:
        for text in texts:
            yield _text(text, index)
            index += 1


def _text(text: object, index: int) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(
            f"texts[{index}] must be a string, not {type(text).__name__}", field=f"$.texts[{index}]"
        )
    return text


def _event_id(value: int | str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"last_event_id must be an event id (an integer), not {str(value)[:40]!r}", field="last_event_id"
        ) from None
