"""``modelwire serve``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.main import (
    LogLevel,
    OtlpProtocol,
    _help,
    _reported,
    app,
    app_dir_option,
    batching_option,
    build_settings,
    config_option,
    data_dir_option,
    event_sink_option,
    features_section,
    grpc_port_option,
    host_option,
    http_port_option,
    log_level_option,
    max_batch_size_option,
    max_delay_ms_option,
    otlp_endpoint_option,
    otlp_protocol_option,
    queue_option,
    request_timeout_option,
)

_SERVE_PANEL = "Server"
_BATCH_PANEL = "Batching and limits"
_AUTH_PANEL = "Authentication (see SECURITY.md)"
_TLS_PANEL = "TLS (see docs/tls.md)"


class AuthMode(enum.StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


@app.command()
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MODEL]...",
            help="Models to serve instead of the default sentiment model: [cyan]package.module:Class[/], a "
            "[cyan].skops/.joblib/.pkl/.onnx[/] file or [cyan]builtin:sentiment[/], each optionally "
            "[cyan]NAME=SOURCE[/].",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str | None, host_option(_SERVE_PANEL)] = None,
    http_port: Annotated[int | None, http_port_option(_SERVE_PANEL)] = None,
    grpc_port: Annotated[int | None, grpc_port_option(_SERVE_PANEL)] = None,
    data_dir: Annotated[Path | None, data_dir_option(_SERVE_PANEL)] = None,
    config: Annotated[Path | None, config_option(_SERVE_PANEL)] = None,
    app_dir: Annotated[Path | None, app_dir_option(_SERVE_PANEL)] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=_help("Processes sharing the ports", "workers"), rich_help_panel=_SERVE_PANEL),
    ] = None,
    log_level: Annotated[LogLevel | None, log_level_option(_SERVE_PANEL)] = None,
    max_batch_size: Annotated[int | None, max_batch_size_option(_BATCH_PANEL)] = None,
    max_delay_ms: Annotated[float | None, max_delay_ms_option(_BATCH_PANEL)] = None,
    batching: Annotated[bool | None, batching_option(_BATCH_PANEL)] = None,
    request_timeout: Annotated[float | None, request_timeout_option(_BATCH_PANEL)] = None,
    jobs_backend: Annotated[
        str | None,
        typer.Option(
            help=_help(
                "Where async jobs are kept: sqlite (in the data dir), sqlite:///path, or "
                "redis://host:port/db shared with [bold]modelwire worker[/]s",
                "jobs.backend",
            ),
            rich_help_panel=_SERVE_PANEL,
        ),
    ] = None,
    ws_echo: Annotated[
        bool | None,
        typer.Option(
            "--ws-echo",
            help=_help("Serve /v1/ws/echo", "ws.echo"),
            show_default=False,
            rich_help_panel=_SERVE_PANEL,
        ),
    ] = None,
    auth: Annotated[
        AuthMode | None,
        typer.Option(
            case_sensitive=False,
            help=_help(
                "Require credentials (API keys from [bold]modelwire keys create[/], or JWTs): on, off, or "
                "auto = on unless the server binds only loopback",
                "auth.mode",
            ),
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            help=_help(
                "A web origin (https://app.example.com) whose pages may POST and open WebSockets here; "
                "repeat for more",
                "http.allowed_origins",
                "only the server's own",
            ),
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help=_help(
                "A web origin whose pages may also read answers (CORS); repeat for more",
                "http.cors_origins",
                "CORS off",
            ),
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure",
            help=_help("Allow --auth off on a non-loopback address (warns loudly)", "auth.insecure"),
            show_default=False,
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    jwt_secret: Annotated[
        str | None,
        typer.Option(
            help=_help("HS256 key (32+ bytes) for JWT bearer tokens", "auth.jwt_secret", "none"),
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    jwt_jwks: Annotated[
        Path | None,
        typer.Option(
            help=_help("JWKS file of RS256/ES256 public keys for JWTs", "auth.jwt_jwks", "none"),
            exists=True,
            dir_okay=False,
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    jwt_issuer: Annotated[
        str | None,
        typer.Option(
            help=_help("Required JWT iss", "auth.jwt_issuer", "not checked"), rich_help_panel=_AUTH_PANEL
        ),
    ] = None,
    jwt_audience: Annotated[
        str | None,
        typer.Option(
            help=_help("Required JWT aud", "auth.jwt_audience", "tokens with an aud are refused"),
            rich_help_panel=_AUTH_PANEL,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "PEM certificate chain: HTTPS (HTTP/1.1, HTTP/2), wss://, SSE and gRPC over TLS; "
                "[bold]modelwire certs init[/] makes one",
                "tls.cert",
                "none",
            ),
            exists=True,
            dir_okay=False,
            rich_help_panel=_TLS_PANEL,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            help=_help("PEM private key of --tls-cert (reloaded with it on SIGHUP)", "tls.key", "none"),
            exists=True,
            dir_okay=False,
            rich_help_panel=_TLS_PANEL,
        ),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            help=_help(
                "Mutual TLS on the gRPC port: refuse clients without a certificate signed by this CA",
                "tls.client_ca",
                "none",
            ),
            exists=True,
            dir_okay=False,
            rich_help_panel=_TLS_PANEL,
        ),
    ] = None,
    http3: Annotated[
        bool | None,
        typer.Option(
            "--http3",
            help=_help("Also serve HTTP/3 (QUIC, UDP) on the REST port number", "tls.http3"),
            show_default=False,
            rich_help_panel=_TLS_PANEL,
        ),
    ] = None,
    tls_redirect_port: Annotated[
        int | None,
        typer.Option(
            help=_help("Plain-HTTP port that only redirects (308) to HTTPS", "tls.redirect_port", "none"),
            rich_help_panel=_TLS_PANEL,
        ),
    ] = None,
    queue: Annotated[list[str] | None, queue_option(_SERVE_PANEL)] = None,
    event_sink: Annotated[list[str] | None, event_sink_option(_SERVE_PANEL)] = None,
    tls_public_host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST",
            help=_help(
                "Host name clients reach HTTPS by, which --tls-redirect-port's Location names",
                "tls.public_host",
                "the bind host",
            ),
            rich_help_panel=_TLS_PANEL,
        ),
    ] = None,
    otlp_endpoint: Annotated[str | None, otlp_endpoint_option(_SERVE_PANEL)] = None,
    otlp_protocol: Annotated[OtlpProtocol | None, otlp_protocol_option(_SERVE_PANEL)] = None,
    memory_budget: Annotated[
        str | None,
        typer.Option(
            "--memory-budget",
            metavar="SIZE",
            help=_help(
                "At most this much memory for the loaded models: bytes, 2GiB, 512MB or 50% of RAM; the "
                "least recently used idle unpinned model is unloaded to make room (docs/admin.md)",
                "models.memory_budget",
                "none",
            ),
            rich_help_panel=_BATCH_PANEL,
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help=_help(
                "The online feature store: sqlite (in the data dir), redis://host:port/db, or "
                "grpc://host:port, another modelwire's store over gRPC (docs/features.md)",
                "features.store",
            ),
            rich_help_panel=_SERVE_PANEL,
        ),
    ] = None,
) -> None:
    """Serve models over REST and gRPC until Ctrl-C or SIGTERM.

    Each flag overrides its [bold]MODELWIRE_…[/] environment twin, which overrides the config file,
    which overrides the default. The first start trains the default sentiment model if no version exists.
    """
    from modelwire.app import main

    with _reported():
        settings = build_settings(
            models or (),
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            data_dir=data_dir,
            config=config,
            app_dir=app_dir,
            workers=workers,
            log_level=log_level.value if log_level is not None else None,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            batching=batching,
            request_timeout=request_timeout,
            jobs_backend=jobs_backend,
            ws_echo=ws_echo,
            auth=auth.value if auth is not None else None,
            insecure=insecure,
            allowed_origins=tuple(allowed_origin) if allowed_origin else None,
            cors_origins=tuple(cors_origin) if cors_origin else None,
            jwt_secret=jwt_secret,
            jwt_jwks=jwt_jwks,
            jwt_issuer=jwt_issuer,
            jwt_audience=jwt_audience,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            http3=http3,
            tls_redirect_port=tls_redirect_port,
            tls_public_host=tls_public_host,
            queue=queue,
            event_sink=event_sink,
            otlp_endpoint=otlp_endpoint,
            otlp_protocol=otlp_protocol.value if otlp_protocol is not None else None,
            memory_budget=memory_budget,
            **features_section(features),
        )
        main.run(settings)
