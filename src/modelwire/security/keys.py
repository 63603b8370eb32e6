"""API keys: ``mw_<key id>_<secret>``, stored hashed in ``<data dir>/keys.json``.

The file holds, per key, its id, a label, scopes, an optional model restriction, when it was created and
revoked, and ``sha256(secret)`` — never the secret. A secret is 256 random bits (``secrets``), so a plain
SHA-256 is as strong as a slow hash here (docs/decisions.md says why). The server re-reads the file when
its modification stamp changes (one ``stat`` a request), so ``modelwire keys create`` / ``revoke`` take
effect on the next request, without a restart. Writes are atomic (temporary file + ``os.replace``, mode
0600) and serialised by a lock file, so two ``keys create`` at once do not lose a key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelwire.errors import NotFoundError, UnauthenticatedError
from modelwire.security.principal import Principal, Scope, parse_scopes

__all__ = ["KEY_PREFIX", "ApiKey", "FileStamp", "KeyStore"]

KEY_PREFIX = "mw_"
_SECRET_BYTES = 32


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key (no secret: ``digest`` is the SHA-256 of it)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    models: frozenset[str] | None
    created: str
    digest: str
    revoked: str | None = None

    def principal(self) -> Principal:
        return Principal(
            id=f"key:{self.id}", kind="key", scopes=self.scopes, models=self.models, authenticated=True
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(s.value for s in self.scopes),
            "models": sorted(self.models) if self.models is not None else None,
            "created": self.created,
            "revoked": self.revoked,
            "sha256": self.digest,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiKey:
        models = data.get("models")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            scopes=parse_scopes(data.get("scopes") or ()),
            models=frozenset(models) if models is not None else None,
            created=str(data.get("created") or ""),
            digest=str(data["sha256"]),
            revoked=data.get("revoked"),
        )


class FileStamp:
    """Tells whether a file changed since the last look: one ``stat`` (inode, size, mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    def changed(self) -> bool:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True


class KeyStore:
    """The keys file: create, list, revoke (the CLI) and verify (the server, reloading on change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = FileStamp(path)
        self._keys: dict[str, ApiKey] = {}

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> KeyStore:
        return cls(data_dir / "keys.json")

    # -- the server's side ---------------------------------------------------------------------------

    def keys(self) -> dict[str, ApiKey]:
        """The current keys by id, re-read when the file changed."""
        if self._stamp.changed():
            self._keys = {key.id: key for key in self._read()}
        return self._keys

    def active_count(self) -> int:
        return sum(1 for key in self.keys().values() if key.revoked is None)

    def is_active(self, key_id: str) -> bool:
        key = self.keys().get(key_id)
        return key is not None and key.revoked is None

    def verify(self, presented: str) -> ApiKey:
        """The key ``presented`` (``mw_<id>_<secret>``) is, or ``UnauthenticatedError``.

        The secret is compared in constant time; the id only selects the record (it is not secret).
        """
        key_id, secret = _split(presented)
        key = self.keys().get(key_id)
        # Hash even when the id is unknown, so the answer takes the same time either way.
        digest = _digest(secret)
        expected = key.digest if key is not None else "0" * 64
        if not hmac.compare_digest(digest, expected) or key is None:
            raise _invalid("unknown or wrong API key")
        if key.revoked is not None:
            raise _invalid(f"API key {key.id} was revoked on {key.revoked}; create a new one")
        return key

    # -- the CLI's side ------------------------------------------------------------------------------

    def create(
        self, scopes: Iterable[Scope], *, models: Iterable[str] | None = None, name: str = ""
    ) -> tuple[str, ApiKey]:
        """Add a key; returns ``(the full key, its record)``. The full key is shown once, never stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        record = ApiKey(
            id=key_id,
            name=name,
            scopes=frozenset(scopes),
            models=frozenset(models) if models is not None else None,
            created=_now(),
            digest=_digest(secret),
        )
        with self._locked() as keys:
            keys.append(record)
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def records(self) -> list[ApiKey]:
        """Every key in the file, revoked ones included (no secrets: there are none to show)."""
        return self._read()

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (kept in the file, so ``keys list`` still shows it)."""
        with self._locked() as keys:
            for i, key in enumerate(keys):
                if key.id == key_id:
                    if key.revoked is None:
                        keys[i] = replace(key, revoked=_now())
                    return keys[i]
        raise NotFoundError(f"no API key with id {key_id!r} (see `modelwire keys list`)")

    # -- the file ------------------------------------------------------------------------------------

    def _read(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [ApiKey.from_json(item) for item in data.get("keys", [])]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[ApiKey]]:
        """Read-modify-write under an exclusive lock; the new file replaces the old atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            self._write(keys)
        finally:
            os.close(fd)  # releases the lock

    def _write(self, keys: list[ApiKey]) -> None:
        body = json.dumps({"version": 1, "keys": [k.to_json() for k in keys]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def _split(presented: str) -> tuple[str, str]:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] + "_" != KEY_PREFIX or not parts[1] or not parts[2]:
        raise _invalid("malformed API key: expected mw_<id>_<secret>")
    return parts[1], parts[2]


def _invalid(message: str) -> UnauthenticatedError:
    return UnauthenticatedError(message, details={"error": "invalid_token"})
