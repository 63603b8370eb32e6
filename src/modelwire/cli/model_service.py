"""``modelwire model-service``: models behind gRPC only, for gateways to call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    features_section,
    grpc_port_option,
    host_option,
    log_level_option,
    max_batch_size_option,
    max_delay_ms_option,
    otlp_endpoint_option,
    otlp_protocol_option,
    request_timeout_option,
)

_PANEL = "Model service"
_BATCH_PANEL = "Batching and limits"
_TLS_PANEL = "TLS (see docs/tls.md, docs/gateway.md)"


def _tls_option(text: str, path: str) -> Any:
    return typer.Option(
        help=_help(text, path, "none"), exists=True, dir_okay=False, rich_help_panel=_TLS_PANEL
    )


@app.command("model-service")
def model_service(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MODEL]...",
            help="Models to serve, as for [bold]serve[/] (default: the sentiment model).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str | None, host_option(_PANEL)] = None,
    grpc_port: Annotated[int | None, grpc_port_option(_PANEL)] = None,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
    app_dir: Annotated[Path | None, app_dir_option(_PANEL)] = None,
    log_level: Annotated[LogLevel | None, log_level_option(_PANEL)] = None,
    max_batch_size: Annotated[int | None, max_batch_size_option(_BATCH_PANEL)] = None,
    max_delay_ms: Annotated[float | None, max_delay_ms_option(_BATCH_PANEL)] = None,
    batching: Annotated[bool | None, batching_option(_BATCH_PANEL)] = None,
    request_timeout: Annotated[
        float | None,
        request_timeout_option(
            _BATCH_PANEL, "Seconds a model may take per request (a caller's shorter deadline wins)"
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        _tls_option(
            "PEM certificate chain: gRPC over TLS ([bold]modelwire certs init[/] makes one)", "tls.cert"
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, _tls_option("PEM private key of --tls-cert (reloaded with it on SIGHUP)", "tls.key")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        _tls_option(
            "Mutual TLS: refuse gateways and clients without a certificate signed by this CA", "tls.client_ca"
        ),
    ] = None,
    otlp_endpoint: Annotated[str | None, otlp_endpoint_option(_PANEL)] = None,
    otlp_protocol: Annotated[OtlpProtocol | None, otlp_protocol_option(_PANEL)] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help=_help(
                "The online feature store: sqlite (in the data dir), redis://host:port/db, or "
                "grpc://host:port, another modelwire's store over gRPC (docs/features.md)",
                "features.store",
            ),
            rich_help_panel=_PANEL,
        ),
    ] = None,
) -> None:
    """Serve models over gRPC only (Predictor, Open Inference Protocol, health, reflection), for gateways.

    No REST, WebSocket or SSE listener: [bold]modelwire gateway --upstream HOST:PORT[/] is the public face
    and forwards inference here. [bold]grpc.health.v1[/] says SERVING once every model is loaded and
    NOT_SERVING from the moment SIGTERM starts the drain, so gateways stop sending before it exits.
    Run one process per core or machine (no [bold]--workers[/]: a gateway balances across processes).
    """
    from modelwire.app import main

    with _reported():
        settings = build_settings(
            models or (),
            host=host,
            grpc_port=grpc_port,
            data_dir=data_dir,
            config=config,
            app_dir=app_dir,
            log_level=log_level.value if log_level is not None else None,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            batching=batching,
            request_timeout=request_timeout,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            otlp_endpoint=otlp_endpoint,
            otlp_protocol=otlp_protocol.value if otlp_protocol is not None else None,
            **features_section(features),
        )
        main.run(settings, rest=False)
