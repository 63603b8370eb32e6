"""``modelwire certs init``: a local CA, a server and a client certificate, for HTTPS in development."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.main import Typer, _reported, app, build_settings, config_option, data_dir_option
from modelwire.security.certs import DEFAULT_HOSTS, create_local_ca

__all__ = ["certs_app"]

certs_app = Typer(
    name="certs",
    help="Certificates for HTTPS in development: a local CA and the certificates it signs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(certs_app, name="certs")

_PANEL = "Where"


@certs_app.command()
def init(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Folder for the files (created 0700) [default: <data dir>/tls].",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    hosts: Annotated[
        str,
        typer.Option(help="Comma-separated names and addresses the server certificate is valid for."),
    ] = ",".join(DEFAULT_HOSTS),
    days: Annotated[
        int, typer.Option(min=1, max=3650, help="Validity of the server and client certificates.")
    ] = 397,
    new_ca: Annotated[
        bool,
        typer.Option("--new-ca", help="Replace the CA too (clients must trust the new ca.pem)."),
    ] = False,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
) -> None:
    """Create a local CA (kept if it exists) and issue a server and a client certificate from it.

    Writes [cyan]ca.pem[/], [cyan]server.pem[/], [cyan]client.pem[/] and their [cyan]*-key.pem[/] (0600).
    Run again to renew the certificates; a running server picks them up on [bold]kill -HUP[/].
    For development and tests only: clients must be told to trust [cyan]ca.pem[/].
    """
    with _reported():
        if directory is None:
            directory = build_settings(data_dir=data_dir, config=config).data_dir / "tls"
        names = tuple(host.strip() for host in hosts.split(",") if host.strip())
        files = create_local_ca(directory, hosts=names, days=days, new_ca=new_ca)
    q = shlex.quote
    typer.echo(f"CA:      {files.ca_cert}  (clients trust this; its key stays in {files.ca_key})")
    typer.echo(f"server:  {files.server_cert}  {files.server_key}  ({', '.join(names)})")
    typer.echo(f"client:  {files.client_cert}  {files.client_key}  (mutual TLS: --tls-client-ca ca.pem)")
    typer.echo("\nServe HTTPS, wss://, SSE and gRPC over TLS with:")
    typer.echo(
        f"  modelwire serve --tls-cert {q(str(files.server_cert))} --tls-key {q(str(files.server_key))}"
    )
    typer.echo("Call it with:")
    typer.echo(
        f'  modelwire predict --url https://localhost:8000 --ca-cert {q(str(files.ca_cert))} "I love it"'
    )
