"""The feature store over REST: ``/v1/features``. A push of a list is one JSON body; of any other iterable,
an NDJSON body streamed from it as it yields."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from modelwire.client._rest import RestTransport, error_from_response, map_httpx_exceptions, read_answer
from modelwire.client.features import PUSH_CHUNK

__all__ = ["RestFeatureWire"]


class RestFeatureWire:
    """``FeatureWire`` over one ``RestTransport``."""

    def __init__(self, transport: RestTransport) -> None:
        self._http = transport._http
        self._url = transport._url

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with map_httpx_exceptions(self._url):
            response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.headers, response.content)
        return read_answer(response.status_code, response.headers, response.content)

    async def get(
        self, features: Sequence[str], entities: Mapping[str, Sequence[Any]], *, full_feature_names: bool
    ) -> dict[str, Any]:
        body = {
            "features": list(features),
            "entities": {k: list(v) for k, v in entities.items()},
            "full_feature_names": full_feature_names,
        }
        answer: dict[str, Any] = await self._json("POST", "/v1/features/get-online-features", json=body)
        return answer

    async def push(self, view: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        path = f"/v1/features/{quote(view, safe='')}/push"
        if isinstance(rows, Sequence):  # in memory already: one JSON body
            answer: dict[str, Any] = await self._json("POST", path, json={"rows": [dict(r) for r in rows]})
            return answer

        async def ndjson() -> AsyncIterator[bytes]:
            it = iter(rows)
            while chunk := list(itertools.islice(it, PUSH_CHUNK)):
                yield "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in chunk).encode()

        streamed: dict[str, Any] = await self._json(
            "POST", path, content=ndjson(), headers={"content-type": "application/x-ndjson"}
        )
        return streamed

    async def views(self) -> list[dict[str, Any]]:
        answer = await self._json("GET", "/v1/features")
        return list(answer["feature_views"])
