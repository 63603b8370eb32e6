"""The on-disk model repository: ``<root>/<model>/<version>/`` with a safe artifact and ``metadata.json``.

An artifact is either ``model.npz`` (named numpy arrays, read with ``allow_pickle=False``: what the default
model's numpy trainer writes) or ``model.skops`` (a scikit-learn estimator written with skops, which needs the
``sklearn`` extra). Neither format runs code when loaded. The metadata records the library versions that
wrote the artifact, so a load with other versions is flagged before it misbehaves.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from modelwire.errors import ConfigurationError

__all__ = ["ArtifactMetadata", "ModelRepository", "library_versions", "missing_extra"]

logger = logging.getLogger("modelwire.model")

ARTIFACTS = {"npz": "model.npz", "skops": "model.skops"}
METADATA = "metadata.json"
_LIBRARIES = {"npz": ("numpy",), "skops": ("scikit-learn", "numpy", "scipy", "skops")}


def library_versions(fmt: str = "skops") -> dict[str, str]:
    """The versions of Python and of the libraries that write and read artifacts of format ``fmt``."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES.get(fmt, ()):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - installed where the format is
            continue
    return versions


def _has_artifact(folder: Path) -> bool:
    return any((folder / artifact).is_file() for artifact in ARTIFACTS.values())


def missing_extra(extra: str, what: str, exc: ImportError) -> ConfigurationError:
    """The error for an optional dependency that is not installed, naming the extra that installs it."""
    return ConfigurationError(
        f"{what} needs the {extra!r} extra ({exc.name or exc} is not installed): "
        f"pip install 'modelwire[{extra}]'"
    )


def _skops() -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise missing_extra("sklearn", "a scikit-learn artifact (model.skops)", exc) from exc
    return sio


