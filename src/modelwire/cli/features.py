"""``modelwire features``: list the views, read online features, push rows, on a running server (REST or
gRPC as the URL says), through the client's ``get_features`` / ``push_features``.

Exit codes: 0 done; 1 an error (unknown view, bad row, unreachable server, ...); 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from modelwire.cli.client import ApiKeyOption, CaCertOption, UrlOption
from modelwire.cli.main import DEFAULT_CLIENT_URL, Typer, _reported, app
from modelwire.errors import InvalidInputError

__all__ = ["features_app", "online_table", "parse_entities", "read_rows"]

features_app = Typer(
    name="features",
    help="The feature store of a running server: list the views, read online features, push rows.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(features_app, name="features")

TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for the answer.", min=0.001)]
JsonOption = Annotated[bool, typer.Option("--json", help="Plain JSON, no colour (for scripts).")]


def parse_entities(pairs: list[str]) -> dict[str, list[str | int]]:
    """``["user_id=u1,u2", "user_id=u3"]`` -> ``{"user_id": ["u1", "u2", "u3"]}`` (digits: integers)."""
    out: dict[str, list[str | int]] = {}
    for pair in pairs:
        name, sep, values = pair.partition("=")
        if not sep or not name or not values:
            raise InvalidInputError(f"--entity {pair!r}: write NAME=VALUE[,VALUE...], e.g. user_id=u1,u2")
        out.setdefault(name, []).extend(
            int(v) if v.isascii() and v.isdigit() else v for v in values.split(",")
        )
    return out


def read_rows(source: Path) -> Iterator[dict[str, Any]]:
    """Rows from an NDJSON file (``-``: stdin), one JSON object per line, read as they are sent."""
    handle = sys.stdin if str(source) == "-" else source.open(encoding="utf-8")
    try:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{source}:{number} is not JSON: {exc.msg}") from None
    finally:
        if handle is not sys.stdin:
            handle.close()


def online_table(answer: dict[str, Any]) -> Table:
    """One row per entity, one column per name; a value not PRESENT shows its status."""
    names = answer["metadata"]["feature_names"]
    columns = answer["results"]
    table = Table(*names, box=None, header_style="bold")
    for i in range(len(columns[0]["values"]) if columns else 0):
        cells = []
        for column in columns:
            status = column["statuses"][i]
            value = column["values"][i]
            cells.append(escape(json.dumps(value)) if status == "PRESENT" else f"[dim]{status}[/]")
        table.add_row(*cells)
    return table


@features_app.command("list")
def list_(
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """List the feature views: entities, typed features, TTL (needs [cyan]features:read[/])."""
    from modelwire.client import Client
    from modelwire.console import console

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        views = client.feature_views()
    if as_json:
        typer.echo(json.dumps(views))
        return
    table = Table("view", "entities", "features", "ttl_s", box=None, header_style="bold")
    for view in views:
        features = ", ".join(f"{k}: {v}" for k, v in view["features"].items())
        table.add_row(view["name"], ", ".join(view["entities"]), escape(features), f"{view['ttl_s']:g}")
    console.print(table)


@features_app.command("get")
def get(
    features: Annotated[
        list[str],
        typer.Argument(metavar="VIEW:FEATURE...", help="Features to read, e.g. user_stats:avg_rating."),
    ],
    entity: Annotated[
        list[str], typer.Option("--entity", "-e", help="NAME=VALUE[,VALUE...]: the entity keys (repeatable).")
    ],
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Read online features of entities (needs [cyan]features:read[/]); [cyan]--json[/]: Feast's shape."""
    from modelwire.client import Client
    from modelwire.console import console

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        answer = client.get_features(features, parse_entities(entity))
    if as_json:
        typer.echo(json.dumps(answer))
    else:
        console.print(online_table(answer))


@features_app.command("push")
def push(
    view: Annotated[str, typer.Argument(help="The feature view.")],
    rows: Annotated[Path, typer.Argument(metavar="FILE", help="NDJSON rows (- for stdin), streamed.")],
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Write rows of a view (needs [cyan]features:write[/]): each a JSON object with the entity key(s),
    features and optionally event_timestamp. Prints how many were applied and skipped as stale."""
    from modelwire.client import Client
    from modelwire.console import console

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        result = client.push_features(view, read_rows(rows))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        console.print(f"{escape(view)}: applied {result['applied']}, skipped {result['skipped']} (stale)")
