"""The ops face of ``consume`` and ``worker`` (``create_ops_app``), in process: health is public, ``/metrics``
is decided by the same policy as on the REST face (``models:admin`` with authentication on), and nothing
else is served there."""

from __future__ import annotations

from pathlib import Path

import httpx

from modelwire.app.builder import build_services
from modelwire.protocols.http.app import create_ops_app
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope
from modelwire.settings import Settings
from tests.models import EchoModel


async def test_auth_on_metrics_needs_models_admin_and_health_stays_public(tmp_path: Path) -> None:
    settings = Settings(host="127.0.0.1", data_dir=tmp_path, auth={"mode": "on"})
    admin, _ = KeyStore.in_data_dir(tmp_path).create([Scope.MODELS_ADMIN], name="ops")
    viewer, _ = KeyStore.in_data_dir(tmp_path).create([Scope.PREDICT], name="viewer")
    services = build_services(settings, models=[EchoModel("echo")])
    transport = httpx.ASGITransport(app=create_ops_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9102") as client:
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code in (200, 503)  # public either way
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
        denied = await client.get("/metrics", headers={"authorization": f"Bearer {viewer}"})
        assert denied.status_code == 403
        allowed = await client.get("/metrics", headers={"authorization": f"Bearer {admin}"})
        assert allowed.status_code == 200
        assert "# HELP modelwire_requests" in allowed.text
        # the REST face's public model list is not served here: a 404 in the usual error shape
        unknown = await client.get("/v1/models")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "NOT_FOUND"
