"""The live dashboard's files: a single page (``static/``) shipped inside the package, no build step.

``static/`` holds ``index.html``, ``style.css``, ``favicon.svg`` and plain ES modules (``app.js`` wires the
page; ``charts.js``, ``live.js``, ``playground.js`` do one job each), read with ``importlib.resources``, so a
wheel serves them exactly as a checkout does. The page fetches nothing from
another host (no CDN, no web fonts): it talks to the server that served it, over ``/v1/ws`` (falling back to
``/v1/events``) for live metrics and models, and over REST, WebSocket or SSE for the playground.

``load_assets()`` reads them once into memory with their content type and a strong ETag; the HTTP side
(``protocols/http/rest/dashboard.py``) only looks them up.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass

__all__ = ["Asset", "load_assets", "make_asset"]

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, ``Content-Type`` and ETag (a hash of the bytes)."""

    name: str
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file under ``static/`` by name, with ``index.html``'s asset links versioned by their ETag.

    Versioned links (``/static/app.js?v=1a2b3c4d``) let browsers cache the assets and still pick up a new
    release at once: ``index.html`` itself is always revalidated.
    """
    root = importlib.resources.files(__name__).joinpath("static")
    assets: dict[str, Asset] = {}
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if not entry.is_file() or suffix not in _CONTENT_TYPES:
            continue
        assets[entry.name] = _asset(entry.name, entry.read_bytes(), _CONTENT_TYPES[suffix])
    index = assets.get("index.html")
    if index is not None:
        html = index.body.decode("utf-8")
        for name, asset in assets.items():
            if name != "index.html":
                html = html.replace(f'"/static/{name}"', f'"/static/{name}?v={asset.etag.strip(chr(34))}"')
        assets["index.html"] = _asset("index.html", html.encode("utf-8"), index.content_type)
    return assets


def _asset(name: str, body: bytes, content_type: str) -> Asset:
    return Asset(name, body, content_type, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')


def make_asset(name: str, body: bytes) -> Asset:
    """An ``Asset`` whose content type follows its name's suffix (``/docs`` serves Swagger UI's this way)."""
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return _asset(name, body, _CONTENT_TYPES.get(suffix, "application/octet-stream"))
