"""``modelwire jobs``: submit, status, results, cancel and list async jobs on a running server.

Everything goes through the client (``Client.submit_job`` and its ``JobHandle``), over REST or gRPC as the
URL says. ``--wait`` draws a live progress bar on stderr fed by the job's pushed events (SSE or gRPC
``Jobs/Watch``), not by polling. Rendering is pure (``job_line``, ``job_table``), tested without a server.

A job id may be shortened to any prefix only one of the caller's jobs has (``modelwire jobs status 5f0c``);
``jobs list`` always prints ids whole.

Exit codes: 0 done; 1 an error (unknown job, unreachable server, ...) or, with ``--wait``, a job that
failed or was cancelled; 2 bad usage; 130 interrupted (the job goes on on the server).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelwire.cli.client import ApiKeyOption, CaCertOption, UrlOption
from modelwire.cli.main import DEFAULT_CLIENT_URL, Typer, _reported, app
from modelwire.client.job_results import JobEvent, JobInfo
from modelwire.client.jobs import JobHandle
from modelwire.errors import InvalidInputError, JobNotFoundError

if TYPE_CHECKING:
    from modelwire.client import Client

__all__ = ["job_line", "job_table", "jobs_app", "resolve_job", "submit_training_job"]

jobs_app = Typer(
    name="jobs",
    help="Async jobs on a running server: submit a file, follow it, read its results, cancel, list.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(jobs_app, name="jobs")

_STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
}

TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=0.001)]
JsonOption = Annotated[bool, typer.Option("--json", help="Plain JSON, no colour (for scripts).")]
JobId = Annotated[
    str, typer.Argument(metavar="ID", help="The job id (as submit printed it), or a prefix only one job has.")
]
_SHOWN_MATCHES = 10


class Status(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# -- rendering (pure) ---------------------------------------------------------------------------------


def _progress(job: JobInfo) -> str:
    if job.stage:
        return f"{escape(job.stage)} {job.fraction or 0:.0%}"
    text = f"{job.done}/{job.total} rows"
    if job.errors:
        text += f" ([red]{job.errors} failed[/])"
    return text


def job_line(job: JobInfo) -> str:
    """``<id>  succeeded  echo  3/3 rows (1 failed)``, plus the error or the result when there is one."""
    style = _STATUS_STYLE.get(job.status, "bold")
    model = escape(job.model + (f" v{job.version}" if job.version else ""))
    line = f"[bold]{escape(job.id)}[/]  [{style}]{job.status}[/]  {model}  {_progress(job)}"
    if job.error is not None:
        line += f"\n  [red]{escape(job.error.message)}[/] [{job.error.code.value}]"
    if job.result:
        line += "  " + escape(json.dumps(dict(job.result), separators=(", ", ": ")))
    return line


def job_table(jobs: Sequence[JobInfo]) -> Table:
    """The jobs as a table whose id column is never cut or wrapped (ids are copied into other commands):
    on a narrow terminal the other columns give way."""
    table = Table(title="jobs", title_justify="left")
    widest = max((len(job.id) for job in jobs), default=2)
    table.add_column("id", style="bold", no_wrap=True, min_width=widest, overflow="ignore")
    for column in ("status", "kind", "model", "progress", "created"):
        table.add_column(column)
    for job in jobs:
        created = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at)) if job.created_at else "-"
        )
        style = _STATUS_STYLE.get(job.status, "bold")
        table.add_row(
            escape(job.id), f"[{style}]{job.status}[/]", job.kind, escape(job.model), _progress(job), created
        )
    return table


def resolve_job(client: Client, job_id: str) -> JobHandle:
    """The job ``job_id`` names, whole or as a prefix only one of the caller's jobs has.

    The exact id is asked first; otherwise the caller's jobs are listed (newest first, page by page) and
    an id starting with ``job_id`` is the one. Several: ``InvalidInputError`` listing them.
    """
    try:
        return client.job(job_id)
    except JobNotFoundError as missing:
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = client.list_jobs(limit=1000, cursor=cursor)
            found += [job.id for job in page.jobs if job.id.startswith(job_id)]
            cursor = page.next_cursor
            if cursor is None or not page.jobs:
                break
        if not found:
            raise missing from None
        if len(found) > 1:
            shown = ", ".join(found[:_SHOWN_MATCHES]) + (", ..." if len(found) > _SHOWN_MATCHES else "")
            raise InvalidInputError(
                f"job id prefix {job_id!r} matches {len(found)} jobs: {shown}; give more of the id"
            ) from None
        return client.job(found[0])


def _print(job: JobInfo, as_json: bool) -> None:
    from modelwire.console import console

    if as_json:
        typer.echo(json.dumps(dict(job.raw), default=str))
    else:
        console.print(job_line(job), highlight=False, soft_wrap=True)


# -- following a job ----------------------------------------------------------------------------------


@contextmanager
def _interruptible(job_id: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        from modelwire.console import err_console

        err_console.print(f"[dim]stopped waiting; job {escape(job_id)} goes on on the server[/]")
        raise typer.Exit(130) from None


def _follow(handle: JobHandle, timeout: float | None) -> JobInfo:
    """Draw a progress bar fed by the job's pushed events until it ends; its final state."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from modelwire.console import err_console

    bar = Progress(
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err_console,
    )
    with bar, _interruptible(handle.id):
        task = bar.add_task(handle.info.status, total=1.0, detail="")

        def show(event: JobEvent) -> None:
            info = event.job
            bar.update(task, description=info.status, completed=info.fraction or 0.0, detail=_progress(info))

        return handle.wait(timeout, on_event=show)


