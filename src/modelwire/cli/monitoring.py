"""``modelwire alerts rules`` (the alert rules, or the same as Prometheus alerting rules) and ``modelwire
payloads tail|export`` (the payload log's files in the data dir; docs/monitoring.md)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from modelwire.cli.main import Typer, _reported, app, build_settings, config_option, data_dir_option
from modelwire.errors import InvalidInputError
from modelwire.monitoring.rules import effective_rules, prometheus_rules

__all__ = ["export", "read_payloads", "rules", "tail"]

_PANEL = "Monitoring"
alerts_app = Typer(help="Alert rules (docs/monitoring.md).", no_args_is_help=True)
payloads_app = Typer(help="The payload log in the data dir (docs/monitoring.md).", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(payloads_app, name="payloads")


@alerts_app.command()
def rules(
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="Print them as a Prometheus rule file (for Alertmanager).")
    ] = False,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
) -> None:
    """Print the alert rules a server started with this configuration evaluates (built-in and
    [bold][[alerts]][/]), as JSON; with [bold]--prometheus[/], the equivalent Prometheus alerting rules
    (JSON, which is YAML: [cyan]promtool check rules[/] reads it)."""
    with _reported():
        settings = build_settings(config=config)
        found = effective_rules(settings)
        out: Any = prometheus_rules(found) if prometheus else [r.model_dump(mode="json") for r in found]
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


def _folder(data_dir: Path | None, config: Path | None) -> Path:
    return build_settings(data_dir=data_dir, config=config).data_dir / "payloads"


def read_payloads(folder: Path) -> Iterator[dict[str, Any]]:
    """Every record of the payload log in ``folder``, oldest first. A last line cut short (the process
    was killed while writing) is skipped, as is any line that is not a JSON object (counted on stderr)."""
    from modelwire.monitoring.payloads import payload_files

    skipped = 0
    for path in payload_files(folder):
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("cut short")
                    record = json.loads(raw)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                except ValueError:
                    skipped += 1
                    continue
                yield record
    if skipped:
        sys.stderr.write(f"skipped {skipped} unreadable line(s)\n")


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"--since {value!r} is not an ISO 8601 time (2026-01-31T12:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _stamp(record: dict[str, Any]) -> float:
    try:
        return dt.datetime.fromisoformat(str(record.get("time", "")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@payloads_app.command()
def tail(
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many of the newest records.", min=0)] = 10,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new records (Ctrl-C).")
    ] = False,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
) -> None:
    """Print the newest records of the payload log (NDJSON, one CloudEvents envelope a line)."""
    with _reported():
        folder = _folder(data_dir, config)
        records = list(read_payloads(folder))
        shown = records[-lines:] if lines else []
        for record in shown:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        if not follow:
            return
        seen = {r.get("id") for r in records}
        try:
            while True:  # a person's follow: polls the files
                time.sleep(0.5)
                for record in read_payloads(folder):
                    if record.get("id") not in seen:
                        seen.add(record.get("id"))
                        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            return


@payloads_app.command()
def export(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write here (default: standard output).", dir_okay=False),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="ndjson (the envelopes) or csv (one row per item, for pandas).")
    ] = "ndjson",
    model: Annotated[str | None, typer.Option(help="Only this model's records.")] = None,
    since: Annotated[str | None, typer.Option(help="Only records at or after this ISO 8601 time.")] = None,
    data_dir: Annotated[Path | None, data_dir_option(_PANEL)] = None,
    config: Annotated[Path | None, config_option(_PANEL)] = None,
) -> None:
    """Export the payload log: every record (or a model's, or since a time), as NDJSON or CSV."""
    with _reported():
        if fmt not in ("ndjson", "csv"):
            raise InvalidInputError(f"--format must be ndjson or csv, not {fmt!r}")
        start = _since(since)
        folder = _folder(data_dir, config)
        records = (
            r
            for r in read_payloads(folder)
            if (model is None or r.get("data", {}).get("model") == model)
            and (start is None or _stamp(r) >= start)
        )
        handle: TextIO = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
        try:
            if fmt == "ndjson":
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                _write_csv(records, handle)
        finally:
            if output:
                handle.close()


def _write_csv(records: Iterator[dict[str, Any]], handle: TextIO) -> None:
    """One row per item: the call's fields, the input, and each output field as ``output.<name>``."""
    rows = []
    fields: dict[str, None] = dict.fromkeys(
        ["time", "request_id", "model", "version", "protocol", "latency_ms", "status", "input"]
    )
    for record in records:
        data = record.get("data", {})
        inputs = data.get("inputs") or data.get("inputs_sha256") or []
        outputs = data.get("outputs") or [None] * len(inputs)
        for item, result in zip(inputs, outputs, strict=False):
            row = {
                key: data.get(key)
                for key in ("request_id", "model", "version", "protocol", "latency_ms", "status")
            }
            row["time"] = record.get("time")
            row["input"] = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            if isinstance(result, dict):
                for key, value in result.items():
                    name = f"output.{key}"
                    fields[name] = None
                    row[name] = value if not isinstance(value, (dict, list)) else json.dumps(value)
            rows.append(row)
    writer = csv.DictWriter(handle, fieldnames=list(fields))
    writer.writeheader()
    writer.writerows(rows)
