"""API keys: stored hashed, verified in constant time, revoked and added without a restart."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from modelwire.errors import NotFoundError, UnauthenticatedError
from modelwire.security.keys import KeyStore
from modelwire.security.principal import Scope


def test_a_key_is_stored_hashed_with_mode_0600(tmp_path: Path) -> None:
    store = KeyStore.in_data_dir(tmp_path / "data")
    key, record = store.create({Scope.PREDICT}, models=["echo"], name="ci")
    assert key.startswith(f"mw_{record.id}_")
    secret = key.split("_", 2)[2]
    assert len(secret) >= 43  # 32 random bytes, base64url
    text = store.path.read_text()
    assert secret not in text
    assert hashlib.sha256(secret.encode()).hexdigest() in text
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    (saved,) = json.loads(text)["keys"]
    assert saved["scopes"] == ["predict"]
    assert saved["models"] == ["echo"]
    assert saved["name"] == "ci"
    assert saved["revoked"] is None


def test_verify_gives_the_keys_principal(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create({Scope.PREDICT, Scope.JOBS_READ}, models=["echo"])
    principal = store.verify(key).principal()
    assert principal.id == f"key:{record.id}"
    assert principal.kind == "key"
    assert principal.authenticated
    assert principal.scopes == {Scope.PREDICT, Scope.JOBS_READ}
    assert principal.models == {"echo"}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        lambda key: "mw_000000000000_" + key.split("_", 2)[2],  # unknown id
        lambda key: "mw_" + key.split("_", 2)[1],  # no secret
        lambda key: "mw__",
    ],
)
def test_a_wrong_key_is_refused(tmp_path: Path, mangle: object) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, _ = store.create({Scope.PREDICT})
    assert callable(mangle)
    with pytest.raises(UnauthenticatedError) as refused:
        store.verify(mangle(key))
    assert refused.value.details == {"error": "invalid_token"}
    assert key.split("_", 2)[2] not in refused.value.message


def test_revocation_and_new_keys_reach_a_running_reader_without_restart(tmp_path: Path) -> None:
    server = KeyStore(tmp_path / "keys.json")  # what the server holds
    cli = KeyStore(tmp_path / "keys.json")  # what `modelwire keys` uses, another process in real life
    assert server.keys() == {}
    key, record = cli.create({Scope.PREDICT})
    assert server.verify(key).id == record.id
    cli.revoke(record.id)
    with pytest.raises(UnauthenticatedError, match="revoked"):
        server.verify(key)
    assert not server.is_active(record.id)
    assert [k.id for k in cli.records()] == [record.id]  # kept, marked revoked


def test_revoking_an_unknown_key_says_how_to_find_ids(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="keys list"):
        KeyStore(tmp_path / "keys.json").revoke("nope")


def test_creates_do_not_lose_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    made = [store.create({Scope.PREDICT})[0] for _ in range(5)]
    reader = KeyStore(tmp_path / "keys.json")
    for key in made:
        reader.verify(key)
    assert not list(tmp_path.glob(".keys-*"))  # no temporary file left behind
