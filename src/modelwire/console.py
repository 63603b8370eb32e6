"""Terminal output shared by the CLI and the server: rich consoles, the training progress bar, tables.

Results go to stdout (``console``) so they can be piped; progress, warnings and errors go to stderr
(``err_console``). Both resolve ``sys.stdout``/``sys.stderr`` when they print, not at import.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelwire.client.results import ModelSummary

__all__ = ["console", "err_console", "models_table", "print_error", "training_progress"]

console = Console()
err_console = Console(stderr=True)

ProgressCallback = Callable[[str, float], None]


@contextlib.contextmanager
def training_progress(target: Console | None = None) -> Iterator[ProgressCallback]:
    """Yield a ``(stage, fraction)`` callback drawing a progress bar on stderr.

    The bar appears at the first call, so wrapping work that may not train (a server start that finds a
    trained version) shows nothing. The callback may be called from any thread.

        with training_progress() as progress:
            train_sentiment(repository, progress=progress)
    """
    bar = Progress(
        TextColumn("[bold]training[/] {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=target or err_console,
    )
    lock = threading.Lock()
    task: TaskID | None = None

    def update(stage: str, fraction: float) -> None:
        nonlocal task
        with lock:
            if task is None:
                bar.start()
                task = bar.add_task(escape(stage), total=1.0)
            bar.update(task, description=escape(stage), completed=min(max(fraction, 0.0), 1.0))

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def print_error(message: str) -> None:
    """One line on stderr, no traceback: ``error: <message>``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def models_table(models: Sequence[ModelSummary]) -> Table:
    """Served models as a table: name, default version, every version with its readiness, platform."""
    table = Table(title="models", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("default")
    table.add_column("versions")
    table.add_column("platform")
    for model in models:
        versions = ", ".join(
            f"{escape(v.version)} [green]ready[/]" if v.ready else f"{escape(v.version)} [yellow]not ready[/]"
            for v in model.versions
        )
        table.add_row(escape(model.name), escape(model.default_version), versions, escape(model.platform))
    return table
