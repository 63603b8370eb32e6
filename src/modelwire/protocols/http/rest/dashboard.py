"""``GET /`` and ``GET /static/{name}``: the live dashboard (``modelwire.dashboard``), kept out of OpenAPI.

The files are read once, when the app is built. ``index.html`` is revalidated on every load (``no-cache``
plus its ETag); it links each asset with ``?v=<etag>``, and an asset asked for with its current version is
cacheable for a year, otherwise revalidated. A Content-Security-Policy pins every fetch, script and socket
to this server, so the page cannot reach another host even by mistake.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from modelwire.dashboard import Asset, load_assets
from modelwire.errors import NotFoundError
from modelwire.protocols.facades import Facades

__all__ = ["CONTENT_SECURITY_POLICY", "add_dashboard_routes", "serve_asset"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_IMMUTABLE = "public, max-age=31536000, immutable"


def serve_asset(request: Request, asset: Asset, cache_control: str) -> Response:
    """``asset`` with its ETag (``304`` when the browser has it) and the page security headers."""
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, **_SECURITY_HEADERS}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    response = Response(body, headers=headers, media_type=asset.content_type)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(asset.body))
    return response


def add_dashboard_routes(app: FastAPI, services: Facades) -> None:
    """Serve the dashboard at ``/`` unless ``settings.http.dashboard`` is off."""
    if not services.settings.http.dashboard:
        return
    assets = load_assets()
    index = assets["index.html"]

    async def dashboard(request: Request) -> Response:
        return serve_asset(request, index, "no-cache")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        asset = assets.get(name)
        if asset is None or name == "index.html":
            raise NotFoundError(f"no dashboard file {name!r:.80}")
        current = request.query_params.get("v") == asset.etag.strip('"')
        return serve_asset(request, asset, _IMMUTABLE if current else "no-cache")

    for path, endpoint in (("/", dashboard), ("/static/{name}", static)):
        app.add_api_route(path, endpoint, methods=["GET", "HEAD"], include_in_schema=False)
