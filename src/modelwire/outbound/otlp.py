"""Span export over OTLP: the OpenTelemetry SDK's tracer provider, its batch processor and an exporter.

``start_tracing`` decides from the settings and the standard environment whether traces are exported at
all; when they are not (the default) it returns ``None`` having imported nothing of the SDK. When they
are, it builds a ``TracerProvider`` (sampler from ``OTEL_TRACES_SAMPLER``/``_ARG``, resource from
``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``, else ``service.name`` = the role's name) with a
``BatchSpanProcessor`` (``OTEL_BSP_*``) feeding the OTLP exporter of the chosen protocol, and makes it
the global provider so spans a model makes with ``opentelemetry.trace.get_tracer()`` join the request's.
The exporters are the library's own (``opentelemetry-exporter-otlp-proto-grpc`` / ``-http``): nothing
here encodes or sends a span.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelwire._version import __version__
from modelwire.errors import ConfigurationError
from modelwire.settings import ObservabilitySettings

__all__ = ["OtlpTarget", "Tracing", "otlp_target", "start_tracing"]

logger = logging.getLogger("modelwire.server")
PROTOCOLS = ("grpc", "http/protobuf")
_HTTP_PATH = "/v1/traces"


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where spans go: ``endpoint`` ``None`` lets the exporter read its ``OTEL_EXPORTER_OTLP_*`` variable."""

    protocol: str
    endpoint: str | None


def otlp_target(
    settings: ObservabilitySettings, environ: Mapping[str, str] = os.environ
) -> OtlpTarget | None:
    """Whether (and where) to export: ``settings.otlp_endpoint``, else the standard environment; ``None``:
    off. ``OTEL_SDK_DISABLED=true`` turns export off whatever else says."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    protocol = (
        settings.otlp_protocol
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol not in PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol {protocol!r} is not supported: use grpc or http/protobuf (--otlp-protocol)"
        )
    endpoint = settings.otlp_endpoint
    if endpoint is None:
        if not (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        ):
            return None
        return OtlpTarget(protocol, None)
    if protocol == "http/protobuf" and not endpoint.rstrip("/").endswith(_HTTP_PATH):
        # As OTEL_EXPORTER_OTLP_ENDPOINT: a base URL, the signal's path appended.
        endpoint = endpoint.rstrip("/") + _HTTP_PATH
    return OtlpTarget(protocol, endpoint)


class Tracing:
    """The running export: a tracer for ``observability.tracing.install``; ``shutdown`` flushes and stops."""

    def __init__(self, provider: Any, target: OtlpTarget) -> None:
        self._provider = provider
        self.target = target
        self.tracer = provider.get_tracer("modelwire", __version__)

    def shutdown(self) -> None:
        """Export what is still buffered (bounded by ``OTEL_BSP_EXPORT_TIMEOUT``), then stop the exporter."""
        self._provider.shutdown()


def start_tracing(settings: ObservabilitySettings, service_name: str) -> Tracing | None:
    """Start exporting spans, or ``None`` when export is off (nothing of the SDK imported then)."""
    target = otlp_target(settings)
    if target is None:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            f"exporting traces needs the OpenTelemetry SDK ({exc.name} is missing): "
            "pip install 'modelwire[otel]'"
        ) from None
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(target)))
    trace.set_tracer_provider(provider)
    where = target.endpoint or "the OTEL_EXPORTER_OTLP_* endpoint"
    logger.info(
        "exporting traces over OTLP/%s to %s as %s",
        target.protocol,
        where,
        resource.attributes["service.name"],
    )
    return Tracing(provider, target)


def _exporter(target: OtlpTarget) -> Any:
    try:
        if target.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise ConfigurationError(
            f"exporting traces over OTLP/{target.protocol} needs {exc.name}: pip install 'modelwire[otel]'"
        ) from None
    return OTLPSpanExporter(endpoint=target.endpoint)
