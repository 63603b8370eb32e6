"""The ``modelwire`` command: serve, predict, models, health, train.

Every ``serve`` flag defaults to ``None`` and is passed to ``Settings`` only when given, so the order
flag > environment (``MODELWIRE_…``) > config file > default is ``Settings``' own, not re-implemented
here. ``run()`` (exported as ``modelwire.run``) takes the same names as the flags and goes through the
same ``build_settings``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from modelwire._version import __version__
from modelwire.errors import ConfigurationError, ModelwireError
from modelwire.settings import ModelSettings, Settings, default_data_dir

if TYPE_CHECKING:
    from typer import _click as click  # typer 0.29 vendors click; its parameters are these

__all__ = ["Typer", "app", "build_settings", "parse_model_spec", "run"]

DEFAULT_CLIENT_URL = "http://127.0.0.1:8000"

# -- help: value names instead of typer's ``<int>``/``<list[str]>`` markers --------------------------------

# A value named by what the option is for (checked on its long name) wins over the bare type, except paths.
_NAMED_VALUES = (
    (re.compile(r"-port$"), "PORT"),
    (re.compile(r"^--host$"), "HOST"),
    (re.compile(r"url$"), "URL"),
    (re.compile(r"-ms$"), "MS"),
    (re.compile(r"timeout|interval|keepalive"), "SECONDS"),
    (re.compile(r"key$"), "KEY"),
    (re.compile(r"secret$"), "SECRET"),
    (re.compile(r"origin$"), "ORIGIN"),
    (re.compile(r"backend$"), "BACKEND"),
    (re.compile(r"^--model$"), "NAME"),
    (re.compile(r"^--version$"), "VERSION"),
)
_TYPE_VALUES = {"int": "N", "float": "NUMBER", "str": "TEXT", "file": "FILE", "dir": "DIR", "path": "PATH"}


def _value_name(param: TyperOption, ctx: click.Context) -> str | None:
    """What the help shows after an option: its ``metavar`` if set, nothing for a flag, else a name."""
    if param.metavar is not None:
        return param.metavar
    if param.is_flag or param.count:
        return None
    label = param.display_type(ctx).strip("<>").removesuffix(" range")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if label not in ("file", "dir", "path"):
        name = max(param.opts, key=len)
        for pattern, value in _NAMED_VALUES:
            if pattern.search(name):
                return value
    return _TYPE_VALUES.get(label, label)


class _Option(TyperOption):
    def display_type_rich(self, ctx: click.Context) -> str | None:
        return _value_name(self, ctx)


class _Argument(TyperArgument):
    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None  # the argument's own column already names it (``[MODEL]...``)


def _named_values(params: list[click.Parameter]) -> list[click.Parameter]:
    # typer builds its parameters itself (no class hook), so they are re-classed to the subclasses above,
    # which only change how help names a value.
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _named_values(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _named_values(super().get_params(ctx))


_F = TypeVar("_F", bound=Callable[..., Any])


class Typer(typer.Typer):
    """``typer.Typer`` whose help names values (``PORT``, ``FILE``, ``N``) and shows nothing after a flag:
    every app and command of the CLI is made through it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", _Group)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[_F], _F]:
        kwargs.setdefault("cls", _Command)
        decorator: Callable[[_F], _F] = super().command(name, **kwargs)
        return decorator


