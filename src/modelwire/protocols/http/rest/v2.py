"""The Open Inference Protocol (KServe "v2") REST routes. Parse, call the data plane, render."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelwire.core.dataplane import TRAFFIC_KEY_HEADER, CallContext
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import encode, read_body
from modelwire.protocols.http.disconnect import until_disconnected
from modelwire.protocols.http.rest.v2codec import HEADER_LENGTH, decode_request, encode_response

__all__ = ["V2Routes"]

_MEDIA = ("application/json", "application/octet-stream")


def _json(value: Any, status: int = 200) -> Response:
    return Response(encode(value), status, media_type="application/json")


class V2Routes:
    """Handlers bound to one ``Facades``."""

    def __init__(self, services: Facades) -> None:
        self.dataplane = services.dataplane
        self.limit = services.settings.limits.max_body_bytes
        self.max_depth = services.settings.limits.max_json_depth

    async def server_metadata(self, request: Request) -> Response:
        return _json(self.dataplane.server_metadata())

    async def live(self, request: Request) -> Response:
        live = self.dataplane.live()
        return _json({"live": live}, 200 if live else 503)

    async def ready(self, request: Request) -> Response:
        ready = self.dataplane.ready()
        return _json({"ready": ready}, 200 if ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        return _json(self.dataplane.model_metadata(name, version))

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        ready = self.dataplane.model_ready(name, version)
        return _json({"name": name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Request) -> Response:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        body = await read_body(request, self.limit, media_types=_MEDIA, untyped=True)
        infer_request = decode_request(body, request.headers.get(HEADER_LENGTH), max_depth=self.max_depth)
        deadline = None
        timeout_us = infer_request.parameters.get("timeout")
        if isinstance(timeout_us, int) and timeout_us > 0:
            deadline = time.monotonic() + timeout_us / 1e6
        ctx = CallContext("rest", deadline, traffic_key=request.headers.get(TRAFFIC_KEY_HEADER))
        response = await until_disconnected(
            request.receive, self.dataplane.infer_tensors(name, infer_request, version=version, ctx=ctx)
        )
        content, json_size = encode_response(response, infer_request)
        headers = {"Model-Version": response.model_version}
        if json_size is None:
            return Response(content, headers=headers, media_type="application/json")
        headers["Inference-Header-Content-Length"] = str(json_size)
        return Response(content, media_type="application/octet-stream", headers=headers)
