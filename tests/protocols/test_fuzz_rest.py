"""schemathesis against the server's own ``/openapi.json``: every operation, generated valid and invalid
requests, on a real server (port 0). No 5xx; status codes, content types, headers and bodies as documented.

Bounded: a few examples per operation (``MAX_EXAMPLES``; ``MODELWIRE_FUZZ_EXAMPLES=500`` for a deeper run),
no shrinking past a failure's first form, so the whole run stays well under a minute. A failure prints the
request as a curl command to replay. A followed ``/v1/events`` stream never ends: its first chunk is checked.

The document fuzzed is built from the app at collection (schemathesis 4's fixture-based loader does not run
on pytest 9); a test checks it is exactly the one the server serves.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CHECKS as CHECKS_REGISTRY
from schemathesis.checks import load_all_checks
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from modelwire.app.builder import build_services
from modelwire.protocols.http.app import create_app
from modelwire.settings import JobsSettings, Settings
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer

MAX_EXAMPLES = int(os.environ.get("MODELWIRE_FUZZ_EXAMPLES", "12"))  # deeper runs: raise it


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(EchoModel("echo"), trained=False, jobs=JobsSettings(workers=1, webhook_allow=()))


def _openapi() -> dict[str, Any]:
    """The document the server serves at ``/openapi.json``: the app's, which depends on no model (the paths
    are templates), so it is read from an app built here, at collection, without serving it."""
    with tempfile.TemporaryDirectory() as data_dir:
        services = build_services(Settings(data_dir=Path(data_dir)), models=[])
        return create_app(services).openapi()


schema = schemathesis.openapi.from_dict(_openapi())
load_all_checks()
# Every built-in check but "schema-valid data is accepted": a valid-looking request still names a model, a
# job or a cursor that does not exist (404/400 as documented), which a JSON Schema cannot rule out.
CHECKS = [check for check in CHECKS_REGISTRY.get_all() if check is not positive_data_acceptance]
schemathesis.serializer.alias("application/x-ndjson", "text/plain")  # documented as a string: its lines


def test_the_served_openapi_is_the_one_fuzzed(server: ThreadedServer) -> None:
    served = httpx.get(server.http_url + "/openapi.json", timeout=30)
    assert served.json() == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_does_what_its_openapi_says(case: Any, server: ThreadedServer) -> None:
    case.validate_response(call(case, server.http_url), checks=CHECKS)


def test_every_operation_is_fuzzed_in_both_modes_with_the_checks_that_matter() -> None:
    """Nothing dropped silently: each operation of the document, valid and invalid data, bounded examples,
    and the checks on every answer (no 5xx; status, content type, headers and body as documented)."""
    documented = {
        (method.upper(), path)
        for path, operations in schema.raw_schema["paths"].items()
        for method in operations
    }
    fuzzed = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert fuzzed == documented
    assert len(documented) >= 25
    generation = schema.config.generation_for(operation=None)
    assert set(generation.modes) == {GenerationMode.POSITIVE, GenerationMode.NEGATIVE}
    names = {check.__name__ for check in CHECKS}
    for check in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
    ):
        assert check in names


def _part(value: Any) -> Any:
    if isinstance(value, tuple):
        return (value[0], _part(value[1]), *value[2:])
    return value if isinstance(value, str | bytes) else json.dumps(value)


def call(case: Any, base_url: str) -> httpx.Response:
    """Send the case with httpx. (schemathesis's own ``requests`` transport trips over urllib3-future, which
    niquests installs in urllib3's place: the kwargs it would send are translated instead.)"""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    data = kwargs.pop("data", None)
    if isinstance(data, str | bytes):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    kwargs.pop("auth", None)
    if files := kwargs.pop("files", None):  # multipart parts: httpx wants bytes where requests takes more
        pairs = files.items() if isinstance(files, dict) else files
        kwargs["files"] = [(name, _part(value)) for name, value in pairs]
    cookies = kwargs.pop("cookies", None)
    with httpx.Client(cookies=cookies, timeout=30) as client:
        request = client.build_request(**kwargs)
        request.read()  # schemathesis reads the request body back from the response
        response = client.send(request, stream=True)
        try:
            if not _follows_events(response):
                response.read()
                return response
            # A followed event stream never ends: keep its first chunk (the retry hint), then hang up.
            first = next(response.iter_raw(), b"")
            return httpx.Response(
                response.status_code, headers=response.headers, content=first, request=request
            )
        finally:
            response.close()


def _follows_events(response: httpx.Response) -> bool:
    return (
        response.request.url.path == "/v1/events"
        and response.status_code == 200
        and response.headers.get("content-type", "").startswith("text/event-stream")
    )
