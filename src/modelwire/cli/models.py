"""``modelwire models``: list the served models (no subcommand), and manage them on a running server:
``status``, ``load``, ``unload``, ``default``, ``promote``, ``rollback``, ``traffic``, ``delete``,
``pin`` and ``memory`` (the memory budget)
(docs/admin.md). The management commands need a credential with ``models:admin``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from modelwire.cli.client import ApiKeyOption, CaCertOption, TimeoutOption, UrlOption
from modelwire.cli.main import DEFAULT_CLIENT_URL, Typer, _reported, app

models_app = Typer(
    help="List the served models; with a subcommand, manage them (needs models:admin; docs/admin.md).",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")

JsonOption = Annotated[bool, typer.Option("--json", help="Plain JSON instead of text.")]


@models_app.callback()
def models(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """List the models a running server serves, their versions and readiness."""
    if ctx.invoked_subcommand is not None:
        return
    from modelwire.client import Client
    from modelwire.console import console, models_table

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
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


def _admin(
    action: Callable[[Any], dict[str, Any]],
    url: str,
    api_key: str | None,
    ca_cert: Path | None,
    timeout: float,
    as_json: bool,
) -> None:
    from modelwire.client import Client

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        state = action(client)
    typer.echo(json.dumps(state) if as_json else _describe(state))


def _size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _describe(state: dict[str, Any]) -> str:
    pinned = " (pinned: never unloaded by the memory budget)" if state.get("pinned") else ""
    lines = [f"{state['name']}: default version {state['default_version']}{pinned}"]
    for v in state["versions"]:
        accuracy = v["metrics"].get("accuracy")
        extra = f", held-out accuracy {accuracy:.4f}" if isinstance(accuracy, int | float) else ""
        if v.get("size_bytes") is not None:
            extra += f", {_size(v['size_bytes'])}"
        reason = f" ({v['reason']})" if v["reason"] else ""
        lines.append(f"  version {v['version']}: {v['state']}{reason}{extra}")
    traffic = state["traffic"]
    if traffic["versions"]:
        split = ", ".join(f"{k} {v:g} %" for k, v in traffic["versions"].items())
        sticky = f", sticky per {traffic['sticky']}" if traffic["sticky"] else ""
        lines.append(f"  traffic: {split}{sticky}")
    if traffic["shadow"]:
        lines.append(
            f"  shadow: version {traffic['shadow']['version']} gets {traffic['shadow']['percent']:g} %"
        )
    if state["history"]:
        lines.append(f"  previous defaults: {', '.join(state['history'])}")
    return "\n".join(lines)


Name = Annotated[str, typer.Argument(help="The model's name.")]
Version = Annotated[str, typer.Argument(help="The version.")]
OptionalVersion = Annotated[str | None, typer.Argument(help="The version (default: see the command).")]


@models_app.command()
def status(
    name: Name,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """A model's default version, its versions' states, traffic and previous defaults."""
    _admin(lambda c: c.model_state(name), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def load(
    name: Name,
    version: OptionalVersion = None,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Load a version (default: the default one), from the repository if it is not served yet."""
    _admin(lambda c: c.load_model(name, version), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def unload(
    name: Name,
    version: OptionalVersion = None,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Unload a version (default: every version); calls in flight finish, new ones get 503."""
    _admin(lambda c: c.unload_model(name, version), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def default(
    name: Name,
    version: Version,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Make VERSION the default (PUT /v1/admin/models/NAME/default)."""
    _admin(lambda c: c.set_default(name, version), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def promote(
    name: Name,
    version: Version,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Promote a registered version the gate held back: it becomes the default (as `default` does)."""
    _admin(lambda c: c.set_default(name, version), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def rollback(
    name: Name,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """The default and all traffic back to the previous default; any split and shadow end."""
    _admin(lambda c: c.rollback(name), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def pin(
    name: Name,
    off: Annotated[bool, typer.Option("--off", help="Unpin instead.")] = False,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Pin a model: the memory budget never unloads it (PUT /v1/admin/models/NAME/pin); --off unpins."""
    _admin(lambda c: c.pin_model(name, not off), url, api_key, ca_cert, timeout, as_json)


@models_app.command()
def memory(
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """The memory budget (GET /v1/admin/memory): budget, used, and each version's size, pin and state."""
    from modelwire.client import Client

    with _reported(), Client(url, timeout=timeout, api_key=api_key, ca_cert=ca_cert) as client:
        state = client.memory()
    if as_json:
        typer.echo(json.dumps(state))
        return
    budget = state["budget_bytes"]
    used = _size(state["used_bytes"])
    lines = [f"memory budget: {used} used of {_size(budget)}" if budget else "memory budget: none"]
    for m in state["models"]:
        size = _size(m["size_bytes"]) if m["size_bytes"] is not None else "not measured"
        pinned = ", pinned" if m["pinned"] else ""
        lines.append(f"  {m['name']} version {m['version']}: {m['state']}, {size}{pinned}")
    typer.echo("\n".join(lines))


@models_app.command()
def delete(
    name: Name,
    version: Version,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Unload VERSION and delete its artifact (not the default, nor a version taking traffic)."""
    _admin(lambda c: c.delete_version(name, version), url, api_key, ca_cert, timeout, as_json)


def _split(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        version, sep, percent = item.partition("=")
        try:
            out[version] = float(percent)
        except ValueError:
            sep = ""
        if not sep or not version:
            raise typer.BadParameter(f"{item!r}: write VERSION=PERCENT, e.g. 2=10", param_hint="SPLIT")
    return out


@models_app.command()
def traffic(
    name: Name,
    split: Annotated[
        list[str] | None,
        typer.Argument(help="VERSION=PERCENT pairs adding up to 100 (1=90 2=10); 'none' ends the split."),
    ] = None,
    sticky: Annotated[
        str | None,
        typer.Option(metavar="principal|header|entity|none", help="Keep each caller on one version."),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(metavar="VERSION[=PERCENT]|none", help="Mirror calls to VERSION (default 100 %)."),
    ] = None,
    url: UrlOption = DEFAULT_CLIENT_URL,
    api_key: ApiKeyOption = None,
    ca_cert: CaCertOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Set a canary split and/or a shadow (PUT /v1/admin/models/NAME/traffic); what is not given stays."""
    body: dict[str, Any] = {}
    if split:
        body["versions"] = {} if split == ["none"] else _split(split)
    if sticky is not None:
        body["sticky"] = None if sticky == "none" else sticky
    if shadow is not None:
        version, _, percent = shadow.partition("=")
        body["shadow"] = None if shadow == "none" else {"version": version, "percent": float(percent or 100)}
    if not body:
        raise typer.BadParameter("give a split, --sticky and/or --shadow", param_hint="SPLIT")
    _admin(lambda c: c.set_traffic(name, **body), url, api_key, ca_cert, timeout, as_json)
