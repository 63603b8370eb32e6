"""``modelwire train`` on a tiny CSV: a new version folder, its accuracy, the progress bar."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelwire.cli import app
from modelwire.model.repository import ModelRepository

GOOD = ["great", "wonderful", "loved it", "excellent", "brilliant", "superb acting", "a joy", "fantastic"]
BAD = ["awful", "terrible", "hated it", "boring", "dreadful", "a waste", "poor acting", "horrible"]


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(3):
            writer.writerows([f"{text} {i}", 1] for text in GOOD)
            writer.writerows([f"{text} {i}", 0] for text in BAD)
    return path


@pytest.mark.slow
def test_train_registers_a_new_version(runner: CliRunner, tiny_csv: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    (data_dir / "models" / "sentiment" / "1").mkdir(parents=True)  # taken (an unfinished version)
    result = runner.invoke(
        app,
        ["train", "--data", str(tiny_csv), "--data-dir", str(data_dir)],
        env={"MODELWIRE_DATA_DIR": str(tmp_path / "not-this-one")},  # the flag wins
    )
    assert result.exit_code == 0, result.output
    assert "trained sentiment version 2: held-out accuracy" in result.stdout
    assert str(data_dir / "models" / "sentiment" / "2") in result.stdout.replace("\n", "")
    assert ModelRepository(data_dir / "models").versions("sentiment") == ["2"]
    metadata = json.loads((data_dir / "models" / "sentiment" / "2" / "metadata.json").read_text())
    assert metadata["metrics"]["n_train"] + metadata["metrics"]["n_test"] == 48
    assert "training" in result.stderr  # the progress bar, on stderr
    assert "100%" in result.stderr
    assert not (tmp_path / "not-this-one").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("words,label\nhello,1\n", "text,label columns"),
        ("text,label\nhello,positive\n", "text,label columns"),
        ("text,label\nhello,1\nworld,1\nagain,1\nmore,1\nfive,1\n", "needs both labels"),
    ],
)
def test_bad_training_data_is_one_line(runner: CliRunner, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = runner.invoke(app, ["train", "--data", str(path), "--data-dir", str(tmp_path / "state")])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert message in result.stderr
    assert not (tmp_path / "state" / "models" / "sentiment").exists()


def test_bad_model_name(runner: CliRunner, tiny_csv: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--data", str(tiny_csv), "--name", "../up", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "not a valid model name" in result.stderr
