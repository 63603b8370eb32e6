"""``modelwire watch``: follow a running server's events, one compact line each.

Rendering is a pure function of the event (``render_event``), so it is tested without a server. The
metrics snapshot (every second) becomes one line naming only the protocols with traffic or connections.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape

from modelwire.cli.client import ApiKeyOption, CaCertOption, UrlOption
from modelwire.cli.main import DEFAULT_CLIENT_URL, _reported, app
from modelwire.client.results import Event
from modelwire.client.transport import EventWire

__all__ = ["render_event", "render_metrics", "watch"]

DEFAULT_TOPICS = ("metrics", "models", "server")
_PROTOCOL_STYLE = {"rest": "blue", "grpc": "cyan", "ws": "yellow", "sse": "magenta"}
_TYPE_STYLE = {
    "model.loaded": "green",
    "model.unloaded": "yellow",
    "server.ready": "green",
    "server.stopping": "yellow",
    "reset": "bold yellow",
}


class Via(enum.StrEnum):
    sse = "sse"
    ws = "ws"
    grpc = "grpc"


def _number(value: Any, unit: str = "") -> str:
    if not isinstance(value, int | float):
        return "-"
    text = f"{value:.0f}" if value >= 100 else f"{value:.3g}"
    return text + unit


def render_metrics(data: Mapping[str, Any]) -> str:
    """``rest 812/s p50 0.41 ms p99 1.9 ms · ws 3 open · inflight 2``: busy protocols only (rich markup)."""
    parts = []
    protocols = data.get("protocols")
    for name, stats in (protocols or {}).items() if isinstance(protocols, Mapping) else ():
        if not isinstance(stats, Mapping):
            continue
        rate = stats.get("requests_per_s") or 0
        connections = stats.get("connections") or 0
        if not rate and not connections:
            continue
        style = _PROTOCOL_STYLE.get(name, "white")
        piece = f"[{style}]{escape(str(name))}[/]"
        if rate:
            piece += (
                f" [bold]{_number(rate)}[/]/s p50 {_number(stats.get('p50_ms'), ' ms')}"
                f" p99 {_number(stats.get('p99_ms'), ' ms')}"
            )
            errors = stats.get("errors_per_s") or 0
            if errors:
                piece += f" [red]{_number(errors)} err/s[/]"
        if connections:
            piece += f" {connections:g} open"
        parts.append(piece)
    if not parts:
        parts.append("[dim]idle[/]")
    if isinstance(data.get("inflight"), int | float):
        parts.append(f"inflight {data['inflight']:g}")
    return " · ".join(parts)


def render_event(event: Event) -> str:
    """One line of rich markup: time, event type, and a short form of its data."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.time or time.time()))
    style = _TYPE_STYLE.get(event.type, "bold")
    head = f"[dim]{clock}[/] [{style}]{escape(event.type or event.topic):<15}[/]"
    data = event.data
    if event.type == "metrics":
        body = render_metrics(data)
    elif event.is_reset:
        body = "events were missed (the id was too old): current state follows"
    elif "name" in data and "version" in data:
        ready = "" if data.get("ready", True) else " [yellow](not ready)[/]"
        body = f"{escape(str(data['name']))} v{escape(str(data['version']))}{ready}"
    else:
        body = escape(json.dumps(dict(data), default=str, separators=(",", ":")))[:200]
    return f"{head} {body}"


@app.command()
def watch(
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TOPIC]...",
            help="metrics, models, server, alerts, features, jobs (every job; also jobs/*), jobs/<id> or * "
            "(default: metrics models server).",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    via: Annotated[
        Via | None,
        typer.Option(help="Wire: sse or ws on an http:// URL (default sse); grpc on a grpc:// URL."),
    ] = None,
    last_event_id: Annotated[
        int | None, typer.Option(help="Resume after this event id (sse, grpc).", show_default=False)
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="Stop after this many events.", min=1, show_default=False)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per event, no colour (for scripts).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the connection.", min=0.001)] = 10.0,
) -> None:
    """Print a running server's live events until Ctrl-C.

    One line per event, e.g. [dim]12:00:01[/] [green]model.loaded[/] sentiment v1; the per-second
    metrics snapshot as one line.

    Exits 0 on Ctrl-C or when the server ends the stream, 1 if it cannot be reached.
    """
    from modelwire.client import Client
    from modelwire.console import console, err_console

    chosen = topics or list(DEFAULT_TOPICS)
    transport: EventWire | None = via.value if via is not None else None
    seen = 0
    try:
        with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
            stream = client.events(chosen, last_event_id=last_event_id, transport=transport)
            for event in stream:
                if as_json:
                    record = {"id": event.id, "topic": event.topic, "type": event.type, "time": event.time}
                    typer.echo(json.dumps({**record, "data": dict(event.data)}, default=str))
                else:
                    console.print(render_event(event), highlight=False, soft_wrap=True)
                seen += 1
                if count is not None and seen >= count:
                    stream.close()
                    return
    except KeyboardInterrupt:
        return
    if count is None:
        err_console.print("[dim]the server ended the stream[/]", highlight=False)