@dataclass(frozen=True, slots=True)
class ArtifactMetadata:
    name: str
    version: str
    created_at: str
    libraries: dict[str, str]
    metrics: dict[str, Any]
    trusted_types: list[str]
    format: str = "npz"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "created_at": self.created_at,
            "libraries": self.libraries,
            "metrics": self.metrics,
            "trusted_types": self.trusted_types,
        }


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class ModelRepository:
    """Versions of models saved under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first (numeric order)."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [
            p.name
            for p in folder.iterdir()
            if p.name.isdigit() and (p / METADATA).is_file() and _has_artifact(p)
        ]
        return sorted(found, key=int)

    @contextlib.contextmanager
    def first_version_lock(self, name: str) -> Iterator[None]:
        """Hold the repository's lock for ``name`` (an ``flock`` on ``<root>/.<name>.lock``).

        Processes starting at once on one empty repository (two model services on a shared volume, the
        workers of ``serve --workers``) take it before deciding to train, so exactly one trains and the
        others wait for it, then serve the version it saved. Released when the holder exits, even killed.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("another process is training %s in %s; waiting for it", name, self.root)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def next_version(self, name: str) -> str:
        folder = self.root / name
        taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
        return str(max(taken, default=0) + 1)

    def save(
        self,
        name: str,
        artifact: Any,
        metrics: dict[str, Any],
        extra_files: Mapping[str, bytes] | None = None,
    ) -> ArtifactMetadata:
        """Write a new version atomically (a temp folder renamed into place) and return its metadata.

        ``artifact`` is a mapping of names to numpy arrays (written as ``model.npz``) or a scikit-learn
        estimator (written with skops as ``model.skops``; needs the ``sklearn`` extra). ``extra_files``
        (name to bytes: the reference profile) are written beside it, in the same rename.
        """
        sio = None if isinstance(artifact, Mapping) else _skops()
        (self.root / name).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root / name))
        try:
            if sio is None:
                fmt, trusted = "npz", []
                arrays: dict[str, Any] = {key: np.asarray(value) for key, value in artifact.items()}
                with open(staging / ARTIFACTS[fmt], "wb") as handle:
                    np.savez(handle, **arrays)
            else:
                fmt = "skops"
                sio.dump(artifact, staging / ARTIFACTS[fmt])
                trusted = sorted(sio.get_untrusted_types(file=staging / ARTIFACTS[fmt]))
            for filename, content in (extra_files or {}).items():
                (staging / Path(filename).name).write_bytes(content)
            while True:
                version = self.next_version(name)
                meta = ArtifactMetadata(
                    name=name,
                    version=version,
                    created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    libraries=library_versions(fmt),
                    metrics=metrics,
                    trusted_types=trusted,
                    format=fmt,
                )
                (staging / METADATA).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
                try:
                    os.rename(staging, self.root / name / version)
                except OSError:  # another trainer took this number first
                    continue
                return meta
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def metadata(self, name: str, version: str) -> ArtifactMetadata:
        path = self.root / name / version / METADATA
        try:
            raw = json.loads(path.read_text())
            return ArtifactMetadata(
                name=raw["name"],
                version=raw["version"],
                created_at=raw["created_at"],
                libraries=raw["libraries"],
                metrics=raw.get("metrics", {}),
                trusted_types=raw.get("trusted_types", []),
                format=raw.get("format", "skops"),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"cannot read {path} ({exc!r}); retrain with `modelwire train`") from exc

    def read_extra(self, name: str, version: str, filename: str) -> bytes | None:
        """A file saved beside a version's artifact (``extra_files``), or ``None`` when it has none."""
        try:
            return (self.root / name / version / Path(filename).name).read_bytes()
        except FileNotFoundError:
            return None

    def write_extra(self, name: str, version: str, filename: str, content: bytes) -> None:
        """Add a file beside an existing version's artifact, atomically (written, then renamed)."""
        target = self.root / name / version / Path(filename).name
        staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        staging.write_bytes(content)
        os.replace(staging, target)

    def load(self, name: str, version: str, allowed_types: frozenset[str]) -> tuple[Any, ArtifactMetadata]:
        """Load one version: a dict of arrays (``npz``) or an estimator (``skops``, refusing types outside
        ``allowed_types``), and flag library drift."""
        folder = self.root / name / version
        if not _has_artifact(folder):
            raise ConfigurationError(f"no artifact for {name} version {version} in {folder}")
        meta = self.metadata(name, version)
        path = folder / ARTIFACTS.get(meta.format, f"model.{meta.format}")
        if not path.is_file():
            raise ConfigurationError(
                f"{folder / METADATA} names format {meta.format!r} but {path} is missing"
            )
        installed = library_versions(meta.format)
        for lib, wrote in meta.libraries.items():
            have = installed.get(lib)
            if lib != "python" and have is not None and _minor(have) != _minor(wrote):
                logger.warning(
                    "%s/%s was written with %s %s; %s is installed. If predictions look wrong, "
                    "retrain with `modelwire train`.",
                    name,
                    version,
                    lib,
                    wrote,
                    have,
                )
        if meta.format == "npz":
            try:
                with np.load(path, allow_pickle=False) as arrays:
                    return {key: arrays[key] for key in arrays.files}, meta
            except Exception as exc:  # truncated copy, wrong file, an object array
                raise ConfigurationError(
                    f"could not read {path} ({exc!r}); retrain it with `modelwire train`"
                ) from exc
        sio = _skops()
        try:
            untrusted = set(sio.get_untrusted_types(file=path))
        except Exception as exc:  # not a skops archive at all (truncated copy, wrong file)
            raise ConfigurationError(
                f"could not read {path} ({exc!r}); retrain it with `modelwire train`"
            ) from exc
        unexpected = untrusted - allowed_types
        if unexpected:
            raise ConfigurationError(f"{path} contains types this model does not allow: {sorted(unexpected)}")
        try:
            estimator = sio.load(path, trusted=sorted(untrusted))
        except Exception as exc:
            raise ConfigurationError(
                f"could not load {path} ({exc}); retrain it with `modelwire train`"
            ) from exc
        return estimator, meta
