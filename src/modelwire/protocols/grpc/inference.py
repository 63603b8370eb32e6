"""``inference.GRPCInferenceService``: the Open Inference Protocol over gRPC, over the DataPlane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from modelwire.errors import ModelwireError, UnavailableError
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc.converters import (
    InferConverter,
    call_context,
    metadata_from_domain,
    send_version,
)
from modelwire.protocols.grpc.errors import error_message, map_errors

__all__ = ["GRPCInferenceServiceServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class GRPCInferenceServiceServicer(oip_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Health, metadata and inference as the Open Inference Protocol defines them; tritonclient.grpc works.

    RPCs of Triton's service that are not in ``proto/inference/grpc_service.proto`` answer UNIMPLEMENTED.
    """

    def __init__(self, services: Facades) -> None:
        self._dataplane = services.dataplane
        self._admin = services.admin

    @map_errors
    async def ServerLive(self, request: Any, context: Context) -> Any:
        return oip.ServerLiveResponse(live=self._dataplane.live())

    @map_errors
    async def ServerReady(self, request: Any, context: Context) -> Any:
        return oip.ServerReadyResponse(ready=self._dataplane.ready())

    @map_errors
    async def ModelReady(self, request: Any, context: Context) -> Any:
        return oip.ModelReadyResponse(
            ready=self._dataplane.model_ready(request.name, request.version or None)
        )

    @map_errors
    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        metadata = self._dataplane.server_metadata()
        return oip.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    @map_errors
    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        return metadata_from_domain(self._dataplane.model_metadata(request.name, request.version or None))

    @map_errors
    async def ModelInfer(self, request: Any, context: Context) -> Any:
        response = await self._infer(request, context)
        send_version(context, response.model_version)
        return response

    @map_errors
    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        # One response per request, in request order; a failed request is reported and the stream goes on.
        async for request in request_iterator:
            try:
                response = await self._infer(request, context)
            except ModelwireError as exc:
                yield oip.ModelStreamInferResponse(error_message=error_message(exc))
            else:
                yield oip.ModelStreamInferResponse(infer_response=response)

    async def _infer(self, request: Any, context: Context) -> Any:
        domain, raw = InferConverter.to_domain(request)
        response = await self._dataplane.infer_tensors(
            request.model_name, domain, version=request.model_version or None, ctx=call_context(context)
        )
        return InferConverter.from_domain(response, raw=raw)

    # -- the repository extension (ModelAdmin checks models:admin) -------------------------------------

    def _models(self) -> Any:
        if self._admin is None:
            raise UnavailableError("this process does not manage models", retry_after_s=None)
        return self._admin

    @map_errors
    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        rows = self._models().index(ready_only=request.ready)
        return oip.RepositoryIndexResponse(
            models=[
                oip.RepositoryIndexResponse.ModelIndex(
                    name=r["name"],
                    version=r["version"],
                    state=_OIP_STATE.get(r["state"], "UNAVAILABLE"),
                    reason=r["reason"],
                )
                for r in rows
            ]
        )

    @map_errors
    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        version = request.parameters["version"].string_param if "version" in request.parameters else ""
        await self._models().load(request.model_name, version or None)
        return oip.RepositoryModelLoadResponse()

    @map_errors
    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        await self._models().unload(request.model_name)
        return oip.RepositoryModelUnloadResponse()


_OIP_STATE = {"ready": "READY", "loading": "LOADING", "unloading": "UNLOADING"}
