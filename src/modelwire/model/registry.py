"""Which models are served, in which versions, and whether each is ready."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelwire.errors import ConfigurationError, ModelNotFoundError, ModelNotReadyError, UnavailableError
from modelwire.model.base import Model
from modelwire.model.batching import BatchingRunner, BatchPolicy
from modelwire.model.repository import ModelRepository
from modelwire.model.runner import ModelRunner, TracedRunner
from modelwire.model.runtimes import OnnxModel, SklearnModel, import_model_class
from modelwire.model.sentiment import SentimentModel, train_sentiment
from modelwire.observability.tracing import active_tracer
from modelwire.settings import BatchingSettings, ModelSettings, Settings

__all__ = ["ModelHandle", "ModelRegistry", "build_models"]

logger = logging.getLogger("modelwire.model")


class Runner(Protocol):
    async def run(self, batch: Any) -> list[Any]: ...


STATES = ("loading", "ready", "unloading", "unavailable", "failed")
"""A version's states: ``unavailable`` (known, not loaded) → ``loading`` → ``ready`` (or ``failed``, with
its reason) → ``unloading`` (in-flight calls finish; new ones get 503) → ``unavailable``."""


@dataclass(slots=True)
class ModelHandle:
    """One servable (model, version): the model, how it is run, and its state (``STATES``)."""

    model: Model
    runner: Runner
    state: str = "unavailable"
    reason: str = ""
    inflight: int = 0
    """Calls running on this version now (the ``DataPlane`` counts them; an unload waits for zero)."""
    last_used: float = 0.0
    """``time.monotonic()`` of the latest call (the memory budget unloads the least recently used)."""
    make_runner: Callable[[], Runner] | None = None
    """A fresh runner after an unload closed the old one."""
    drained: asyncio.Event | None = None
    """Set by the ``DataPlane`` when the last running call of an unloading version ends."""

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @ready.setter
    def ready(self, value: bool) -> None:
        self.state, self.reason = ("ready" if value else "unavailable"), ""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version


def _runner(model: Model, batching: BatchingSettings, executor: ThreadPoolExecutor, observe: Any) -> Runner:
    tracer = active_tracer()
    base = ModelRunner(model, executor, inline_below_s=batching.inline_below_ms / 1000.0)
    # Span export on (observability/tracing.py): each model call is a span; off, nothing wraps the call.
    runner = TracedRunner(base, tracer) if tracer is not None else base
    if not batching.enabled:
        return runner
    policy = BatchPolicy(batching.max_batch_size, batching.max_delay_ms / 1000.0, 1)
    return BatchingRunner(runner, policy, on_batch=observe, tracer=tracer)


def build_models(settings: Settings, *, progress: Callable[[str, float], None] | None = None) -> list[Model]:
    """Instantiate (not load) every configured model; train the default one if it has no version yet."""
    repository = ModelRepository(settings.model_repository)
    models: list[Model] = []
    for spec in settings.effective_models():
        models.extend(_from_spec(spec, repository, progress))
    return models


def _from_spec(
    spec: ModelSettings, repository: ModelRepository, progress: Callable[[str, float], None] | None
) -> list[Model]:
    source = spec.source
    if source == "builtin:sentiment":
        # a pinned version is served as asked (its load names a missing extra); otherwise every version this
        # install can load, and a first one is trained when there is none
        pinned = spec.version is not None

        def candidates(warn: bool = False) -> list[str]:
            return repository.versions(spec.name) if pinned else _servable(spec.name, repository, warn=warn)

        versions = candidates(warn=True)
        if not versions:
            with repository.first_version_lock(spec.name):
                versions = candidates()  # another process may have trained meanwhile
                if not versions:
                    versions = [_train_first(spec.name, repository, progress)]
        if spec.version is not None:
            if spec.version not in versions:
                raise ConfigurationError(f"{spec.name} has no version {spec.version} in {repository.root}")
            versions = [spec.version]
        return [SentimentModel(spec.name, v, repository=repository, **spec.options) for v in versions]
    version = spec.version or "1"
    path = Path(source)
    if path.suffix in {".skops", ".joblib", ".pkl"}:
        return [SklearnModel(spec.name, version, path=path, **spec.options)]
    if path.suffix == ".onnx":
        return [OnnxModel(spec.name, version, path=path, **spec.options)]
    if ":" in source:
        return [import_model_class(source)(spec.name, version, **spec.options)]
    raise ConfigurationError(
        f"model source {source!r} is not builtin:sentiment, a package.module:Class path, "
        "or a .skops/.joblib/.pkl/.onnx file"
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # a module hidden as None in sys.modules
        return False


def _servable(name: str, repository: ModelRepository, *, warn: bool = False) -> list[str]:
    """The versions of the default model this install can load: a version scikit-learn wrote
    (``model.skops``, from before numpy trained the default model or from ``--trainer sklearn``) needs the
    ``sklearn`` extra; without it, it is left out (the start trains a numpy version if none is left)."""
    versions = repository.versions(name)
    if _installed("sklearn") and _installed("skops"):
        return versions
    servable = []
    for version in versions:
        try:
            fmt = repository.metadata(name, version).format
        except ConfigurationError:
            fmt = "npz"  # unreadable metadata: loading it reports the problem
        if fmt == "skops":
            if warn:
                logger.warning(
                    "%s version %s is a scikit-learn artifact (model.skops) and the 'sklearn' extra is not "
                    "installed: not served (pip install 'modelwire[sklearn]' serves it)",
                    name,
                    version,
                )
            continue
        servable.append(version)
    return servable


def _train_first(
    name: str, repository: ModelRepository, progress: Callable[[str, float], None] | None
) -> str:
    logger.info("no trained %s model in %s: training one now", name, repository.root)
    report = train_sentiment(repository, name=name, progress=progress or (lambda s, f: None))
    logger.info("trained %s version %s, held-out accuracy %.4f", name, report.version, report.accuracy)
    return report.version


class ModelRegistry:
    """Models by name and version. The default is the one set (``set_default``), else the newest."""

    def __init__(self) -> None:
        self._handles: dict[str, dict[str, ModelHandle]] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="modelwire-predict")
        self._defaults: dict[str, str] = {}
        self.unknown_unavailable: str | None = None
        """When set, an unknown model is UNAVAILABLE (503) for this reason, not NOT_FOUND: a gateway
        whose model services do not answer cannot tell which models exist (gateway/router.py sets it)."""

    def add(self, model: Model, batching: BatchingSettings, observe: Any = None) -> ModelHandle:
        versions = self._handles.setdefault(model.name, {})
        if model.version in versions:
            raise ConfigurationError(f"model {model.name} version {model.version} is configured twice")
        handle = self._handle(model, batching, observe)
        versions[model.version] = handle
        return handle

    def _handle(self, model: Model, batching: BatchingSettings, observe: Any) -> ModelHandle:
        def make() -> Runner:
            return _runner(model, batching, self._executor, observe)

        return ModelHandle(model, make(), make_runner=make)

    async def add_loaded(
        self,
        model: Model,
        batching: BatchingSettings,
        observe: Any = None,
        load: Callable[[ModelHandle], Awaitable[None]] | None = None,
    ) -> ModelHandle:
        """Add a version at run time: loaded (off the event loop) before it becomes visible, so the
        default version only switches to it once it can serve. ``load``: how (the memory budget's)."""
        versions = self._handles.get(model.name, {})
        if model.version in versions:
            raise ConfigurationError(f"model {model.name} already has a version {model.version}")
        handle = self._handle(model, batching, observe)
        await (load or self.load)(handle)
        self._handles.setdefault(model.name, {})[model.version] = handle
        return handle

    async def load_all(self) -> None:
        for handle in self.handles():
            await self.load(handle)

    async def load(self, handle: ModelHandle) -> None:
        """Load (and warm up) ``handle``'s model; ``ready`` after, ``failed`` with the reason if it raised."""
        loop = asyncio.get_running_loop()
        handle.state, handle.reason = "loading", ""
        try:
            if inspect.iscoroutinefunction(handle.model.load):
                await handle.model.load()
            else:
                await loop.run_in_executor(self._executor, handle.model.load)
            await self._warm_up(handle.model)
        except BaseException as exc:
            handle.state, handle.reason = "failed", f"{type(exc).__name__}: {exc}"[:500]
            raise
        handle.ready = True
        logger.info("model %s version %s ready", handle.name, handle.version)

    async def _warm_up(self, model: Model) -> None:
        # The model's declared warm-up inputs, run once as one batch before the version is ready, so the
        # first caller never pays the cold path (lazy imports, first-call allocations, caches).
        inputs = list(model.warmup_inputs)
        if not inputs:
            return
        if model.is_async:
            result = model.predict(inputs)
            outputs = await result if inspect.isawaitable(result) else result
        else:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, model.predict, inputs)
        failed = [o for o in outputs if isinstance(o, BaseException)]
        if failed:
            raise ConfigurationError(f"warm-up input failed: {failed[0]}")

    async def _call(self, fn: Callable[[], Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def unload(self, handle: ModelHandle, *, drain_s: float = 30.0) -> None:
        """Stop serving ``handle``: new calls get 503 at once, running ones finish (within ``drain_s``),
        then its runner closes and its model unloads. ``unavailable`` after; a later ``load`` revives it."""
        if handle.state in ("unavailable", "unloading"):
            return
        handle.state, handle.reason = "unloading", ""
        if handle.inflight > 0:
            handle.drained = asyncio.Event()
            try:
                await asyncio.wait_for(handle.drained.wait(), drain_s)
            except TimeoutError:
                logger.warning(
                    "model %s version %s: unloading with calls still running", handle.name, handle.version
                )
            finally:
                handle.drained = None
        close = getattr(handle.runner, "close", None)
        if close is not None:
            await close()
        try:
            await self._call(handle.model.unload)
        finally:
            if handle.make_runner is not None:
                handle.runner = handle.make_runner()
            handle.state = "unavailable"
        logger.info("model %s version %s unloaded", handle.name, handle.version)

    def remove(self, name: str, version: str) -> None:
        """Forget a version (unloaded first by the caller)."""
        versions = self._handles.get(name, {})
        versions.pop(version, None)
        if self._defaults.get(name) == version:
            del self._defaults[name]

    def set_default(self, name: str, version: str | None) -> None:
        """Make ``version`` the default of ``name`` (``None``: back to the newest)."""
        if version is None:
            self._defaults.pop(name, None)
            return
        self.get(name, version, require_ready=False)  # raises for an unknown one
        self._defaults[name] = version

    def default_version(self, name: str) -> str:
        return self.get(name, None, require_ready=False).version

    async def unload_all(self) -> None:
        for handle in self.handles():
            already = handle.state == "unavailable"  # unloaded at run time (admin, memory budget)
            handle.ready = False
            close = getattr(handle.runner, "close", None)
            if close is not None:
                await close()
            if already:
                continue
            result = handle.model.unload()
            if inspect.isawaitable(result):
                await result
        self._executor.shutdown(wait=False, cancel_futures=True)

    def handles(self) -> list[ModelHandle]:
        return [h for versions in self._handles.values() for h in versions.values()]

    def names(self) -> list[str]:
        return sorted(self._handles)

    def versions(self, name: str) -> list[str]:
        return sorted(self._handles.get(name, {}), key=_version_key)

    def get(self, name: str, version: str | None = None, *, require_ready: bool = True) -> ModelHandle:
        versions = self._handles.get(name)
        if not versions:
            if self.unknown_unavailable is not None:
                reason = self.unknown_unavailable
                raise UnavailableError(f"model {name!r} cannot be looked up: {reason}", retry_after_s=1.0)
            known = ", ".join(self.names()) or "none"
            raise ModelNotFoundError(f"model {name!r} is not served (served: {known})")
        if version is None or version == "":
            chosen = self._defaults.get(name)
            version = chosen if chosen in versions else _default_version(versions)
        handle = versions.get(version)
        if handle is None:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r} (versions: {', '.join(self.versions(name))})"
            )
        if require_ready and not handle.ready:
            what = {"failed": f"failed to load ({handle.reason})", "unloading": "unloading"}
            state = what.get(handle.state, "not loaded" if handle.state == "unavailable" else "not ready yet")
            raise ModelNotReadyError(f"model {name!r} version {version} is {state}", retry_after_s=1.0)
        return handle


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _default_version(versions: Collection[str]) -> str:
    # The newest numbered version; a named one ("canary") is the default only when none is numbered.
    numbered = [v for v in versions if v.isdigit()]
    return max(numbered, key=int) if numbered else max(versions)
