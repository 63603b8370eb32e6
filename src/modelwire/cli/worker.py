"""``modelwire worker``: job workers with the models loaded here, and no HTTP or gRPC front.

The same ``Services`` as ``serve`` (models, data plane, job runner, webhook dispatcher, retention purge,
event bus), started without listeners. It needs a job store other processes share: Redis
(``--jobs-backend redis://...``), where gateways (``modelwire serve``) accept jobs and any number of
workers on any host run them. With SQLite it only makes sense next to a server on the same host and data
dir (the same ``jobs.sqlite3``), so it refuses unless that file exists. SIGTERM or Ctrl-C gives a running
job back to the queue (``release``: the attempt is not counted) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from modelwire.cli.gateway import check_upstreams, gateway_section, upstream_option, upstream_tls_option
from modelwire.cli.main import (
    LogLevel,
    _help,
    _reported,
    app,
    build_settings,
    config_option,
    data_dir_option,
    log_level_option,
)
from modelwire.errors import ConfigurationError
from modelwire.settings import Settings

if TYPE_CHECKING:
    from modelwire.events.bus import Event
    from modelwire.services import Services

__all__ = ["check_backend", "worker"]

_PANEL = "Worker"
_HOP_PANEL = "gRPC hop to the model services (with --upstream)"


def check_backend(settings: Settings) -> str:
    """What the worker's banner says about the backend; ``ConfigurationError`` when it cannot be shared."""
    backend = settings.jobs.backend
    if backend.startswith(("redis://", "rediss://", "unix://")):
        from modelwire.jobs.redis import RedisTarget

        target = RedisTarget.parse(backend)
        return f"Redis {target.display} (keys {target.prefix}*)"
    from modelwire.jobs.sqlite import SqliteJobStore
    from modelwire.jobs.store import open_store

    store = open_store(settings)
    assert isinstance(store, SqliteJobStore)
    if not store.path.is_file():
        raise ConfigurationError(
            f"no job database at {store.path}: a worker shares its jobs with a server. Use "
            "--jobs-backend redis://host:port/db (servers and workers on any host), or point --data-dir "
            "at the data dir of a modelwire serve on this host (SQLite is one file, shared on one machine)"
        )
    return f"SQLite {store.path} (shared with the server on this host; job events stay in this process)"


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
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
    log_level: Annotated[LogLevel | None, log_level_option(_PANEL)] = None,
    upstream_ca: Annotated[Path | None, upstream_tls_option("upstream_ca", _HOP_PANEL)] = None,
    upstream_cert: Annotated[Path | None, upstream_tls_option("upstream_cert", _HOP_PANEL)] = None,
    upstream_cert_key: Annotated[Path | None, upstream_tls_option("upstream_cert_key", _HOP_PANEL)] = None,
    upstream_server_name: Annotated[
        str | None, upstream_tls_option("upstream_server_name", _HOP_PANEL)
    ] = None,
) -> None:
    """Run job workers (no HTTP or gRPC) against a shared job store, until SIGTERM or Ctrl-C.

    Gateways run [bold]modelwire serve --jobs-backend redis://…[/]; workers, on any host, the same
    [bold]--jobs-backend[/]. Each worker claims jobs from the Redis stream, runs them on its own models
    and publishes their events to every gateway.

    With [bold]--upstream[/] it loads no model: jobs call the [bold]modelwire model-service[/]s over gRPC,
    as a [bold]modelwire gateway[/] does.

    A worker that dies loses nothing: another takes its job over when the lease runs out. SIGTERM gives
    the running job back to the queue at once and exits 0.
    """
    from modelwire.observability.logs import configure_logging

    with _reported():
        settings = build_settings(
            models or (),
            data_dir=data_dir,
            config=config,
            log_level=log_level.value if log_level is not None else None,
            jobs_backend=jobs_backend,
            **_sections(concurrency),
            **gateway_section(
                upstream, tls=(upstream_ca, upstream_cert, upstream_cert_key, upstream_server_name)
            ),
        )
        if settings.gateway.upstreams:
            check_upstreams(settings)
        if settings.jobs.workers < 1:
            raise ConfigurationError("a worker needs at least one job worker: --concurrency 1 or more")
        where = check_backend(settings)
        configure_logging(settings.log_level)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_work(settings, where))


def _sections(concurrency: int | None) -> dict[str, Any]:
    return {"jobs": {"workers": concurrency}} if concurrency is not None else {}


async def _work(settings: Settings, where: str) -> None:
    from modelwire.console import err_console, training_progress
    from modelwire.services import Services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    err_console.print(f"[bold]modelwire worker[/]: jobs from {escape(where)}", highlight=False)
    if settings.jobs.webhook_secret is None and where.startswith("Redis"):
        err_console.print(
            "[yellow]warning:[/] MODELWIRE_JOBS__WEBHOOK_SECRET is not set: webhooks of jobs run here are "
            f"signed with {escape(str(settings.data_dir / 'webhook_secret'))}; give every process one key",
            highlight=False,
        )
    router = None
    if settings.gateway.upstreams:  # models are model services, called over gRPC (gateway/)
        from modelwire.gateway.run import attach_upstreams

        services, router = await attach_upstreams(settings)
    else:
        with training_progress() as progress:
            services = await asyncio.to_thread(Services.build, settings, progress=progress)
    await services.start()
    if router is not None:
        router.attach()
    watch = asyncio.create_task(_report(services), name="worker-report")
    names = ", ".join(f"{h.name} {h.version}" for h in services.registry.handles())
    err_console.print(
        f"[green]ready[/]: {settings.jobs.workers} job worker(s), lease {settings.jobs.lease_s:g} s; "
        f"models: {escape(names)}. SIGTERM gives a running job back and exits.",
        highlight=False,
    )
    await stop.wait()
    err_console.print("stopping: giving running jobs back to the queue", highlight=False)
    await services.stop()
    if router is not None:
        await router.close()
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    err_console.print("stopped", highlight=False)


async def _report(services: Services) -> None:
    """One line when a job starts here and one when it ends (events of other processes' jobs are skipped)."""
    from modelwire.console import err_console

    # The runner's worker ids (``lease_owner``) start with its process-wide prefix.
    prefix = services.jobs.runner._prefix
    started: dict[str, float] = {}
    async with services.events.subscribe(["jobs/*"]) as sub:
        async for event in sub:
            job_id = str(event.data.get("id", ""))
            if event.type == "job.running":
                with contextlib.suppress(Exception):
                    job = await services.jobs.store.get(job_id)
                    if (job.lease_owner or "").startswith(prefix):
                        started[job_id] = time.monotonic()
                        err_console.print(_line(event, "running"), highlight=False)
            elif job_id in started and event.type != "job.progress":
                seconds = time.monotonic() - started.pop(job_id)
                err_console.print(_line(event, f"{event.type[4:]} after {seconds:.1f} s"), highlight=False)


def _line(event: Event, what: str) -> str:
    data = event.data
    progress = data.get("progress") or {}
    rows = f"{progress.get('done', 0)}/{progress.get('total', '?')} rows"
    error = data.get("error")
    tail = f": {escape(str(error.get('message', '')))}" if isinstance(error, dict) and error else ""
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(what.split()[0], "cyan")
    return (
        f"[{colour}]job {escape(str(data.get('id')))}[/] {what} ({escape(str(data.get('model')))}, "
        f"{rows}, attempt {data.get('attempts', '?')}){tail}"
    )
