"""Model management on a real server: the Open Inference repository extension through tritonclient (HTTP
and gRPC), modelwire's ``/v1/admin`` (httpx) and ``modelwire.v1.Admin`` (grpcio), the version each answer
names, and ``models:admin`` refusals on every wire."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from modelwire.cli import app
from modelwire.client import Client
from modelwire.protocols.grpc._generated.modelwire.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    predictor_pb2,
    predictor_pb2_grpc,
)
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer


def add_version(data_dir: Path, name: str, source: str, target: str) -> None:
    """A second repository version: a copy of ``source`` under the number ``target``."""
    folder = data_dir / "models" / name
    shutil.copytree(folder / source, folder / target)
    meta = json.loads((folder / target / "metadata.json").read_text())
    meta["version"] = target
    (folder / target / "metadata.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def data_dir(serve_module: ServeModule) -> Path:
    path = serve_module.data_dir()
    add_version(path, "sentiment", "1", "2")
    return path


@pytest.fixture(scope="module")
def keys(data_dir: Path) -> dict[str, str]:
    store = KeyStore.in_data_dir(data_dir)
    return {
        "admin": store.create({Scope.MODELS_ADMIN, Scope.PREDICT, Scope.EVENTS}, name="admin")[0],
        "predict": store.create({Scope.PREDICT}, name="predict")[0],
    }


@pytest.fixture(scope="module")
def server(serve_module: ServeModule, data_dir: Path, keys: dict[str, str]) -> ThreadedServer:
    return serve_module(EchoModel("echo"), data_dir=data_dir, auth={"mode": "on"})


def _host(url: str) -> str:
    return url.split("://", 1)[1]


def _rest(server: ThreadedServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, headers={"X-API-Key": key}, timeout=30)


def _states(index: list[dict[str, Any]], name: str) -> dict[str, str]:
    return {row["version"]: row["state"] for row in index if row["name"] == name}


def test_tritonclient_http_lists_unloads_and_loads(server: ThreadedServer, keys: dict[str, str]) -> None:
    admin = {"X-API-Key": keys["admin"]}
    client = triton_http.InferenceServerClient(_host(server.http_url))
    try:
        index = client.get_model_repository_index(headers=admin)
        assert _states(index, "sentiment") == {"1": "READY", "2": "READY"}
        assert _states(index, "echo") == {"1": "READY"}
        client.unload_model("echo", headers=admin)
        assert _states(client.get_model_repository_index(headers=admin), "echo") == {"1": "UNAVAILABLE"}
        assert not client.is_model_ready("echo", headers=admin)
        with _rest(server, keys["predict"]) as rest:
            refused = rest.post("/v1/models/echo/predict", json={"text": "hi"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"]
        assert "not loaded" in refused.json()["error"]["message"]
        client.load_model("echo", headers=admin)
        assert client.is_model_ready("echo", headers=admin)
        ready_only = client.get_model_repository_index(headers=admin, query_params=None)
        assert _states(ready_only, "echo") == {"1": "READY"}
        with pytest.raises(InferenceServerException, match="not served"):
            client.load_model("nonesuch", headers=admin)
        with pytest.raises(InferenceServerException, match="models:admin"):
            client.get_model_repository_index(headers={"X-API-Key": keys["predict"]})
        with pytest.raises(InferenceServerException, match="models:admin"):
            client.unload_model("echo", headers={"X-API-Key": keys["predict"]})
    finally:
        client.close()


def test_tritonclient_grpc_lists_unloads_and_loads(server: ThreadedServer, keys: dict[str, str]) -> None:
    admin = {"x-api-key": keys["admin"]}
    client = triton_grpc.InferenceServerClient(_host(server.grpc_url))
    try:
        index = client.get_model_repository_index(headers=admin, as_json=True)["models"]
        assert {(m["name"], m["version"], m["state"]) for m in index} >= {
            ("sentiment", "1", "READY"),
            ("sentiment", "2", "READY"),
            ("echo", "1", "READY"),
        }
        client.unload_model("echo", headers=admin)
        index = client.get_model_repository_index(headers=admin, as_json=True)["models"]
        assert ("echo", "1", "UNAVAILABLE") in {(m["name"], m["version"], m["state"]) for m in index}
        assert not client.is_model_ready("echo", headers=admin)
        client.load_model("echo", headers=admin)
        assert client.is_model_ready("echo", headers=admin)
        with pytest.raises(InferenceServerException) as refused:
            client.load_model("echo", headers={"x-api-key": keys["predict"]})
        assert refused.value.status() == "StatusCode.PERMISSION_DENIED"
        with pytest.raises(InferenceServerException) as unknown:
            client.unload_model("nonesuch", headers=admin)
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.close()


def test_rest_admin_default_rollback_and_the_version_each_answer_names(
    server: ThreadedServer, keys: dict[str, str]
) -> None:
    with _rest(server, keys["admin"]) as rest:
        state = rest.get("/v1/admin/models/sentiment").json()
        assert state["default_version"] == "2"
        assert [v["state"] for v in state["versions"]] == ["ready", "ready"]
        assert "accuracy" in state["versions"][0]["metrics"]
        answer = rest.post("/v1/models/sentiment/predict", json={"text": "great"})
        assert answer.headers["model-version"] == "2"
        changed = rest.put("/v1/admin/models/sentiment/default", json={"version": "1"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["default_version"] == "1"
        assert changed.json()["history"] == ["2"]
        assert rest.post("/predict", json={"text": "great"}).headers["model-version"] == "1"
        oip = rest.post(
            "/v2/models/sentiment/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["great"]}]},
        )
        assert oip.json()["model_version"] == "1"
        assert oip.headers["model-version"] == "1"
        # a restart keeps the default: it is saved beside the versions
        saved = json.loads((server.settings.model_repository / "sentiment" / "serving.json").read_text())
        assert saved["default"] == "1"
        back = rest.post("/v1/admin/models/sentiment/rollback")
        assert back.status_code == 200, back.text
        assert back.json()["default_version"] == "2"
        assert rest.post("/predict", json={"text": "great"}).headers["model-version"] == "2"
        nothing = rest.post("/v1/admin/models/sentiment/rollback")
        assert nothing.status_code == 400 or nothing.status_code == 409, nothing.text
        assert "no previous default" in nothing.json()["error"]["message"]
        bad = rest.put("/v1/admin/models/sentiment/traffic", json={"versions": {"1": 50, "2": 20}})
        assert bad.status_code == 400
        assert bad.json()["error"]["field"] == "$.versions"
        unknown = rest.put("/v1/admin/models/sentiment/default", json={"version": "9"})
        assert unknown.status_code == 404


def test_rest_traffic_split_is_sticky_per_header_key(server: ThreadedServer, keys: dict[str, str]) -> None:
    with _rest(server, keys["admin"]) as rest:
        split = rest.put(
            "/v1/admin/models/sentiment/traffic", json={"versions": {"1": 50, "2": 50}, "sticky": "header"}
        )
        assert split.status_code == 200, split.text
        assert split.json()["traffic"]["versions"] == {"1": 50.0, "2": 50.0}
        try:
            seen: dict[str, set[str]] = {}
            for user in ("ann", "bob", "cy", "dee", "eve", "fay"):
                for _ in range(5):
                    got = rest.post(
                        "/v1/models/sentiment/predict", json={"text": "fine"}, headers={"Traffic-Key": user}
                    )
                    seen.setdefault(user, set()).add(got.headers["model-version"])
            assert all(len(versions) == 1 for versions in seen.values()), seen
            # pinned by the URL, a version answers whatever the split says
            pinned = rest.post("/v1/models/sentiment/versions/1/predict", json={"text": "fine"})
            assert pinned.headers["model-version"] == "1"
        finally:
            ended = rest.put("/v1/admin/models/sentiment/traffic", json={"versions": {}, "sticky": None})
            assert ended.json()["traffic"] == {"versions": {}, "sticky": None, "shadow": None}


def test_grpc_admin_mirrors_rest(server: ThreadedServer, keys: dict[str, str]) -> None:
    with grpc.insecure_channel(_host(server.grpc_url)) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        admin = (("x-api-key", keys["admin"]),)
        state = stub.GetModel(admin_pb2.GetModelRequest(name="sentiment"), metadata=admin)
        assert state.default_version == "2"
        assert [v.version for v in state.versions] == ["1", "2"]
        index = stub.Index(admin_pb2.IndexRequest(), metadata=admin)
        assert ("echo", "1", "ready") in {(v.name, v.version, v.state) for v in index.versions}
        shadow = stub.SetTraffic(
            admin_pb2.SetTrafficRequest(
                name="sentiment", set_shadow=True, shadow=admin_pb2.Shadow(version="1", percent=100)
            ),
            metadata=admin,
        )
        assert shadow.traffic.shadow.version == "1"
        ended = stub.SetTraffic(
            admin_pb2.SetTrafficRequest(name="sentiment", set_shadow=True), metadata=admin
        )
        assert not ended.traffic.HasField("shadow")
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetModel(
                admin_pb2.GetModelRequest(name="sentiment"), metadata=(("x-api-key", keys["predict"]),)
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as no_version:
            stub.SetDefault(admin_pb2.VersionRequest(name="sentiment"), metadata=admin)
        assert no_version.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/models", None),
        ("GET", "/v1/admin/models/sentiment", None),
        ("PUT", "/v1/admin/models/sentiment/default", {"version": "1"}),
        ("PUT", "/v1/admin/models/sentiment/traffic", {"versions": {"1": 100}}),
        ("POST", "/v1/admin/models/sentiment/rollback", None),
        ("POST", "/v1/admin/models/echo/versions/1/unload", None),
        ("DELETE", "/v1/admin/models/sentiment/versions/1", None),
        ("POST", "/v2/repository/index", {}),
        ("POST", "/v2/repository/models/echo/unload", {}),
    ],
)
def test_rest_admin_refuses_without_models_admin(
    server: ThreadedServer, keys: dict[str, str], method: str, path: str, body: Any
) -> None:
    with _rest(server, keys["predict"]) as rest:
        refused = rest.request(method, path, json=body)
    assert refused.status_code == 403, refused.text
    assert "models:admin" in refused.text
    with _rest(server, keys["admin"]) as rest:  # nothing changed
        assert rest.get("/v1/admin/models/echo").json()["versions"][0]["state"] == "ready"
        assert rest.get("/v1/admin/models/sentiment").json()["default_version"] == "2"


async def test_every_wire_names_the_version_that_answered(
    server: ThreadedServer, keys: dict[str, str]
) -> None:
    with _rest(server, keys["admin"]) as rest:
        assert rest.put("/v1/admin/models/sentiment/default", json={"version": "1"}).status_code == 200
    try:
        with _rest(server, keys["predict"]) as rest:
            sse = rest.post("/v1/models/sentiment/predict/stream", json={"texts": ["good", "bad"]})
            assert sse.status_code == 200, sse.text
            assert sse.headers["model-version"] == "1"
        ws_url = server.http_url.replace("http", "ws", 1) + "/v1/ws"
        async with connect(ws_url, additional_headers={"X-API-Key": keys["predict"]}) as ws:
            await ws.send(json.dumps({"id": 1, "op": "predict", "text": "good"}))
            assert json.loads(await ws.recv())["version"] == "1"
        with grpc.insecure_channel(_host(server.grpc_url)) as channel:
            metadata = (("x-api-key", keys["predict"]),)
            stub = predictor_pb2_grpc.PredictorStub(channel)
            output, call = stub.Predict.with_call(predictor_pb2.Input(text="good"), metadata=metadata)
            assert output.version == "1"
            assert ("model-version", "1") in tuple(call.trailing_metadata())
        client = triton_grpc.InferenceServerClient(_host(server.grpc_url))
        try:
            text = triton_grpc.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array([b"good"], dtype=object))
            result = client.infer("sentiment", [text], headers={"x-api-key": keys["predict"]})
            assert result.get_response().model_version == "1"
        finally:
            client.close()
    finally:
        with _rest(server, keys["admin"]) as rest:
            assert rest.post("/v1/admin/models/sentiment/rollback").status_code == 200


def test_a_training_job_is_gated_and_its_result_says_why(
    server: ThreadedServer, keys: dict[str, str]
) -> None:
    noise = {"texts": [f"a film {i % 3}" for i in range(40)], "labels": [i % 2 for i in range(40)]}
    with _rest(server, keys["admin"]) as rest:
        before = rest.get("/v1/admin/models/sentiment").json()["default_version"]
        submitted = rest.post("/v1/models/sentiment/train", json=noise)
        assert submitted.status_code == 202, submitted.text
        job = _wait_for_job(rest, submitted.json()["id"])
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["promoted"] is False
        assert "registered, not promoted" in result["reason"]
        state = rest.get("/v1/admin/models/sentiment").json()
        assert state["default_version"] == before
        assert [v["state"] for v in state["versions"] if v["version"] == result["version"]] == ["ready"]
        assert rest.post("/predict", json={"text": "good"}).headers["model-version"] == before
        forced = rest.post("/v1/models/sentiment/train", json={**noise, "metadata": {"promote": "always"}})
        job = _wait_for_job(rest, forced.json()["id"])
        assert job["result"]["promoted"] is True, job
        assert rest.get("/v1/admin/models/sentiment").json()["default_version"] == job["result"]["version"]
        assert rest.post("/v1/admin/models/sentiment/rollback").json()["default_version"] == before


def _wait_for_job(rest: httpx.Client, job_id: str) -> dict[str, Any]:
    """Follow the job's events (SSE) until it ends; bounded by the client's timeout."""
    with rest.stream("GET", "/v1/events", params={"topics": f"jobs/{job_id}"}) as events:
        assert events.status_code == 200
        for line in events.iter_lines():
            if line.startswith("data:"):
                status = json.loads(line[5:]).get("data", {}).get("status")
                if status in ("succeeded", "failed", "cancelled"):
                    break
    return rest.get(f"/v1/jobs/{job_id}").json()


def test_cli_and_client_manage_models_over_rest_and_grpc(
    server: ThreadedServer, keys: dict[str, str]
) -> None:
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["models", *args, "--url", server.http_url, "--api-key", keys["admin"]])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "sentiment: default version 2" in cli("status", "sentiment")
    assert "default version 1" in cli("default", "sentiment", "1")
    out = cli("traffic", "sentiment", "1=90", "2=10", "--sticky", "principal", "--shadow", "2=50")
    assert "traffic: 1 90 %, 2 10 %, sticky per principal" in out
    assert "shadow: version 2 gets 50 %" in out
    assert "default version 2" in cli("rollback", "sentiment")  # the split and the shadow end too
    assert "traffic" not in cli("status", "sentiment")
    refused = runner.invoke(
        app, ["models", "unload", "echo", "--url", server.http_url, "--api-key", keys["predict"]]
    )
    assert refused.exit_code != 0
    assert "models:admin" in refused.output
    with Client(server.grpc_url, api_key=keys["admin"]) as client:  # the same calls over gRPC
        assert client.unload_model("echo")["versions"][0]["state"] == "unavailable"
        assert client.load_model("echo")["versions"][0]["state"] == "ready"
        state = client.set_traffic("sentiment", shadow={"version": "1", "percent": 10})
        assert state["traffic"]["shadow"] == {"version": "1", "percent": 10.0}
        assert client.set_traffic("sentiment", shadow=None)["traffic"]["shadow"] is None
        assert {"name": "echo", "version": "1", "state": "ready", "reason": ""} in client.model_versions()
    with Client(server.http_url, api_key=keys["admin"]) as client:
        assert client.model_state("sentiment")["default_version"] == "2"
