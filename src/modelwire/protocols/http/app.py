"""``create_app(services)``: the REST face of modelwire as one ASGI app (FastAPI, for its OpenAPI docs).

Handlers take the raw ``Request`` and decode with msgspec: FastAPI contributes routing and ``/docs``, not
per-request validation, which keeps the hot path short. The request/response schemas are msgspec structs
whose JSON Schemas are merged into the generated OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, request_response

from modelwire._version import __version__
from modelwire.errors import ModelwireError
from modelwire.observability.metrics import CONTENT_TYPE
from modelwire.protocols.asyncapi import asyncapi_document
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.auth import SecurityMiddleware
from modelwire.protocols.http.body_timeout import BodyTimeoutMiddleware
from modelwire.protocols.http.disconnect import ClientDisconnectedError
from modelwire.protocols.http.errors import handle_http_exception, handle_modelwire_error, handle_unexpected
from modelwire.protocols.http.hotpath import HotPathMiddleware, HotRoute
from modelwire.protocols.http.openapi import body, merge_components, responses, v2_body
from modelwire.protocols.http.rest.admin import add_admin_routes
from modelwire.protocols.http.rest.apidocs import add_api_docs_routes
from modelwire.protocols.http.rest.dashboard import add_dashboard_routes
from modelwire.protocols.http.rest.features import add_feature_routes
from modelwire.protocols.http.rest.jobs import add_jobs_routes
from modelwire.protocols.http.rest.monitoring import add_monitoring_routes
from modelwire.protocols.http.rest.v1 import V1Routes
from modelwire.protocols.http.rest.v2 import V2Routes
from modelwire.protocols.http.rest.ws_token import add_auth_routes
from modelwire.protocols.http.schemas import ModelList, Prediction, Predictions, PredictRequest
from modelwire.protocols.http.sse import add_sse_routes
from modelwire.protocols.http.tracing import TraceMiddleware
from modelwire.protocols.http.ws import add_ws_routes
from modelwire.security.crosssite import normalize_origin

__all__ = ["DirectRoute", "create_app", "create_ops_app"]

# What a page allowed by CORS may read besides the simple response headers.
_CORS_EXPOSED = (
    "location",
    "model-version",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-request-id",
    "www-authenticate",
)


class DirectRoute(APIRoute):
    """An ``APIRoute`` for handlers that take the raw ``Request`` and return a ``Response``.

    FastAPI still documents it (OpenAPI, ``/docs``); serving skips dependency solving and FastAPI's two
    per-request ``AsyncExitStack``s, which these handlers do not use.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)