app = Typer(
    name="modelwire",
    help="modelwire: one model server: REST (HTTP/1.1, HTTP/2), gRPC, WebSocket, SSE, async jobs.",
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


def features_section(store: str | None) -> dict[str, Any]:
    """``--features URL`` as the ``features`` section ``build_settings`` merges (nothing when not given)."""
    return {"features": {"store": store}} if store is not None else {}


def build_settings(
    models: Sequence[str] = (),
    *,
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    ops_port: int | None = None,
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
    app_dir: Path | str | None = None,
    workers: int | None = None,
    log_level: str | None = None,
    max_batch_size: int | None = None,
    max_delay_ms: float | None = None,
    batching: bool | None = None,
    request_timeout: float | None = None,
    jobs_backend: str | None = None,
    ws_echo: bool | None = None,
    auth: str | None = None,
    insecure: bool | None = None,
    allowed_origins: Sequence[str] | None = None,
    cors_origins: Sequence[str] | None = None,
    jwt_secret: str | None = None,
    jwt_jwks: Path | str | None = None,
    jwt_issuer: str | None = None,
    jwt_audience: str | None = None,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    tls_client_ca: Path | str | None = None,
    http3: bool | None = None,
    tls_redirect_port: int | None = None,
    tls_public_host: str | None = None,
    queue: Sequence[str] | None = None,
    event_sink: Sequence[str] | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    memory_budget: int | str | None = None,
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
        "ops_port": ops_port,
        "data_dir": data_dir,
        "config": config,
        "app_dir": app_dir,
        "workers": workers,
        "log_level": log_level,
        "memory_budget": memory_budget,
    }
    values.update({key: value for key, value in flat.items() if value is not None})
    nested = {
        ("batching", "max_batch_size"): max_batch_size,
        ("batching", "max_delay_ms"): max_delay_ms,
        ("batching", "enabled"): batching,
        ("limits", "request_timeout_s"): request_timeout,
        ("jobs", "backend"): jobs_backend,
        ("ws", "echo"): ws_echo,
        ("auth", "mode"): auth,
        ("auth", "insecure"): insecure,
        ("http", "allowed_origins"): allowed_origins,
        ("http", "cors_origins"): cors_origins,
        ("auth", "jwt_secret"): jwt_secret,
        ("auth", "jwt_jwks"): jwt_jwks,
        ("auth", "jwt_issuer"): jwt_issuer,
        ("auth", "jwt_audience"): jwt_audience,
        ("tls", "cert"): tls_cert,
        ("tls", "key"): tls_key,
        ("tls", "client_ca"): tls_client_ca,
        ("tls", "http3"): http3,
        ("tls", "redirect_port"): tls_redirect_port,
        ("tls", "public_host"): tls_public_host,
        ("observability", "otlp_endpoint"): otlp_endpoint,
        ("observability", "otlp_protocol"): otlp_protocol,
    }
    for (section, key), value in nested.items():
        if value is not None:
            given = values.get(section)
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            values[section] = {**(given or {}), key: value}
    if models:
        values["models"] = tuple(parse_model_spec(spec) for spec in models)
    if queue:
        values["queues"] = tuple(queue)
    if event_sink:
        values["event_sinks"] = tuple(event_sink)
    return Settings(**values)


def run(
    *models: str,
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
    app_dir: Path | str | None = None,
    workers: int | None = None,
    log_level: str | None = None,
    max_batch_size: int | None = None,
    max_delay_ms: float | None = None,
    batching: bool | None = None,
    request_timeout: float | None = None,
    jobs_backend: str | None = None,
    ws_echo: bool | None = None,
    auth: str | None = None,
    insecure: bool | None = None,
    allowed_origins: Sequence[str] | None = None,
    cors_origins: Sequence[str] | None = None,
    jwt_secret: str | None = None,
    jwt_jwks: Path | str | None = None,
    jwt_issuer: str | None = None,
    jwt_audience: str | None = None,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    tls_client_ca: Path | str | None = None,
    http3: bool | None = None,
    tls_redirect_port: int | None = None,
    tls_public_host: str | None = None,
    queue: Sequence[str] | None = None,
    event_sink: Sequence[str] | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    memory_budget: int | str | None = None,
    **settings: Any,
) -> None:
    """Serve until SIGTERM/SIGINT: ``modelwire serve`` as a function, argument for flag.

        import modelwire
        modelwire.run("reverse=mypackage.models:Reverse", http_port=9000, max_batch_size=16)

    ``app_dir`` (default ``.``, the working directory) goes first on ``sys.path`` before models are
    imported, as ``--app-dir`` does.

    Any other ``Settings`` field may be given too (``limits={"max_body_bytes": 1_000_000}``), except
    that ``batching`` is the ``--batching/--no-batching`` switch and ``auth`` the ``--auth on|off|auto``
    mode, as on the command line.
    """
    from modelwire.app import main

    main.run(
        build_settings(
            models,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            data_dir=data_dir,
            config=config,
            app_dir=app_dir,
            workers=workers,
            log_level=log_level,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            batching=batching,
            request_timeout=request_timeout,
            jobs_backend=jobs_backend,
            ws_echo=ws_echo,
            auth=auth,
            insecure=insecure,
            allowed_origins=allowed_origins,
            cors_origins=cors_origins,
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
            otlp_protocol=otlp_protocol,
            memory_budget=memory_budget,
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
    except ConfigurationError as exc:  # the user's settings, not a failure of the server: no error code
        raise _fail(exc.message) from None
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
    """modelwire: one model server: REST (HTTP/1.1, HTTP/2), gRPC, WebSocket, SSE, async jobs.

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


# Options the commands share (serve, model-service, gateway, worker), declared once; each command passes the
# help panel it shows them in.
def data_dir_option(panel: str) -> Any:
    return typer.Option(
        help=_help("Model repository and local state", "data_dir", str(default_data_dir())),
        file_okay=False,
        rich_help_panel=panel,
    )


def config_option(panel: str) -> Any:
    return typer.Option(
        help=_help("TOML config file", "config", "./modelwire.toml if present"),
        exists=True,
        dir_okay=False,
        rich_help_panel=panel,
    )


def app_dir_option(panel: str) -> Any:
    return typer.Option(
        help=_help(
            "Folder put first on sys.path before models are imported (package.module:Class is looked up "
            "there)",
            "app_dir",
            ". (the working directory)",
        ),
        file_okay=False,
        rich_help_panel=panel,
    )


def log_level_option(panel: str) -> Any:
    return typer.Option(
        case_sensitive=False,
        metavar="LEVEL",
        help=_help("critical, error, warning, info or debug", "log_level"),
        rich_help_panel=panel,
    )


def host_option(panel: str) -> Any:
    return typer.Option(help=_help("Interface to bind", "host"), rich_help_panel=panel)


def http_port_option(panel: str) -> Any:
    return typer.Option(help=_help("REST port, 0 picks one", "http_port"), rich_help_panel=panel)


def ops_port_option(panel: str) -> Any:
    return typer.Option(
        help=_help("Port for health (/v2/health/live, /ready) and /metrics; 0 picks one", "ops_port"),
        rich_help_panel=panel,
    )


def grpc_port_option(panel: str, text: str = "gRPC port, 0 picks one") -> Any:
    return typer.Option(help=_help(text, "grpc_port"), rich_help_panel=panel)


def request_timeout_option(panel: str, text: str = "Seconds a model may take per request") -> Any:
    return typer.Option(help=_help(text, "limits.request_timeout_s"), rich_help_panel=panel)


def max_batch_size_option(panel: str) -> Any:
    return typer.Option(
        help=_help("Most requests in one predict call", "batching.max_batch_size"), rich_help_panel=panel
    )


def max_delay_ms_option(panel: str) -> Any:
    return typer.Option(
        help=_help("Longest wait for a batch to fill, in ms", "batching.max_delay_ms"), rich_help_panel=panel
    )


class OtlpProtocol(enum.StrEnum):
    grpc = "grpc"
    http_protobuf = "http/protobuf"


def otlp_endpoint_option(panel: str) -> Any:
    return typer.Option(
        metavar="URL",
        help=_help(
            "Export OpenTelemetry traces to this OTLP collector (http://HOST:4317; needs modelwire[otel])",
            "observability.otlp_endpoint",
            "off, or OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        rich_help_panel=panel,
    )


def otlp_protocol_option(panel: str) -> Any:
    return typer.Option(
        case_sensitive=False,
        help=_help(
            "grpc or http/protobuf", "observability.otlp_protocol", "grpc, or OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
        rich_help_panel=panel,
    )


def batching_option(panel: str) -> Any:
    return typer.Option(
        "--batching/--no-batching",
        help=_help("Adaptive batching on or off", "batching.enabled"),
        show_default=False,
        rich_help_panel=panel,
    )


def queue_option(panel: str) -> Any:
    return typer.Option(
        "--queue",
        metavar="URL",
        help=_help(
            "Also answer inference requests from a broker: amqp://, nats:// or redis:// (docs/queues.md); "
            "repeat for more",
            "queues",
            "none",
        ),
        show_default=False,
        rich_help_panel=panel,
    )


def event_sink_option(panel: str) -> Any:
    return typer.Option(
        "--event-sink",
        metavar="URL",
        help=_help(
            "Publish job and model events to a broker: amqp://, nats:// or redis:// (docs/queues.md, "
            "Events out); repeat for more",
            "event_sinks",
            "none",
        ),
        show_default=False,
        rich_help_panel=panel,
    )
