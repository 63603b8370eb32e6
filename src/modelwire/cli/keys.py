"""``modelwire keys``: create, list and revoke API keys in the data dir (``<data dir>/keys.json``).

The keys file is read by running servers on every change, so a new or revoked key takes effect on the
next request, without a restart. The full key is printed once, at creation; only its SHA-256 is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelwire.cli.main import Typer, _reported, app, build_settings, config_option, data_dir_option
from modelwire.security.keys import ApiKey, KeyStore
from modelwire.security.principal import Scope, parse_scopes

__all__ = ["keys_app", "keys_table"]

keys_app = Typer(
    name="keys",
    help="API keys for a server with authentication on: create (shown once), list, revoke.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(keys_app, name="keys")

_PANEL = "Where"
DataDirOption = Annotated[Path | None, data_dir_option(_PANEL)]
ConfigOption = Annotated[Path | None, config_option(_PANEL)]


def _store(data_dir: Path | None, config: Path | None) -> KeyStore:
    return KeyStore.in_data_dir(build_settings(data_dir=data_dir, config=config).data_dir)


def keys_table(keys: list[ApiKey]) -> Table:
    """The ``keys list`` table: id, name, scopes, models, created, status. No secrets (none are kept)."""
    table = Table("id", "name", "scopes", "models", "created", "status")
    for key in keys:
        table.add_row(
            key.id,
            key.name or "-",
            " ".join(sorted(s.value for s in key.scopes)),
            " ".join(sorted(key.models)) if key.models is not None else "(all)",
            key.created,
            f"[red]revoked {key.revoked}[/]" if key.revoked else "[green]active[/]",
        )
    return table


@keys_app.command()
def create(
    scopes: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated scopes: {', '.join(s.value for s in Scope)}.",
            show_default=False,
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Restrict the key to this model (repeat for several)."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by in `keys list`.")] = "",
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {id, key} as JSON (for scripts).")] = False,
) -> None:
    """Create a key and print it [bold]once[/]: only its hash is stored, it cannot be shown again.

    Send it as [cyan]Authorization: Bearer <key>[/] (or [cyan]X-API-Key[/]); clients read
    [bold]MODELWIRE_API_KEY[/].
    """
    with _reported():
        try:
            granted = parse_scopes([scopes])
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--scopes") from None
        if not granted:
            raise typer.BadParameter("give at least one scope", param_hint="--scopes")
        key, record = _store(data_dir, config).create(granted, models=model or None, name=name)
    if as_json:
        typer.echo(json.dumps({"id": record.id, "key": key}))
        return
    from modelwire.console import console

    console.print(f"created API key [bold]{record.id}[/] ({' '.join(sorted(s.value for s in granted))})")
    console.print("the key (shown once, store it now):", style="dim")
    typer.echo(key)


@keys_app.command("list")
def list_keys(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Plain JSON instead of a table.")] = False,
) -> None:
    """List the keys (ids, names, scopes, models, status); secrets are never stored, so never shown."""
    with _reported():
        keys = _store(data_dir, config).records()
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in key.to_json().items() if k != "sha256"} for key in keys]))
        return
    from modelwire.console import console

    console.print(keys_table(keys))


@keys_app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from `keys list`).")],
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a key: running servers refuse it from their next request on (no restart)."""
    with _reported():
        record = _store(data_dir, config).revoke(key_id)
    typer.echo(f"revoked API key {record.id} ({record.revoked})")
