"""``modelwire keys create/list/revoke``, the serve flags of authentication, and the refusal to serve a
public address with authentication off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelwire.app import main
from modelwire.cli import app
from modelwire.security.keys import KeyStore
from modelwire.settings import Settings


def test_create_prints_the_key_once_and_list_never_does(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--scopes",
            "predict,jobs:read",
            "--model",
            "echo",
            "--name",
            "ci",
            "--data-dir",
            data,
        ],
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("mw_")
    (record,) = KeyStore.in_data_dir(data).records()
    assert record.id in created.stdout
    assert KeyStore.in_data_dir(data).verify(key).name == "ci"

    listed = runner.invoke(app, ["keys", "list", "--data-dir", str(data)])
    assert listed.exit_code == 0
    assert record.id in listed.stdout
    assert "jobs:read predict" in listed.stdout
    assert "active" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout
    as_json = json.loads(runner.invoke(app, ["keys", "list", "--json", "--data-dir", str(data)]).stdout)
    assert as_json[0]["models"] == ["echo"]
    assert "sha256" not in as_json[0]

    revoked = runner.invoke(app, ["keys", "revoke", record.id, "--data-dir", str(data)])
    assert revoked.exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list", "--data-dir", str(data)]).stdout
    assert runner.invoke(app, ["keys", "revoke", "nope", "--data-dir", str(data)]).exit_code == 1


def test_create_refuses_unknown_scopes(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "create", "--scopes", "predict,admin", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown scope 'admin'" in result.output
    assert not (tmp_path / "keys.json").exists()


def test_create_reads_the_data_dir_twin(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["keys", "create", "--scopes", "events", "--json"], env={"MODELWIRE_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0
    made = json.loads(result.stdout)
    assert KeyStore.in_data_dir(tmp_path).verify(made["key"]).id == made["id"]


def test_serve_auth_flags_and_twins(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served: list[Settings] = []
    monkeypatch.setattr(main, "run", served.append)
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    flags = ["--auth", "on", "--insecure", "--jwt-secret", "x" * 32, "--jwt-jwks", str(jwks)]
    flags += ["--jwt-issuer", "https://i", "--jwt-audience", "mw"]
    assert runner.invoke(app, ["serve", *flags]).exit_code == 0
    auth = served[-1].auth
    assert (auth.mode, auth.insecure, auth.jwt_jwks) == ("on", True, jwks)
    assert auth.jwt_secret is not None
    assert auth.jwt_secret.get_secret_value() == "x" * 32
    assert (auth.jwt_issuer, auth.jwt_audience) == ("https://i", "mw")
    env = {"MODELWIRE_AUTH__MODE": "off", "MODELWIRE_AUTH__JWT_AUDIENCE": "env-aud"}
    assert runner.invoke(app, ["serve"], env=env).exit_code == 0
    assert (served[-1].auth.mode, served[-1].auth.jwt_audience) == ("off", "env-aud")
    help_text = runner.invoke(app, ["serve", "--help"]).stdout
    for twin in ("MODELWIRE_AUTH__MODE", "MODELWIRE_AUTH__INSECURE", "MODELWIRE_AUTH__JWT_SECRET"):
        assert twin in help_text
    for twin in ("MODELWIRE_AUTH__JWT_JWKS", "MODELWIRE_AUTH__JWT_ISSUER", "MODELWIRE_AUTH__JWT_AUDIENCE"):
        assert twin in help_text


def test_client_commands_take_an_api_key(runner: CliRunner) -> None:
    for command in ("predict", "models", "health", "watch", "jobs list", "jobs submit"):
        result = runner.invoke(app, [*command.split(), "--help"])
        assert "--api-key" in result.stdout, command
        assert "MODELWIRE_API_KEY" in result.stdout, command


def test_serving_a_public_address_with_auth_off_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
    args = [sys.executable, "-m", "modelwire", "serve", "--host", "0.0.0.0", "--auth", "off"]
    args += ["--http-port", "0", "--grpc-port", "0", "--data-dir", str(tmp_path)]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1
    assert "refusing to serve on 0.0.0.0 with authentication off" in result.stderr
    assert "--insecure" in result.stderr
    assert not (tmp_path / "models").exists()  # stopped before building anything
