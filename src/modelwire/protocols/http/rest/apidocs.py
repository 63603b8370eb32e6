"""``GET /docs``: Swagger UI over ``/openapi.json``, served from the installed package, never a CDN.

The Swagger UI files come from the ``fastapi-swagger`` wheel (``swagger-ui-bundle.js``, ``swagger-ui.css``,
the newest Swagger UI release; see docs/decisions.md), read once when the app is built and served under
``/docs/assets/`` with the dashboard's Content-Security-Policy, so the page works with no network and cannot
reach another host. The page's one line of set-up is a file of ours (``docs.js``), not an inline script,
because that policy allows scripts from this server only.
"""

from __future__ import annotations

import importlib.resources

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from modelwire.dashboard import Asset, make_asset
from modelwire.errors import NotFoundError
from modelwire.protocols.http.rest.dashboard import serve_asset

__all__ = ["add_api_docs_routes"]

_IMMUTABLE = "public, max-age=31536000, immutable"

_SETUP = b"""\
window.ui = SwaggerUIBundle({
  url: new URL("/openapi.json", window.location.href).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def _page(title: str, assets: dict[str, Asset]) -> bytes:
    def link(name: str) -> str:
        return f"/docs/assets/{name}?v={assets[name].etag.strip(chr(34))}"

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - API docs</title>
<link rel="stylesheet" href="{link("swagger-ui.css")}">
<link rel="icon" type="image/png" href="{link("favicon-32x32.png")}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{link("swagger-ui-bundle.js")}"></script>
<script src="{link("docs.js")}"></script>
</body>
</html>
""".encode()


def load_swagger_assets() -> dict[str, Asset]:
    """Swagger UI's files from the ``fastapi_swagger`` package, and the page's set-up script."""
    root = importlib.resources.files("fastapi_swagger").joinpath("resources")
    assets = {
        name: make_asset(name, root.joinpath(name).read_bytes())
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
    }
    assets["docs.js"] = make_asset("docs.js", _SETUP)
    return assets


def add_api_docs_routes(app: FastAPI) -> None:
    """``/docs`` and ``/docs/assets/{name}``, out of the OpenAPI document."""
    assets = load_swagger_assets()
    index = make_asset("index.html", _page(app.title, assets))

    async def docs(request: Request) -> Response:
        return serve_asset(request, index, "no-cache")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        found = assets.get(name)
        if found is None:
            raise NotFoundError(f"no API docs file {name!r:.80}")
        current = request.query_params.get("v") == found.etag.strip('"')
        return serve_asset(request, found, _IMMUTABLE if current else "no-cache")

    for path, endpoint in (("/docs", docs), ("/docs/assets/{name}", asset)):
        app.add_api_route(path, endpoint, methods=["GET", "HEAD"], include_in_schema=False)
