"""JSON Schemas of the msgspec bodies, placed into FastAPI's generated OpenAPI document."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI

from modelwire.protocols.rest.schemas import ErrorBody

__all__ = ["body", "merge_components", "responses"]

_REF = "#/components/schemas/{name}"
_registered: set[type] = {ErrorBody}


def _ref(type_: type) -> dict[str, str]:
    _registered.add(type_)
    return {"$ref": _REF.format(name=type_.__name__)}


def body(type_: type) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(type_)}}}}


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
        for path in document.get("paths", {}).values():
            for operation in path.values():
                answers = operation.get("responses", {})
                if "HTTPValidationError" in str(answers.get("422")):  # FastAPI's, never sent by modelwire
                    answers.pop("422")
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
