"""The AsyncAPI 3 document (``/asyncapi.json``, ``modelwire asyncapi``): well-formed, and naming every message
channel the server serves: each configured queue's requests, replies and dead letters, the WebSocket and SSE
routes.

No package on PyPI ships the AsyncAPI 3 JSON schema (the official one is on npm, ``@asyncapi/specs``), so
the document is checked structurally here: the 3.0.0 shape, the key patterns, every ``$ref`` resolving,
every operation's channel and reply, every address parameter declared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from modelwire.app.builder import build_services
from modelwire.cli import app as cli
from modelwire.protocols.http.app import create_app
from modelwire.settings import Settings
from tests.models import EchoModel

QUEUES = [
    {"url": "amqp://guest:secret@127.0.0.1:5672/", "name": "orders.scoring"},
    {"url": "nats://127.0.0.1:4222"},
    {"url": "redis://127.0.0.1:6379/0", "dead_letter": "scoring:dead"},
]
KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(host="127.0.0.1", data_dir=tmp_path, queues=QUEUES, **overrides)


async def served_document(tmp_path: Path, **overrides: Any) -> tuple[dict[str, Any], set[str]]:
    services = build_services(settings(tmp_path, **overrides), models=[EchoModel("echo")])
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    paths = {getattr(route, "path", "") for route in app.routes}
    return response.json(), paths


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def check_structure(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "modelwire"
    assert doc["info"]["version"]
    for section in ("servers", "channels", "operations"):
        for key in doc[section]:
            assert KEY.match(key), f"{section} key {key!r}"
    for ref in refs(doc):
        resolve(doc, ref)
    for name, server in doc["servers"].items():
        assert server["host"], name
        assert server["protocol"], name
        assert "@" not in server["host"], "credentials leaked"
        assert "secret" not in json.dumps(server), "credentials leaked"
    for name, channel in doc["channels"].items():
        assert channel["messages"], name
        for param in re.findall(r"{(\w+)}", channel["address"] or ""):
            assert param in channel.get("parameters", {}), f"{name}: parameter {param} undeclared"
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        resolve(doc, operation["channel"]["$ref"])
        if "reply" in operation:
            assert operation["reply"]["address"]["location"].startswith("$message.")
            resolve(doc, operation["reply"]["channel"]["$ref"])


async def test_the_served_document_is_well_formed_and_public(tmp_path: Path) -> None:
    doc, _ = await served_document(tmp_path, auth={"mode": "on"})  # no credential sent: a public route
    check_structure(doc)


async def test_it_names_every_channel_the_server_serves(tmp_path: Path) -> None:
    doc, paths = await served_document(tmp_path)
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert {"orders.scoring", "modelwire.requests.dlq"} <= addresses  # RabbitMQ, a name overridden
    assert {"modelwire.requests", "modelwire.durable.>"} <= addresses  # NATS core and JetStream
    assert {"modelwire:requests", "scoring:dead"} <= addresses  # Redis
    protocols = {server["protocol"] for server in doc["servers"].values()}
    assert {"amqp", "nats", "redis", "ws", "http"} <= protocols
    web = {a for a in addresses if a and a.startswith("/")}
    assert web == {"/v1/ws", "/v1/models/{name}/ws", "/v1/events", "/v1/models/{name}/predict/stream"}
    assert web <= paths, web - paths  # each one is a route the app serves
    receive = [op for op in doc["operations"].values() if "reply" in op]
    assert len(receive) == 4  # RabbitMQ, NATS core, JetStream, Redis: each answers to a reply address


def test_modelwire_asyncapi_prints_the_same_document(tmp_path: Path) -> None:
    argv = ["asyncapi"] + [
        arg for q in ("amqp://127.0.0.1:5672/", "nats://127.0.0.1:4222") for arg in ("--queue", q)
    ]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    check_structure(doc)
    assert {c["address"] for c in doc["channels"].values()} >= {
        "modelwire.requests",
        "modelwire.requests.dlq",
    }


def test_a_kafka_url_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["consume", "--queue", "kafka://127.0.0.1:9092", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "kafka:// is not supported yet" in result.output


async def test_each_request_channel_takes_jobs_and_answers_with_the_job(tmp_path: Path) -> None:
    doc, _ = await served_document(tmp_path)
    for operation in doc["operations"].values():
        if "reply" not in operation:
            continue
        requests = resolve(doc, operation["channel"]["$ref"])["messages"]
        replies = resolve(doc, operation["reply"]["channel"]["$ref"])["messages"]
        assert {"PredictRequest", "JobRequest"} <= set(requests)
        assert {"Answer", "JobAccepted"} <= set(replies)
    job = doc["components"]["schemas"]["JobRequest"]
    assert job["properties"]["op"] == {"const": "job"}
    assert job["properties"]["kind"]["enum"] == ["predict", "train"]


async def test_it_names_the_event_sinks_channels(tmp_path: Path) -> None:
    sinks = [
        {"url": "amqp://guest:secret@127.0.0.1:5672/"},
        {"url": "nats://127.0.0.1:4222", "topics": ["jobs/*"]},
        {"url": "redis://127.0.0.1:6379/0", "destination": "audit:events"},
    ]
    doc, _ = await served_document(tmp_path, event_sinks=sinks)
    check_structure(doc)
    published = {
        resolve(doc, op["channel"]["$ref"])["address"]
        for op in doc["operations"].values()
        if op["action"] == "send" and "CloudEvent" in resolve(doc, op["channel"]["$ref"])["messages"]
    }
    assert published == {"modelwire.events", "modelwire.events.{subject}", "audit:events"}


async def test_it_names_the_feature_sources_with_their_event_schema(tmp_path: Path) -> None:
    views = [
        {
            "name": "user_stats",
            "entities": ["user_id"],
            "ttl_s": 3600,
            "features": {"avg_rating": "float", "n_reviews": "int", "tags": "float_vector"},
            "source": {"url": "amqp://guest:secret@127.0.0.1:5672/", "queue": "features.user_stats"},
        },
        {
            "name": "item_stats",
            "entities": ["item_id"],
            "ttl_s": 60,
            "features": {"in_stock": "bool"},
            "source": {"url": "redis://127.0.0.1:6379/0", "queue": "items", "fields": {"sku": "item_id"}},
        },
        {"name": "pushed_only", "entities": ["k"], "ttl_s": 60, "features": {"x": "string"}},
    ]
    doc, _ = await served_document(tmp_path, feature_views=views)
    check_structure(doc)
    ingested = {
        resolve(doc, op["channel"]["$ref"])["address"]: resolve(doc, op["channel"]["$ref"])["messages"]
        for op in doc["operations"].values()
        if op["action"] == "receive" and "reply" not in op and op["channel"]["$ref"].endswith("Events")
    }
    assert set(ingested) == {"features.user_stats", "items"}  # a view with no source has no channel
    (ref,) = ingested["features.user_stats"].values()
    payload = resolve(doc, ref["$ref"])["payload"]
    assert payload["required"] == ["user_id"]
    assert payload["properties"]["n_reviews"] == {"type": "integer", "description": "int feature"}
    assert payload["properties"]["tags"]["items"] == {"type": "number"}
    (ref,) = ingested["items"].values()
    assert resolve(doc, ref["$ref"])["payload"]["required"] == ["sku"]  # the message's own field name
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert {"features.user_stats.dlq", "items:dlq"} <= addresses
