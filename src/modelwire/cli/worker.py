"""``modelwire worker``: job workers with the models loaded here, and no HTTP or gRPC front.

The same ``Services`` as ``serve`` (models, data plane, job runner, webhook dispatcher, retention purge,
event bus), started without listeners. It needs a job store other processes share: Redis
(``--jobs-backend redis://...``), where gateways (``modelwire serve``) accept jobs and any number of
workers on any host run them. With SQLite it only makes sense next to a server on the same host and data
dir (the same ``jobs.sqlite3``), so it refuses unless that file exists. SIGTERM or Ctrl-C gives a running
job back to the queue (``release``: the attempt is not counted) and exits 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelwire.backends.resolve import describe_jobs_backend
from modelwire.cli.gateway import check_upstreams, gateway_section, upstream_option, upstream_tls_option
from modelwire.cli.main import (
    LogLevel,
    OtlpProtocol,
    _help,
    _reported,
    app,
    app_dir_option,
    build_settings,
    config_option,
    data_dir_option,
    event_sink_option,
    log_level_option,
    ops_port_option,
    otlp_endpoint_option,
    otlp_protocol_option,
)
from modelwire.errors import ConfigurationError
from modelwire.settings import Settings

__all__ = ["check_backend", "worker"]

_PANEL = "Worker"
_HOP_PANEL = "gRPC hop to the model services (with --upstream)"


def check_backend(settings: Settings) -> str:
    """What the worker's banner says about the backend; ``ConfigurationError`` when it cannot be shared."""
    kind, where = describe_jobs_backend(settings)
    if kind == "sqlite":
        path = Path(where.removeprefix("SQLite "))
        if not path.is_file():
            raise ConfigurationError(
                f"no job database at {path}: a worker shares its jobs with a server. Use "
                "--jobs-backend redis://host:port/db (servers and workers on any host), or point "
                "--data-dir at the data dir of a modelwire serve on this host (SQLite is one file, "
                "shared on one machine)"
            )
        return f"{where} (shared with the server on this host; job events stay in this process)"
    return where


@app.command()
def worker(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MODEL]...",
            help="Models to load, as for [bold]serve[/] (default: the sentiment model).",
            show_default=False,
        ),
    ] = None,
    jobs_backend: Annotated[
        str | None,
        typer.Option(
            help=_help("The shared job store: redis://host:port/db[?prefix=...]", "jobs.backend"),
            rich_help_panel=_PANEL,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help=_help("Jobs run at once in this process", "jobs.workers"), rich_help_panel=_PANEL
        ),
    ] = None,
    upstream: Annotated[list[str] | None, upstream_option(_PANEL)] = None,
    event_sink: Annotated[list[str] | None, event_sink_option(_PANEL)] = None,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
    app_dir: Annotated[Path | None, app_dir_option(_PANEL)] = None,
    log_level: Annotated[LogLevel | None, log_level_option(_PANEL)] = None,
    upstream_ca: Annotated[Path | None, upstream_tls_option("upstream_ca", _HOP_PANEL)] = None,
    upstream_cert: Annotated[Path | None, upstream_tls_option("upstream_cert", _HOP_PANEL)] = None,
    upstream_cert_key: Annotated[Path | None, upstream_tls_option("upstream_cert_key", _HOP_PANEL)] = None,
    upstream_server_name: Annotated[
        str | None, upstream_tls_option("upstream_server_name", _HOP_PANEL)
    ] = None,
    otlp_endpoint: Annotated[str | None, otlp_endpoint_option(_PANEL)] = None,
    otlp_protocol: Annotated[OtlpProtocol | None, otlp_protocol_option(_PANEL)] = None,
    ops_port: Annotated[int | None, ops_port_option(_PANEL)] = None,
) -> None:
    """Run job workers (no REST or gRPC) against a shared job store, until SIGTERM or Ctrl-C.

    Gateways run [bold]modelwire serve --jobs-backend redis://…[/]; workers, on any host, the same
    [bold]--jobs-backend[/]. Each worker claims jobs from the Redis stream, runs them on its own models
    and publishes their events to every gateway.

    With [bold]--upstream[/] it loads no model: jobs call the [bold]modelwire model-service[/]s over gRPC,
    as a [bold]modelwire gateway[/] does.

    A worker that dies loses nothing: another takes its job over when the lease runs out. SIGTERM gives
    the running job back to the queue at once and exits 0. [bold]--ops-port[/] serves health and /metrics.
    """
    from modelwire.app.components import JobReporter
    from modelwire.app.main import run_worker

    with _reported():
        settings = build_settings(
            models or (),
            data_dir=data_dir,
            config=config,
            app_dir=app_dir,
            log_level=log_level.value if log_level is not None else None,
            jobs_backend=jobs_backend,
            event_sink=event_sink,
            otlp_endpoint=otlp_endpoint,
            otlp_protocol=otlp_protocol.value if otlp_protocol is not None else None,
            **_sections(concurrency),
            ops_port=ops_port,
            **gateway_section(
                upstream, tls=(upstream_ca, upstream_cert, upstream_cert_key, upstream_server_name)
            ),
        )
        if settings.gateway.upstreams:
            check_upstreams(settings)
        if settings.jobs.workers < 1:
            raise ConfigurationError("a worker needs at least one job worker: --concurrency 1 or more")
        where = check_backend(settings)
        run_worker(settings, JobReporter(where))


def _sections(concurrency: int | None) -> dict[str, Any]:
    return {"jobs": {"workers": concurrency}} if concurrency is not None else {}
