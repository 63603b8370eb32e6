"""``modelwire train --promote``: the gate decides the default a restart serves (``serving.json``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelwire.cli import app


def _csv(path: Path, rows: list[tuple[str, int]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.mark.slow
def test_train_on_a_bad_csv_registers_without_promoting(
    runner: CliRunner, trained_data_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(trained_data_dir, data_dir)
    # the same text with both labels: nothing to learn, held-out accuracy far below the floor
    noise = _csv(tmp_path / "noise.csv", [(f"a film {i % 3}", i % 2) for i in range(40)])
    result = runner.invoke(app, ["train", str(noise), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "registered, not promoted" in result.stdout
    serving = json.loads((data_dir / "models" / "sentiment" / "serving.json").read_text())
    assert serving["default"] == "1"
    forced = runner.invoke(app, ["train", str(noise), "--data-dir", str(data_dir), "--promote", "always"])
    assert forced.exit_code == 0, forced.output
    assert "promoted: --promote always" in forced.stdout
    serving = json.loads((data_dir / "models" / "sentiment" / "serving.json").read_text())
    assert (serving["default"], serving["history"]) == ("3", ["1"])
    refused = runner.invoke(app, ["train", str(noise), "--data-dir", str(data_dir), "--promote", "maybe"])
    assert refused.exit_code == 2
    assert "always, never or gate" in refused.output