def create_app(services: Facades, *, hot_path: bool = True) -> FastAPI:
    """Build the ASGI app over ``services``. No I/O happens here.

    ``hot_path=False`` serves the inference routes through the framework's router too (``hotpath.py``);
    the tests compare both.
    """
    app = FastAPI(
        title="modelwire",
        version=__version__,
        summary="One model server for every wire. REST here; gRPC on the gRPC port.",
        # FastAPI's built-in OpenTelemetry wrapper costs ~60 us a request even with no exporter; modelwire
        # records its own metrics (observability/), so it stays off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # FastAPI's /docs and /redoc load their scripts from a CDN: /docs is served from the package instead
        # (rest/apidocs.py), under the dashboard's Content-Security-Policy.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        exception_handlers={
            ModelwireError: handle_modelwire_error,
            HTTPException: handle_http_exception,
            ClientDisconnectedError: _disconnected,
            Exception: handle_unexpected,
        },
    )
    app.router.route_class = DirectRoute
    v1 = V1Routes(services)
    v2 = V2Routes(services)
    predict_doc: dict[str, Any] = {
        "openapi_extra": body(PredictRequest),
        "responses": responses(Prediction, Predictions),
    }
    route = app.add_api_route
    route(
        "/predict",
        v1.predict_default,
        methods=["POST"],
        tags=["predict"],
        summary="Predict with the default model (the seed's endpoint)",
        **predict_doc,
    )
    route(
        "/v1/models",
        v1.list_models,
        methods=["GET"],
        tags=["models"],
        summary="List models and versions",
        responses=responses(ModelList),
    )
    route(
        "/v1/models/{name}/predict",
        v1.predict,
        methods=["POST"],
        tags=["predict"],
        summary="Predict with a model's default version",
        **predict_doc,
    )
    route(
        "/v1/models/{name}/versions/{version}/predict",
        v1.predict_version,
        methods=["POST"],
        tags=["predict"],
        summary="Predict with one version of a model",
        **predict_doc,
    )

    oip: list[str | Enum] = ["open inference protocol"]
    route("/v2", v2.server_metadata, methods=["GET"], tags=oip, summary="Server metadata")
    route("/v2/health/live", v2.live, methods=["GET"], tags=oip, summary="Liveness")
    route("/v2/health/ready", v2.ready, methods=["GET"], tags=oip, summary="Readiness")
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        route(prefix, v2.model_metadata, methods=["GET"], tags=oip, summary="Model metadata")
        route(f"{prefix}/ready", v2.model_ready, methods=["GET"], tags=oip, summary="Model readiness")
        route(
            f"{prefix}/infer",
            v2.infer,
            methods=["POST"],
            tags=oip,
            summary="Inference (JSON or binary tensors)",
            openapi_extra=v2_body(),
        )

    settings = services.settings

    async def asyncapi(request: Request) -> Response:
        """The AsyncAPI 3 document of the message channels (queues, WebSocket, SSE): protocols/asyncapi.py."""
        host = request.headers.get("host") or f"{settings.host}:{settings.http_port}"
        document = asyncapi_document(settings, http_host=host)
        return Response(msgspec.json.encode(document), media_type="application/json")

    route("/asyncapi.json", asyncapi, methods=["GET"], include_in_schema=False)

    # Streaming adapters, jobs and the dashboard register their own routes below, one line each.
    add_dashboard_routes(app, services)
    add_api_docs_routes(app)
    add_ws_routes(app, services)
    add_sse_routes(app, services)
    add_jobs_routes(app, services)
    add_monitoring_routes(app, services)
    add_feature_routes(app, services)
    add_auth_routes(app, services)
    add_admin_routes(app, services)
    # (end of adapter routes)

    if services.settings.observability.metrics:
        metrics = services.metrics

        async def metrics_endpoint(request: Request) -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

        route(
            "/metrics",
            metrics_endpoint,
            methods=["GET"],
            tags=["observability"],
            summary="Prometheus metrics",
            responses={200: {"description": "The Prometheus text format", "content": {CONTENT_TYPE: {}}}},
            response_class=PlainTextResponse,
            include_in_schema=True,
        )
    merge_components(app)
    # Innermost: the inference routes without the framework's inner layers, same behaviour (hotpath.py).
    hot = [
        HotRoute("POST", "/predict", v1.predict_default),
        HotRoute("POST", "/v1/models/{name}/predict", v1.predict),
        HotRoute("POST", "/v1/models/{name}/versions/{version}/predict", v1.predict_version),
        HotRoute("POST", "/v2/models/{name}/infer", v2.infer),
        HotRoute("POST", "/v2/models/{name}/versions/{version}/infer", v2.infer),
    ]
    if hot_path:
        app.add_middleware(HotPathMiddleware, routes=hot, exception_handlers=app.exception_handlers)
    limits = services.settings.limits  # next: its 408 passes the trace middleware (x-request-id)
    app.add_middleware(
        BodyTimeoutMiddleware, timeout_s=limits.body_read_timeout_s, bytes_per_timeout=limits.max_body_bytes
    )
    auth = services.settings.auth  # inside the trace middleware: refusals carry the request id too
    app.add_middleware(SecurityMiddleware, policy=services.security, api_key_header=auth.api_key_header)
    http = services.settings.http
    if http.cors_origins:  # outside the security middleware: a preflight carries no credential
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[normalize_origin(o) for o in http.cors_origins],
            allow_methods=list(http.cors_methods),
            allow_headers=list(http.cors_headers),
            expose_headers=list(_CORS_EXPOSED),
            max_age=http.cors_max_age_s,
        )
    app.add_middleware(TraceMiddleware)  # traceparent, x-request-id, Request-Timeout (rest/tracing.py)
    return app


async def _disconnected(request: Request, exc: Exception) -> Response:
    # Nobody is listening; 499 (as nginx logs it) keeps the access log honest.
    return Response(status_code=499)


def create_ops_app(services: Facades) -> Starlette:
    """The ops face of a role with no REST one (``consume``, ``worker``), served on ``ops_port``.

    Such a role has no REST listener, so an orchestrator could not probe it nor Prometheus scrape it. This
    app answers ``GET /v2/health/live`` and ``GET /v2/health/ready`` with the REST face's own handlers (a
    probe written for ``serve`` works unchanged: ready is 503 until the models are loaded and again once the
    process drains) and ``GET /metrics`` (``models:admin`` with auth on, as on the REST face); every other
    path is a 404, every other method a 405: no inference over HTTP there.
    """
    v2 = V2Routes(services)
    routes = [
        Route("/v2/health/live", v2.live, methods=["GET"]),
        Route("/v2/health/ready", v2.ready, methods=["GET"]),
    ]
    if services.settings.observability.metrics:
        metrics = services.metrics

        async def metrics_endpoint(request: Request) -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    app = Starlette(
        routes=routes,
        exception_handlers={
            ModelwireError: handle_modelwire_error,
            HTTPException: handle_http_exception,
        },
    )
    auth = services.settings.auth
    app.add_middleware(SecurityMiddleware, policy=services.security, api_key_header=auth.api_key_header)
    app.add_middleware(TraceMiddleware)
    return app
