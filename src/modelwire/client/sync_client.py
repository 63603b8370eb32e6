"""``Client``: the blocking face of ``AsyncClient``, sharing every line of its logic.

How this works: each ``Client`` owns a private event loop running in a daemon thread, started by the first
call. A method hands the matching ``AsyncClient`` coroutine to that loop (``run_coroutine_threadsafe``) and
waits for its result, so requests, parsing, error translation and both transports exist once, in the
async code. The private loop also means a ``Client`` works where a loop is already running (a notebook, an
async framework's sync handler), and that gRPC's asyncio channel always lives on the loop that made it.
Ctrl-C while waiting cancels the call on the loop (the wait is cut in short slices: a signal may land on
another thread, and the main thread only notices it between blocking calls). ``close()`` closes the
connection, stops the loop and joins the thread.

Streams (``stream_predict``, ``events``) are the async generators, stepped one item at a time on the loop
(``_iterate``); leaving the ``for`` early, or Ctrl-C, closes the generator there, which closes its socket.
A plain iterable of texts is read on a worker thread, so a slow or blocking source never stalls the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from modelwire.client.admin import _UNSET
from modelwire.client.async_client import DEFAULT_TIMEOUT, DEFAULT_URL, AsyncClient
from modelwire.client.job_inputs import JobInputs, from_thread
from modelwire.client.job_results import JobPage
from modelwire.client.jobs import JobHandle
from modelwire.client.results import Event, Health, ModelSummary, Prediction, StreamedPrediction
from modelwire.client.transport import EventWire, PredictWire
from modelwire.errors import ModelwireError

__all__ = ["Client"]

T = TypeVar("T")
_POLL_S = 0.2
_END = object()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(RuntimeError):  # already closed
        loop.call_soon_threadsafe(loop.stop)


class Client:
    """Blocking client: the same API and errors as ``AsyncClient``, without ``await``.

    with Client("http://127.0.0.1:8000") as client:
        print(client.predict("I love this product").sentiment)
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
        self._async = AsyncClient(
            url,
            timeout=timeout,
            headers=headers,
            http2=http2,
            api_key=api_key,
            token=token,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
        )
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def protocol(self) -> str:
        """``"grpc"`` or ``"rest"``."""
        return self._async.protocol

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("this client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_loop, args=(loop,), name="modelwire-client", daemon=True
                )
                thread.start()
                # A client dropped without close() still stops its thread.
                weakref.finalize(self, _stop, loop)
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            loop = self._start()
        except BaseException:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            while not future.done():
                # Short waits: a Ctrl-C whose signal landed on another thread is raised between them.
                concurrent.futures.wait((future,), timeout=_POLL_S)
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def predict(self, text: str, *, model: str = "sentiment", version: str | None = None) -> Prediction:
        """See ``AsyncClient.predict``."""
        return self._run(self._async.predict(text, model=model, version=version))

    def predict_batch(
        self, texts: Sequence[str], *, model: str = "sentiment", version: str | None = None
    ) -> list[Prediction | ModelwireError]:
        """See ``AsyncClient.predict_batch``."""
        return self._run(self._async.predict_batch(texts, model=model, version=version))

    def stream_predict(
        self,
        texts: Iterable[str],
        *,
        model: str | None = None,
        version: str | None = None,
        transport: PredictWire | None = None,
    ) -> Generator[StreamedPrediction]:
        """See ``AsyncClient.stream_predict``. ``texts`` may be a generator: it is read as answers come."""
        source = texts if isinstance(texts, str | bytes | Sequence) else _from_thread(texts)
        return self._iterate(
            self._async.stream_predict(source, model=model, version=version, transport=transport)
        )

    def events(
        self,
        topics: Sequence[str] | str,
        *,
        last_event_id: int | str | None = None,
        transport: EventWire | None = None,
    ) -> Generator[Event]:
        """See ``AsyncClient.events``."""
        return self._iterate(self._async.events(topics, last_event_id=last_event_id, transport=transport))

    def _iterate(self, stream: AsyncIterator[T]) -> Generator[T]:
        steps: list[asyncio.Task[Any]] = []

        async def step() -> Any:
            task = asyncio.current_task()
            assert task is not None
            steps[:] = [task]
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return _END

        async def close() -> None:
            # A step cancelled by Ctrl-C may still be unwinding: the generator cannot be closed under it.
            running = [task for task in steps if not task.done()]
            if running:
                await asyncio.wait(running)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

        def items() -> Generator[T]:
            try:
                while (item := self._run(step())) is not _END:
                    yield item
            finally:
                if self._loop is not None and not self._closed:
                    self._run(close())

        return items()

    # -- jobs (client/jobs.py) ---------------------------------------------------------------------

    def submit_job(
        self,
        inputs: JobInputs,
        *,
        model: str = "sentiment",
        version: str | None = None,
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> JobHandle:
        """See ``AsyncClient.submit_job``. A generator of rows is read on a worker thread as it uploads."""
        handle = self._run(
            self._async.submit_job(
                _threaded(inputs),
                model=model,
                version=version,
                callback_url=callback_url,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )
        return JobHandle(self, handle)

    def submit_training(
        self,
        data: JobInputs,
        *,
        model: str = "sentiment",
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> JobHandle:
        """See ``AsyncClient.submit_training``."""
        handle = self._run(
            self._async.submit_training(
                _threaded(data),
                model=model,
                callback_url=callback_url,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )
        return JobHandle(self, handle)

    def job(self, job_id: str) -> JobHandle:
        """See ``AsyncClient.job``."""
        return JobHandle(self, self._run(self._async.job(job_id)))

    def list_jobs(self, *, status: str | None = None, limit: int = 50, cursor: str | None = None) -> JobPage:
        """See ``AsyncClient.list_jobs``."""
        return self._run(self._async.list_jobs(status=status, limit=limit, cursor=cursor))

    def get_features(
        self,
        features: Sequence[str],
        entities: Mapping[str, Sequence[str | int]],
        *,
        full_feature_names: bool = False,
    ) -> dict[str, Any]:
        """``AsyncClient.get_features``: Feast's column-wise shape on both wires."""
        return self._run(self._async.get_features(features, entities, full_feature_names=full_feature_names))

    def push_features(self, view: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """``AsyncClient.push_features``: ``{"view", "applied", "skipped"}``."""
        return self._run(self._async.push_features(view, rows))

    def feature_views(self) -> list[dict[str, Any]]:
        return self._run(self._async.feature_views())

    def models(self) -> list[ModelSummary]:
        """See ``AsyncClient.models``."""
        return self._run(self._async.models())

    def health(self) -> Health:
        """See ``AsyncClient.health``."""
        return self._run(self._async.health())

    def model_versions(self) -> list[dict[str, Any]]:
        """See ``AsyncClient.model_versions``."""
        return self._run(self._async.model_versions())

    def model_state(self, name: str) -> dict[str, Any]:
        """See ``AsyncClient.model_state``."""
        return self._run(self._async.model_state(name))

    def load_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """See ``AsyncClient.load_model``."""
        return self._run(self._async.load_model(name, version))

    def unload_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """See ``AsyncClient.unload_model``."""
        return self._run(self._async.unload_model(name, version))

    def delete_version(self, name: str, version: str) -> dict[str, Any]:
        """See ``AsyncClient.delete_version``."""
        return self._run(self._async.delete_version(name, version))

    def set_default(self, name: str, version: str) -> dict[str, Any]:
        """See ``AsyncClient.set_default``."""
        return self._run(self._async.set_default(name, version))

    def set_traffic(
        self, name: str, *, versions: Any = _UNSET, sticky: Any = _UNSET, shadow: Any = _UNSET
    ) -> dict[str, Any]:
        """See ``AsyncClient.set_traffic``."""
        return self._run(self._async.set_traffic(name, versions=versions, sticky=sticky, shadow=shadow))

    def rollback(self, name: str) -> dict[str, Any]:
        """See ``AsyncClient.rollback``."""
        return self._run(self._async.rollback(name))

    def memory(self) -> dict[str, Any]:
        """See ``AsyncClient.memory``."""
        return self._run(self._async.memory())

    def pin_model(self, name: str, pinned: bool = True) -> dict[str, Any]:
        """See ``AsyncClient.pin_model``."""
        return self._run(self._async.pin_model(name, pinned))

    def close(self) -> None:
        """Close the connection and stop the private loop. Safe to call twice."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._async.aclose(), loop).result()
        finally:
            _stop(loop)
            thread.join()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


def _threaded(inputs: JobInputs) -> JobInputs:
    """Rows from a plain iterator are pulled on a worker thread; sequences, files and async ones as given."""
    if isinstance(inputs, str | bytes | Sequence | os.PathLike | AsyncIterable):
        return inputs
    return from_thread(inputs)


async def _from_thread(texts: Iterable[str]) -> AsyncIterator[str]:
    """A blocking iterable as an async one: each ``next()`` runs on a worker thread."""
    iterator = iter(texts)
    while (text := await asyncio.to_thread(next, iterator, _END)) is not _END:
        yield cast(str, text)
