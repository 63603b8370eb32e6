"""``GET /`` and ``/static/...``: content types, caching, security headers, off switch, not in OpenAPI.

The page itself (in a browser) is tested in ``tests/dashboard/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from modelwire.app.services import Services
from modelwire.dashboard import load_assets
from modelwire.protocols.http.app import create_app
from modelwire.settings import Settings


async def test_index_is_html_revalidated_and_locked_to_this_server(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<title>modelwire" in response.text
    # Nothing on the page points at another host.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", response.text)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("live.js", "text/javascript; charset=utf-8"),
        ("playground.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_files_have_their_content_type(
    client: httpx.AsyncClient, name: str, content_type: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == load_assets()[name].body


async def test_index_links_assets_by_version_and_versioned_assets_are_immutable(
    client: httpx.AsyncClient,
) -> None:
    index = (await client.get("/")).text
    links = re.findall(r'"(/static/[a-z.]+\?v=[0-9a-f]+)"', index)
    assert {link.split("?")[0] for link in links} >= {"/static/app.js", "/static/style.css"}
    for link in links:
        response = await client.get(link)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = await client.get("/static/app.js?v=0000")
    assert stale.headers["cache-control"] == "no-cache"  # an old link still gets today's file, revalidated


async def test_etag_answers_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/static/style.css")
    etag = first.headers["etag"]
    again = await client.get("/static/style.css", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    changed = await client.get("/static/style.css", headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200
    index = await client.get("/", headers={"If-None-Match": (await client.get("/")).headers["etag"]})
    assert index.status_code == 304


async def test_head_gives_headers_without_a_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/static/app.js")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(load_assets()["app.js"].body)


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fapp.py", "%2E%2E"])
async def test_unknown_static_file_is_a_json_404(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_post_is_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post("/")
    assert response.status_code == 405


async def test_dashboard_is_not_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


async def test_the_setting_turns_it_off(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> None:
    services = make_services(settings=make_settings(http={"dashboard": False}))
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://modelwire.test") as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/static/app.js")).status_code == 404
        # The API itself is unaffected.
        assert (await client.get("/openapi.json")).status_code == 200


def test_every_shipped_file_is_served_from_the_package() -> None:
    assets = load_assets()
    assert {
        "index.html",
        "app.js",
        "charts.js",
        "live.js",
        "playground.js",
        "style.css",
        "favicon.svg",
    } <= set(assets)
    for asset in assets.values():
        assert asset.body
        assert re.fullmatch(r'"[0-9a-f]{16}"', asset.etag)
    # Every module app.js imports is shipped.
    imported = re.findall(r'from "\./([a-z]+\.js)"', assets["app.js"].body.decode())
    assert imported
    assert set(imported) <= set(assets)
