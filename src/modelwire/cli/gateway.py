"""``modelwire gateway``: the public face (REST, WebSocket, SSE, jobs, dashboard) over model services."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelwire.cli.main import (
    LogLevel,
    OtlpProtocol,
    _help,
    _reported,
    app,
    build_settings,
    config_option,
    data_dir_option,
    event_sink_option,
    grpc_port_option,
    host_option,
    http_port_option,
    log_level_option,
    otlp_endpoint_option,
    otlp_protocol_option,
    request_timeout_option,
)

if TYPE_CHECKING:
    from modelwire.settings import Settings

_PANEL = "Gateway"
_HOP_PANEL = "gRPC hop to the model services"


def upstream_option(panel: str) -> Any:
    """``--upstream``, shared by ``gateway`` and ``worker``."""
    return typer.Option(
        metavar="HOST:PORT[,HOST:PORT...]|dns:///NAME:PORT",
        help=_help(
            "Model services to call over gRPC (repeat or comma-separate); dns:/// re-resolves the name "
            "every discovery interval (a Kubernetes headless Service)",
            "gateway.upstreams",
            "none",
        ),
        show_default=False,
        rich_help_panel=panel,
    )


_TLS_FLAGS = {
    "upstream_ca": (
        "PEM CA that signed the model services' certificates; turns TLS on for the hop (docs/gateway.md)",
        "FILE",
    ),
    "upstream_cert": ("PEM client certificate for model services that require one (mutual TLS)", "FILE"),
    "upstream_cert_key": ("PEM private key of --upstream-cert", "FILE"),
    "upstream_server_name": (
        "Name the model services' certificates carry, when not the --upstream host",
        "NAME",
    ),
}


def upstream_tls_option(setting: str, panel: str) -> Any:
    """``--upstream-ca``, ``--upstream-cert``, ``--upstream-cert-key``, ``--upstream-server-name``."""
    text, metavar = _TLS_FLAGS[setting]
    return typer.Option(
        metavar=metavar,
        help=_help(text, f"gateway.{setting}", "none"),
        show_default=False,
        rich_help_panel=panel,
    )


def check_upstreams(settings: Settings) -> None:
    """Fail at start, naming the flag, on a malformed ``--upstream`` or unusable TLS files."""
    from modelwire.gateway.tls import UpstreamTLS
    from modelwire.gateway.upstreams import UpstreamSpec

    UpstreamTLS.from_settings(settings.gateway, UpstreamSpec.parse(settings.gateway.upstreams))


def gateway_section(
    upstream: list[str] | None,
    retry_max_attempts: int | None = None,
    keepalive: float | None = None,
    discovery_interval: float | None = None,
    *,
    tls: tuple[Path | None, Path | None, Path | None, str | None] = (None, None, None, None),
) -> dict[str, Any]:
    """The ``gateway`` settings the flags give (only those given), as ``build_settings`` takes them.

    ``tls``: ``--upstream-ca``, ``--upstream-cert``, ``--upstream-cert-key``, ``--upstream-server-name``.
    """
    values: dict[str, Any] = {
        "upstreams": tuple(upstream) if upstream else None,
        "retry_max_attempts": retry_max_attempts,
        "keepalive_s": keepalive,
        "discovery_interval_s": discovery_interval,
        **dict(zip(_TLS_FLAGS, tls, strict=True)),
    }
    given = {key: value for key, value in values.items() if value is not None}
    return {"gateway": given} if given else {}


@app.command()
def gateway(
    upstream: Annotated[list[str] | None, upstream_option(_PANEL)] = None,
    host: Annotated[str | None, host_option(_PANEL)] = None,
    http_port: Annotated[int | None, http_port_option(_PANEL)] = None,
    grpc_port: Annotated[
        int | None, grpc_port_option(_PANEL, "The gateway's own public gRPC port, 0 picks one")
    ] = None,
    jobs_backend: Annotated[
        str | None,
        typer.Option(
            help=_help("Job store shared by every gateway and worker: redis://host:port/db", "jobs.backend"),
            rich_help_panel=_PANEL,
        ),
    ] = None,
    request_timeout: Annotated[
        float | None,
        request_timeout_option(
            _PANEL, "Default time budget of a request in seconds (a Request-Timeout header may shorten it)"
        ),
    ] = None,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
    log_level: Annotated[LogLevel | None, log_level_option(_PANEL)] = None,
    retry_max_attempts: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=5,
            help=_help(
                "Attempts of an inference call that found no model service (UNAVAILABLE)",
                "gateway.retry_max_attempts",
            ),
            rich_help_panel=_HOP_PANEL,
        ),
    ] = None,
    keepalive: Annotated[
        float | None,
        typer.Option(
            help=_help("Seconds between keepalive pings (5 or more)", "gateway.keepalive_s"),
            rich_help_panel=_HOP_PANEL,
        ),
    ] = None,
    discovery_interval: Annotated[
        float | None,
        typer.Option(
            help=_help(
                "Seconds between looking up upstreams and their models again", "gateway.discovery_interval_s"
            ),
            rich_help_panel=_HOP_PANEL,
        ),
    ] = None,
    upstream_ca: Annotated[Path | None, upstream_tls_option("upstream_ca", _HOP_PANEL)] = None,
    upstream_cert: Annotated[Path | None, upstream_tls_option("upstream_cert", _HOP_PANEL)] = None,
    upstream_cert_key: Annotated[Path | None, upstream_tls_option("upstream_cert_key", _HOP_PANEL)] = None,
    upstream_server_name: Annotated[
        str | None, upstream_tls_option("upstream_server_name", _HOP_PANEL)
    ] = None,
    event_sink: Annotated[list[str] | None, event_sink_option(_PANEL)] = None,
    otlp_endpoint: Annotated[str | None, otlp_endpoint_option(_PANEL)] = None,
    otlp_protocol: Annotated[OtlpProtocol | None, otlp_protocol_option(_PANEL)] = None,
) -> None:
    """Serve the public face (REST both APIs, WebSocket, SSE, jobs, dashboard, gRPC) over model services.

    Inference goes to [bold]modelwire model-service[/]s over gRPC: one channel per group of services that
    serve the same models, round-robin over those that report SERVING, keepalive, retries of UNAVAILABLE
    within a retry budget. Routes by model; [bold]/v2/health/ready[/] is ready when every model has a
    healthy service. A [bold]Request-Timeout: SECONDS[/] header (or [bold]--request-timeout[/]) becomes
    the gRPC deadline; running out of it answers 504. [bold]--upstream-ca[/] (with
    [bold]--upstream-cert[/]/[bold]--upstream-cert-key[/] for mutual TLS) puts the hop on TLS. Run many
    gateways with one Redis ([bold]--jobs-backend redis://…[/]): jobs, events and rate limits are shared.
    """
    from modelwire.app.main import run_gateway
    from modelwire.errors import ConfigurationError

    with _reported():
        settings = build_settings(
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            data_dir=data_dir,
            config=config,
            log_level=log_level.value if log_level is not None else None,
            request_timeout=request_timeout,
            jobs_backend=jobs_backend,
            event_sink=event_sink,
            otlp_endpoint=otlp_endpoint,
            otlp_protocol=otlp_protocol.value if otlp_protocol is not None else None,
            **gateway_section(
                upstream,
                retry_max_attempts,
                keepalive,
                discovery_interval,
                tls=(upstream_ca, upstream_cert, upstream_cert_key, upstream_server_name),
            ),
        )
        if not settings.gateway.upstreams:
            raise ConfigurationError(
                "a gateway needs model services: --upstream HOST:PORT[,HOST:PORT...] or dns:///NAME:PORT "
                "(or MODELWIRE_GATEWAY__UPSTREAMS)"
            )
        check_upstreams(settings)  # a malformed upstream or a bad TLS file fails here, with its name
        run_gateway(settings)
