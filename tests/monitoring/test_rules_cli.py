"""``modelwire alerts rules``: the effective rules, and the same as Prometheus alerting rules that
``promtool check rules`` accepts (when promtool is installed: Debian's ``prometheus``; else a schema
check)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from modelwire.cli import app

CONFIG = """
[monitoring]
default_rules = true

[[alerts]]
name = "reviews-error-ratio"
monitor = "error_ratio"
model = "reviews"
threshold = 0.02
window = "10m"
for_s = 120
severity = "critical"
labels = { team = "ml" }

[[alerts]]
name = "sentiment-input-drift"
monitor = "input_drift"
model = "sentiment"
threshold = 0.3
window = 5000
for_s = 300
keep_firing_for_s = 600

[[feature_views]]
name = "user_stats"
entities = ["user_id"]
ttl_s = 3600
features = { avg_rating = "float" }

[[alerts]]
name = "stats-stale"
monitor = "feature_freshness"
threshold = 900
window = "10m"

[[alerts]]
name = "stats-missing-last"
monitor = "feature_missing_rate"
threshold = 0.5
window = 500
"""


def rules(tmp_path: Path, *args: str) -> Any:
    config = tmp_path / "modelwire.toml"
    config.write_text(CONFIG)
    result = CliRunner().invoke(app, ["alerts", "rules", *args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_configured_rules_replace_the_built_in_ones_of_the_same_name(tmp_path: Path) -> None:
    found = {rule["name"]: rule for rule in rules(tmp_path)}
    assert found["sentiment-input-drift"]["threshold"] == 0.3  # replaced
    assert found["sentiment-prediction-drift"]["threshold"] == 0.2  # built in
    assert found["reviews-error-ratio"]["window"] == "10m"
    assert {"saturation", "job-queue-age"} <= set(found)
    assert found["feature-missing-rate"]["threshold"] == 0.2  # built in: feature views are configured


def _schema_check(document: Any) -> None:
    """What promtool checks that a test can: the rule file's shape, durations, label names."""
    (group,) = document["groups"]
    assert group["name"] == "modelwire"
    for rule in group["rules"]:
        assert re.fullmatch(r"[A-Za-z0-9_.:-]+", rule["alert"])
        assert isinstance(rule["expr"], str)
        assert rule["expr"]
        for key in ("for", "keep_firing_for"):
            if key in rule:
                assert re.fullmatch(r"\d+(ms|s)", rule[key])
        assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k) for k in rule["labels"])
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    document = rules(tmp_path, "--prometheus")
    _schema_check(document)
    by_name = {rule["alert"]: rule for rule in document["groups"][0]["rules"]}
    assert by_name["sentiment-input-drift"] == {
        "alert": "sentiment-input-drift",
        "expr": 'modelwire_drift_score{model="sentiment",monitor="input_drift"} > 0.3',
        "for": "300s",
        "keep_firing_for": "600s",
        "labels": {"severity": "warning", "model": "sentiment"},
        "annotations": by_name["sentiment-input-drift"]["annotations"],
    }
    assert by_name["reviews-error-ratio"]["expr"] == (
        '(sum(rate(modelwire_requests_total{model="reviews",code!="OK"}[600s])) / '
        'sum(rate(modelwire_requests_total{model="reviews"}[600s]))) > 0.02'
    )
    assert by_name["sentiment-latency-p99"]["expr"].startswith("histogram_quantile(0.99, sum by (le) (rate(")
    assert by_name["saturation"]["expr"] == 'modelwire_monitor_value{monitor="saturation"} > 0.9'
    assert by_name["feature-missing-rate"]["expr"] == (
        '(sum by (view) (rate(modelwire_feature_reads_total{status=~"NOT_FOUND|OUTSIDE_MAX_AGE"}[300s])) / '
        "sum by (view) (rate(modelwire_feature_reads_total[300s]))) > 0.2"
    )
    assert by_name["stats-stale"]["expr"] == (
        "histogram_quantile(0.9, sum by (le, view) "
        "(rate(modelwire_feature_age_seconds_bucket[600s]))) > 900.0"
    )
    assert by_name["stats-missing-last"]["expr"] == (
        'modelwire_feature_monitor_value{monitor="feature_missing_rate"} > 0.5'
    )
    promtool = shutil.which("promtool")
    if promtool is None:  # the schema check above is what can be done without it
        return
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(document))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(by_name)} rules found" in checked.stdout
