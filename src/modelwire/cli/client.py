"""Commands that talk to a running server: ``predict``, ``health`` (``models``: ``cli/models.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.main import (
    DEFAULT_CLIENT_URL,
    _reported,
    app,
)
from modelwire.errors import ModelwireError

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="MODELWIRE_URL",
        help="Server URL: http://, https:// (REST) or grpc://, grpcs:// (gRPC).",
    ),
]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for the answer.", min=0.001)]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="MODELWIRE_API_KEY",
        help="API key or JWT, sent as Authorization: Bearer (servers with authentication on).",
        show_default=False,
        show_envvar=True,
    ),
]
CaCertOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        envvar="MODELWIRE_CA_CERT",
        help="PEM CA to trust for https:// and grpcs:// (e.g. the ca.pem of modelwire certs init).",
        exists=True,
        dir_okay=False,
        show_default=False,
        show_envvar=True,
    ),
]


@app.command()
def predict(
    texts: Annotated[
        list[str], typer.Argument(metavar="TEXT...", help="Text to classify (several for a batch).")
    ],
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    model: Annotated[str, typer.Option(help="Model name.")] = "sentiment",
    version: Annotated[str | None, typer.Option(help="Model version (default: the newest).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Plain JSON, one object per line, no colour (for scripts).")
    ] = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Ask a running server for predictions.

    Prints the model's answer, e.g. [cyan]{"sentiment": "positive", "confidence": 0.93}[/]; a batch prints
    one line per text. Exits 1 if any text failed.
    """
    from modelwire.client import Client, Prediction
    from modelwire.console import console, print_error

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
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
def health(
    url: UrlOption = DEFAULT_CLIENT_URL,
    timeout: TimeoutOption = 5.0,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
) -> None:
    """Check a running server: exit 0 when it is ready, 1 otherwise (not ready, or unreachable)."""
    from modelwire.client import Client
    from modelwire.console import console

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        status = client.health()
    live = "[green]yes[/]" if status.live else "[red]no[/]"
    ready = "[green]yes[/]" if status.ready else "[yellow]no[/]"
    console.print(f"{url}  live: {live}  ready: {ready}", highlight=False)
    if not status.ready:
        raise typer.Exit(1)
