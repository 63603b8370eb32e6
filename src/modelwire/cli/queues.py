"""``modelwire consume`` (queue consumers without the HTTP face) and ``modelwire queue send`` (try it out)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.main import (
    LogLevel,
    Typer,
    _reported,
    app,
    app_dir_option,
    build_settings,
    config_option,
    data_dir_option,
    event_sink_option,
    log_level_option,
    ops_port_option,
    queue_option,
)
from modelwire.errors import ConfigurationError

__all__ = ["consume", "send"]

_PANEL = "Consumer"

queue_app = Typer(help="Talk to a modelwire consumer over a broker (docs/queues.md).", no_args_is_help=True)
app.add_typer(queue_app, name="queue")


@app.command()
def consume(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[MODEL]...",
            help="Models to load, as for [bold]serve[/] (default: the sentiment model).",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[list[str] | None, queue_option(_PANEL)] = None,
    event_sink: Annotated[list[str] | None, event_sink_option(_PANEL)] = None,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
    app_dir: Annotated[Path | None, app_dir_option(_PANEL)] = None,
    log_level: Annotated[LogLevel | None, log_level_option(_PANEL)] = None,
    ops_port: Annotated[int | None, ops_port_option(_PANEL)] = None,
) -> None:
    """Answer inference requests from brokers and ingest feature events (no REST or gRPC), until SIGTERM.

    Each [bold]--queue URL[/] (or entry of the config file's queues section) is consumed: RabbitMQ's
    queue [cyan]modelwire.requests[/], NATS's subject [cyan]modelwire.requests[/] and JetStream stream
    [cyan]MODELWIRE[/], Redis's stream [cyan]modelwire:requests[/]. SIGTERM stops fetching, answers and
    acknowledges what is in flight, and exits 0. [bold]--ops-port[/] serves health and /metrics.
    """
    from modelwire.app.main import run_consume

    with _reported():
        settings = build_settings(
            models or (),
            data_dir=data_dir,
            config=config,
            app_dir=app_dir,
            log_level=log_level.value if log_level is not None else None,
            queue=queue,
            event_sink=event_sink,
            ops_port=ops_port,
        )
        run_consume(settings)  # refuses a configuration with nothing to consume


@queue_app.command()
def send(
    url: Annotated[str, typer.Argument(help="The broker: amqp://, nats:// or redis://.", show_default=False)],
    texts: Annotated[
        list[str], typer.Argument(metavar="TEXT...", help="Texts to predict, one request each.")
    ],
    model: Annotated[str | None, typer.Option(help="The model to ask (default: the consumer's).")] = None,
    name: Annotated[
        str | None, typer.Option(help="The queue, subject or stream (default: modelwire.requests).")
    ] = None,
    durable: Annotated[
        bool, typer.Option("--durable", help="NATS: through JetStream (modelwire.durable.requests).")
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MODELWIRE_API_KEY", help="API key or JWT (consumers with auth on).", show_default=False
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.", min=0.001)] = 30.0,
    ca_file: Annotated[
        Path | None, typer.Option(help="TLS: the CA bundle the broker's certificate is checked against.")
    ] = None,
    cert_file: Annotated[Path | None, typer.Option(help="TLS: a client certificate (PEM).")] = None,
    key_file: Annotated[Path | None, typer.Option(help="TLS: the client certificate's key (PEM).")] = None,
) -> None:
    """Send each TEXT as a request and print each answer (JSON, one line each), in order."""
    from modelwire.client.queues import QueueSender
    from modelwire.settings import QueueSettings

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def main(queue: QueueSettings) -> list[bytes]:
        async with QueueSender(queue, durable=durable, timeout=timeout) as sender:
            bodies = [json.dumps({"text": t, **({"model": model} if model else {})}).encode() for t in texts]
            return await asyncio.gather(*(sender.request(b, headers=headers) for b in bodies))

    with _reported():
        queue = QueueSettings(url=url, name=name, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        try:
            answers = asyncio.run(main(queue))
        except TimeoutError:
            raise ConfigurationError(
                f"no answer within {timeout:g} s: is a consumer running (modelwire consume --queue {url})?"
            ) from None
        except (OSError, ConnectionError, ValueError) as exc:
            raise ConfigurationError(f"cannot reach {url.split('@')[-1]}: {exc}") from None
    for answer in answers:
        sys.stdout.write(answer.decode() + "\n")


@app.command()
def asyncapi(
    queue: Annotated[list[str] | None, queue_option(_PANEL)] = None,
    event_sink: Annotated[list[str] | None, event_sink_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
) -> None:
    """Print the AsyncAPI 3 document (JSON) of the message channels: the queues, WebSocket and SSE.

    The same document a running server answers at [bold]/asyncapi.json[/].
    """
    from modelwire.protocols.asyncapi import asyncapi_document

    with _reported():
        settings = build_settings(config=config, queue=queue, event_sink=event_sink)
        sys.stdout.write(json.dumps(asyncapi_document(settings), indent=2) + "\n")
