"""``AsyncClient``: the client itself. The sync ``Client`` drives this same object (see ``sync_client``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

from modelwire.client.results import Health, ModelSummary, Prediction
from modelwire.client.transport import Endpoint, Transport, open_transport, parse_url
from modelwire.errors import InvalidInputError, ModelwireError

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
    ) -> None:
        self._endpoint: Endpoint = parse_url(url, timeout=timeout, headers=headers, http2=http2)
        self._transport: Transport | None = None
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

    async def models(self) -> list[ModelSummary]:
        """The served models, their versions and readiness."""
        return [ModelSummary.from_dict(raw) for raw in await self._wire().models()]

    async def health(self) -> Health:
        """Whether the server is live and ready. Raises ``UnavailableError`` if it cannot be reached."""
        return await self._wire().health()

    async def aclose(self) -> None:
        """Close the connection. Safe to call twice."""
        self._closed = True
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
