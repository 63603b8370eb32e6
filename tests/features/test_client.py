"""The Python client (``get_features``, ``push_features``, ``feature_views``) over REST and gRPC, and the
``modelwire features`` commands, against a real server over each store."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelwire.cli import app
from modelwire.client import AsyncClient, Client
from modelwire.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from tests.features.conftest import FeatureServer


@pytest.fixture(params=["rest", "grpc"])
def url(request: pytest.FixtureRequest, feature_server: FeatureServer) -> str:
    server = feature_server.server
    return server.http_url if request.param == "rest" else server.grpc_url


def test_push_and_get_give_the_same_shapes_on_both_wires(url: str, feature_server: FeatureServer) -> None:
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(2500)]
    now = time.time()
    with Client(url, api_key=feature_server.both) as client:
        rows = (
            {"user_id": u, "n_reviews": i, "vec": [i, 0.5], "event_timestamp": now} for i, u in enumerate(ids)
        )
        assert client.push_features("user_stats", rows) == {
            "view": "user_stats",
            "applied": 2500,
            "skipped": 0,
        }
        again = client.push_features(
            "user_stats", [{"user_id": ids[0], "n_reviews": 99, "event_timestamp": now - 1}]
        )
        assert again == {"view": "user_stats", "applied": 0, "skipped": 1}
        answer = client.get_features(
            ["user_stats:n_reviews", "user_stats:vec", "user_stats:tier"], {"user_id": [ids[0], ids[7]]}
        )
        assert [v["name"] for v in client.feature_views()] == ["user_stats", "merchant"]
    stamp = answer["results"][1]["event_timestamps"][0]
    assert answer == {
        "metadata": {"feature_names": ["user_id", "n_reviews", "vec", "tier"]},
        "results": [
            {
                "values": [ids[0], ids[7]],
                "statuses": ["PRESENT"] * 2,
                "event_timestamps": ["1970-01-01T00:00:00Z"] * 2,
            },
            {"values": [0, 7], "statuses": ["PRESENT"] * 2, "event_timestamps": [stamp, stamp]},
            {
                "values": [[0.0, 0.5], [7.0, 0.5]],
                "statuses": ["PRESENT"] * 2,
                "event_timestamps": [stamp, stamp],
            },
            {
                "values": [None, None],
                "statuses": ["NOT_FOUND"] * 2,
                "event_timestamps": ["1970-01-01T00:00:00Z"] * 2,
            },
        ],
    }
    assert stamp.startswith(time.strftime("%Y-", time.gmtime(now)))


async def test_errors_reach_the_async_client_as_modelwire_errors(
    url: str, feature_server: FeatureServer
) -> None:
    async with AsyncClient(url, api_key=feature_server.reader) as client:
        with pytest.raises(PermissionDeniedError, match="features:write"):
            await client.push_features("user_stats", [{"user_id": "u", "tier": "a"}])
        with pytest.raises(InvalidInputError, match="no feature 'nope'"):
            await client.get_features(["user_stats:nope"], {"user_id": ["u"]})
    async with AsyncClient(url, api_key=feature_server.both) as client:
        with pytest.raises(NotFoundError, match="no feature view 'nope'"):
            await client.push_features("nope", [{"user_id": "u"}])


def test_the_cli_lists_pushes_and_gets(url: str, feature_server: FeatureServer, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    run = uuid.uuid4().hex[:8]
    now = time.time()
    rows = tmp_path / "rows.ndjson"
    rows.write_text(
        "\n".join(
            json.dumps({"merchant_id": f"{run}-{i}", "risk": i / 4, "event_timestamp": now}) for i in range(3)
        )
        + "\n"
    )
    key = ["--url", url, "--api-key", feature_server.both]
    pushed = runner.invoke(app, ["features", "push", "merchant", str(rows), *key, "--json"])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.output) == {"view": "merchant", "applied": 3, "skipped": 0}
    plain = runner.invoke(app, ["features", "push", "merchant", str(rows), *key])
    assert "merchant: applied 0, skipped 3 (stale)" in plain.output
    got = runner.invoke(
        app, ["features", "get", "merchant:risk", "-e", f"merchant_id={run}-1,{run}-9", *key, "--json"]
    )
    assert got.exit_code == 0, got.output
    answer = json.loads(got.output)
    assert answer["results"][1]["values"] == [0.25, None]
    table = runner.invoke(app, ["features", "get", "merchant:risk", "-e", f"merchant_id={run}-2", *key])
    assert "0.5" in table.output
    listed = runner.invoke(app, ["features", "list", *key])
    assert "user_stats" in listed.output
    assert "risk: float" in listed.output
    refused = runner.invoke(app, ["features", "get", "merchant:risk", "-e", "merchant_id", *key])
    assert refused.exit_code == 1
    assert "NAME=VALUE" in refused.output
    denied = runner.invoke(app, ["features", "list", "--url", url, "--api-key", feature_server.writer])
    assert denied.exit_code == 1
    assert "features:read" in denied.output
