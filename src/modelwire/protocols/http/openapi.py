"""JSON Schemas of the msgspec bodies, placed into FastAPI's generated OpenAPI document.

Every operation also declares its path parameters (the handlers take the raw request, so FastAPI cannot
see them) and lists the refusals any route can give (``_ANY_ROUTE``: authentication, rate limits,
overload, an internal error) and, when it takes a body, the body refusals (413, 415), in the error shape of
its family (``/v2``: the Open Inference Protocol's ``{"error": "message"}``). The schemathesis run in
``tests/protocols/test_fuzz_rest.py`` checks the server against this document.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from fastapi import FastAPI

from modelwire.protocols.http.schemas import ErrorBody, V2InferRequest

__all__ = ["body", "merge_components", "ref", "responses", "v2_body"]

_REF = "#/components/schemas/{name}"
_registered: set[type] = {ErrorBody}


def _ref(type_: type) -> dict[str, str]:
    _registered.add(type_)
    return {"$ref": _REF.format(name=type_.__name__)}


def ref(type_: type) -> dict[str, str]:
    """A ``$ref`` to the msgspec ``type_``'s schema, which the document then carries as a component."""
    return _ref(type_)


# Exactly one input field: msgspec cannot say so, and a schema-driven client or fuzzer must know it.
_ONE_OF_FIELDS = {
    "PredictRequest": ("text", "texts", "instance", "instances"),
    "PredictStreamRequest": ("texts", "instances"),
}


def _exactly_one(schemas: dict[str, Any]) -> None:
    for name, fields in _ONE_OF_FIELDS.items():
        if name in schemas:
            schema = schemas[name]
            assert schema.get("additionalProperties") is False, name  # else "one property" is not "one field"
            schema["minProperties"] = schema["maxProperties"] = 1
            schema["oneOf"] = [{"required": [field]} for field in fields]


def body(type_: type) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(type_)}}}}


def v2_body() -> dict[str, Any]:
    """The Open Inference Protocol infer body: JSON, or JSON then binary tensors (the binary extension)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    extra = body(V2InferRequest)
    extra["requestBody"]["content"]["application/octet-stream"] = binary
    return extra


def responses(*types: type) -> dict[int | str, dict[str, Any]]:
    ok = _ref(types[0]) if len(types) == 1 else {"oneOf": [_ref(t) for t in types]}
    error = {"content": {"application/json": {"schema": _ref(ErrorBody)}}}
    return {
        200: {"description": "OK", "content": {"application/json": {"schema": ok}}},
        400: {"description": "Malformed JSON or wrong types (with the field path)", **error},
        404: {"description": "Unknown model or version", **error},
        413: {"description": "Body or item over the configured limit", **error},
        415: {"description": "Not JSON", **error},
        500: {"description": "The model raised (an error id, no stack trace)", **error},
        503: {"description": "Not ready or overloaded (Retry-After)", **error},
        504: {"description": "The model exceeded the time budget", **error},
    }


_ANY_ROUTE = {
    "400": "A parameter or the body is malformed (the error names the field)",
    "401": "Authentication is on and the credentials are missing or invalid (WWW-Authenticate)",
    "403": "The credential lacks the scope, or may not use this model",
    "404": "No such model, version or job",
    "429": "Over the rate limit (Retry-After, RateLimit-* headers)",
    "500": "An internal error (an error id to quote, no stack trace)",
    "503": "Not ready, shutting down, or overloaded (Retry-After)",
    "504": "The request exceeded its time budget",
}
_WITH_BODY = {
    "413": "The body, or an item in it, is over the configured limit (limits.*)",
    "415": "A content type this route does not read",
}
_V2_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
    "title": "V2Error",
}


_PATH_PARAMS = {
    "name": "The model's name (GET /v1/models lists them)",
    "version": "One version of the model",
    "job_id": "The job's id",
    "view": "A feature view's name (GET /v1/features lists them)",
}


def _complete_path_params(path: str, operation: dict[str, Any]) -> None:
    """The handlers take the raw request, so FastAPI does not see the path's ``{parameters}``."""
    params = operation.setdefault("parameters", [])
    given = {p["name"]: p for p in params if p.get("in") == "path"}
    for name in re.findall(r"{(\w+)}", path):
        if name in given:
            given[name]["required"] = True  # OpenAPI: a path parameter always is
        else:
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": _PATH_PARAMS.get(name, name),
                    "schema": {"type": "string"},
                }
            )


def _complete_errors(path: str, operation: dict[str, Any]) -> None:
    answers = operation.setdefault("responses", {})
    schema = _V2_ERROR if path.startswith("/v2") else _ref(ErrorBody)
    for status, description in {**_ANY_ROUTE, **(_WITH_BODY if "requestBody" in operation else {})}.items():
        if status not in answers:
            answers[status] = {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            }


def merge_components(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so the document carries the msgspec schemas as components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        _, components = msgspec.json.schema_components(
            sorted(_registered, key=lambda t: t.__name__), ref_template=_REF
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(components)
        _exactly_one(schemas)
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                answers = operation.get("responses", {})
                if "HTTPValidationError" in str(answers.get("422")):  # FastAPI's, never sent by modelwire
                    answers.pop("422")
                _complete_path_params(path, operation)
                _complete_errors(path, operation)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