def _finish(info: JobInfo, as_json: bool) -> None:
    _print(info, as_json)
    if info.status != "succeeded":
        raise typer.Exit(1)


# -- commands -----------------------------------------------------------------------------------------


@jobs_app.command()
def submit(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="Rows to run: a .csv (a text column) or .ndjson/.jsonl file (one JSON value per line).",
            exists=True,
            dir_okay=False,
        ),
    ],
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    model: Annotated[str, typer.Option(help="Model name.")] = "sentiment",
    version: Annotated[str | None, typer.Option(help="Model version (default: the newest).")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job with a live progress bar until it ends.")
    ] = False,
    callback_url: Annotated[
        str | None, typer.Option(help="POSTed the final job state, signed (see docs/jobs.md).")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with the same key returns the same job.")
    ] = None,
    wait_timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up waiting after this many seconds.", min=0.001)
    ] = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Upload FILE as an async job; print its id (with [cyan]--wait[/], follow it to the end).

    The file is streamed, never read whole. Exits 0 once the job is stored (with --wait: once it
    succeeded), 1 on an error or, with --wait, if the job failed or was cancelled.
    """
    from modelwire.client import Client

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        handle = client.submit_job(
            file, model=model, version=version, callback_url=callback_url, idempotency_key=idempotency_key
        )
        if not wait:
            _print(handle.info, as_json)
            return
        _finish(_follow(handle, wait_timeout), as_json)


@jobs_app.command()
def status(
    job_id: JobId,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Print a job's status, progress, and its error or result."""
    from modelwire.client import Client

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        info = resolve_job(client, job_id).info
    _print(info, as_json)


@jobs_app.command()
def results(
    job_id: JobId,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of stdout.", dir_okay=False),
    ] = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Write a job's results as NDJSON, one line per row in input order.

    Each line is [cyan]{"index": i, ...output}[/] or [cyan]{"index": i, "error": {...}}[/] for a row that
    failed. A job still running gives the rows done so far (and says so on stderr).
    """
    from modelwire.client import Client
    from modelwire.console import err_console

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        handle = resolve_job(client, job_id)
        target: IO[str]
        with open(output, "w", encoding="utf-8") if output is not None else _stdout() as target:
            count = _write_results(handle, target)
    if not handle.info.final:
        err_console.print(f"[yellow]the job is {handle.info.status}: {count} rows so far[/]", highlight=False)
    elif output is not None:
        err_console.print(f"wrote {count} rows to {escape(str(output))}", highlight=False)


@contextmanager
def _stdout() -> Iterator[IO[str]]:
    import sys

    yield sys.stdout


def _write_results(handle: JobHandle, target: IO[str]) -> int:
    count = 0
    for row in handle.results():
        if row.ok:
            line = {"index": row.index, **row.result.to_dict()}  # type: ignore[union-attr]
        else:
            line = {"index": row.index, "error": row.result.to_dict()}  # type: ignore[union-attr]
        target.write(json.dumps(line, separators=(",", ":")) + "\n")
        count += 1
    return count


@jobs_app.command()
def cancel(
    job_id: JobId,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Cancel a queued or running job (a running one stops at its next batch). Exits 1 if it had ended."""
    from modelwire.client import Client

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        info = resolve_job(client, job_id).cancel()
    _print(info, as_json)


@jobs_app.command("list")
def list_(
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    status: Annotated[Status | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first).", min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """List recent jobs, newest first."""
    from modelwire.client import Client
    from modelwire.console import console

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        page = client.list_jobs(status=status.value if status is not None else None, limit=limit)
    if as_json:
        typer.echo(json.dumps([dict(job.raw) for job in page.jobs], default=str))
    else:
        console.print(job_table(page.jobs))


def submit_training_job(
    url: str,
    data: Path,
    name: str,
    *,
    wait: bool,
    timeout: float = 30.0,
    api_key: str | None = None,
    ca_cert: Path | None = None,
    promote: str | None = None,
) -> None:
    """``modelwire train FILE --async``: train on a running server, as a job."""
    from modelwire.client import Client

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        metadata = {"promote": promote} if promote is not None else None
        handle = client.submit_training(data, model=name, metadata=metadata)
        if not wait:
            _print(handle.info, False)
            from modelwire.console import err_console

            err_console.print(
                f"[dim]follow it with: modelwire jobs status {escape(handle.id)} --url {escape(url)}[/]",
                highlight=False,
            )
            return
        _finish(_follow(handle, None), False)
