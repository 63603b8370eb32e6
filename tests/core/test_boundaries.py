"""The arrows of ``docs/architecture.md``: which package may import which, checked on every import statement
in ``src/modelwire`` (lazy imports inside functions and ``TYPE_CHECKING`` blocks included).

- each package imports only the packages its row in ``ALLOWED`` names (and itself);
- the core, the domain packages, security and the backends import no web or RPC stack;
- the HTTP sub-adapters (REST, SSE, WebSocket) import the shared HTTP pieces, never each other;
- nothing but the core (and the composition in ``app/``, the gateway's router, the models' own package)
  reaches the model registry;
- there is no import cycle between modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelwire

PACKAGE = Path(modelwire.__file__).parent

FOUNDATION = {"errors", "settings", "_version"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "settings": {"backends.urls"},
    "observability": FOUNDATION,
    "model": FOUNDATION | {"observability", "monitoring"},  # monitoring: a version's reference profile
    "security": FOUNDATION | {"observability"},
    "core": FOUNDATION | {"model", "security", "observability"},
    "events": FOUNDATION | {"security", "observability"},
    "jobs": FOUNDATION | {"core", "model", "security", "events", "observability"},
    "monitoring": FOUNDATION | {"events", "security", "observability"},
    "features": FOUNDATION | {"model", "security", "observability", "backends.queue"},
    "backends.urls": set(),
    "backends.sqlite": FOUNDATION | {"jobs", "events", "features", "security", "backends.urls"},
    "backends.redis": FOUNDATION
    | {"jobs", "events", "features", "security", "backends.urls", "backends.queue"},
    "backends.queue": FOUNDATION,  # the interface a broker implements, for the queue adapter
    "backends.rabbitmq": FOUNDATION | {"backends.queue", "backends.urls"},
    "backends.nats": FOUNDATION | {"backends.queue"},
    "backends.resolve": FOUNDATION
    | {"jobs", "events", "features", "security", "backends.urls", "backends.sqlite", "backends.redis"}
    | {"backends.queue", "backends.rabbitmq", "backends.nats"},
    "outbound": FOUNDATION | {"events", "observability", "backends.queue", "jobs", "monitoring"},
    "gateway": FOUNDATION
    | {"core", "model", "observability", "client", "protocols.grpc._generated", "features"},
    "protocols.facades": FOUNDATION
    | {"core", "jobs", "events", "features", "security", "observability", "monitoring"},
    "protocols.grpc": FOUNDATION
    | {
        "core",
        "jobs",
        "events",
        "features",
        "security",
        "observability",
        "protocols.facades",
        "protocols.grpc._generated",
        "monitoring",
    },
    "protocols.asyncapi": FOUNDATION,  # the AsyncAPI document, from the settings
    "protocols.http": FOUNDATION
    | {"core", "security", "observability", "protocols.facades", "protocols.http.rest", "protocols.http.sse"}
    | {"protocols.asyncapi"}
    | {"protocols.http.ws"},  # only protocols/http/app.py, the app factory, composes the sub-adapters
    "protocols.http.rest": FOUNDATION
    | {"core", "jobs", "features", "security", "observability", "protocols.facades", "protocols.http"}
    | {"dashboard", "monitoring"},
    "protocols.http.sse": FOUNDATION
    | {"core", "events", "security", "observability", "protocols.facades", "protocols.http"},
    "protocols.http.ws": FOUNDATION
    | {"core", "events", "security", "observability", "protocols.facades", "protocols.http"},
    "protocols.queues": FOUNDATION
    | {"core", "jobs", "security", "observability", "protocols.facades", "backends.queue"},
    "dashboard": set(),
    "app": FOUNDATION
    | {"core", "model", "security", "events", "jobs", "observability", "backends.resolve", "outbound"}
    | {"gateway", "protocols.grpc", "protocols.http", "protocols.facades", "console"}
    | {"protocols.queues", "backends.queue", "monitoring", "features"},
    "client": FOUNDATION | {"events", "jobs", "protocols.grpc._generated"},
    "console": {"client"},
    "cli": FOUNDATION
    | {"app", "backends.resolve", "client", "console", "gateway", "model", "security"}
    | {"protocols.asyncapi", "monitoring"},
    "modelwire": FOUNDATION | {"cli", "client", "model"},  # the public API, __init__.py
    "backends": set(),
    "protocols": set(),
    "__main__": {"cli"},
}
TRANSPORTS = (
    "fastapi",
    "starlette",
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "granian",
    "websockets",
    "httpx",
)
NO_TRANSPORT = {
    "core",
    "model",
    "jobs",
    "events",
    "features",
    "security",
    "backends.urls",
    "backends.sqlite",
    "monitoring",
}
NO_TRANSPORT |= {"backends.redis", "backends.resolve", "observability", "settings", "errors"}
NO_TRANSPORT |= {
    "backends.queue",
    "backends.rabbitmq",
    "backends.nats",
    "protocols.queues",
    "protocols.asyncapi",
}
REGISTRY = "modelwire.model.registry"
REGISTRY_USERS = {"core", "model", "app", "gateway"}
SUB_ADAPTERS = ("protocols.http.rest", "protocols.http.sse", "protocols.http.ws")


def package_of(module: str) -> str:
    """``modelwire.protocols.http.ws.endpoint`` -> ``protocols.http.ws``: the unit arrows are drawn for."""
    parts = module.split(".")[1:]
    if not parts:
        return "modelwire"
    if parts[0] == "protocols" and len(parts) > 1:
        if parts[1] == "http" and len(parts) > 2 and parts[2] in ("rest", "sse", "ws"):
            return ".".join(parts[:3])
        if parts[1] == "grpc" and len(parts) > 2 and parts[2] == "_generated":
            return "protocols.grpc._generated"
        return ".".join(parts[:2])
    if parts[0] == "backends" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """Every module an import statement in ``source`` names, relative ones resolved against ``module``."""
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from modelwire import protocols` names a module too
                yield node.lineno, f"{target}.{alias.name}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {
        module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if "_generated" not in path.parts
    }


MODULES = source_modules()


def internal_imports(name: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for each modelwire module ``name`` imports (the longest existing prefix).

    ``from package import submodule`` counts as importing the submodule only, not the package's
    ``__init__`` (which every module of a package runs anyway).
    """
    path = MODULES[name]
    found: dict[tuple[int, str], None] = {}
    for line, target in imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
        if target != "modelwire" and not target.startswith("modelwire."):
            continue
        while target not in MODULES and "." in target and "_generated" not in target:
            target = target.rsplit(".", 1)[0]
        if target != name:
            found[(line, target)] = None
    for line, target in found:
        names_submodule = any(n == line and t.startswith(target + ".") for n, t in found)
        if not names_submodule:
            yield line, target


def where(name: str, line: int) -> str:
    return f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}"


def test_every_package_has_a_row() -> None:
    assert {package_of(name) for name in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_what_its_package_may(name: str) -> None:
    own = package_of(name)
    allowed = ALLOWED[own] | {own}
    offending = []
    for line, target in internal_imports(name):
        other = package_of(target)
        if other not in allowed:
            offending.append(f"{where(name, line)} ({own}) imports {target} ({other})")
        elif own == "protocols.http" and other in SUB_ADAPTERS and name != "modelwire.protocols.http.app":
            offending.append(f"{where(name, line)}: only the app factory composes the HTTP sub-adapters")
        elif target == REGISTRY and own not in REGISTRY_USERS:
            offending.append(f"{where(name, line)} reaches the model registry: go through the DataPlane")
    assert not offending, "\n".join(offending)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if package_of(n) in NO_TRANSPORT))
def test_core_domain_security_and_backends_import_no_transport(name: str) -> None:
    path = MODULES[name]
    offending = [
        f"{where(name, line)} imports {target}"
        for line, target in imported_modules(path.read_text(encoding="utf-8"), name)
        if target.split(".")[0] in TRANSPORTS
    ]
    assert not offending, "\n".join(offending)


def _cycles() -> list[list[str]]:
    graph = {name: {target for _, target in internal_imports(name)} for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in graph:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert _cycles() == []


@pytest.mark.parametrize(
    ("source", "package", "caught"),
    [
        ("import fastapi", "core", True),
        ("from starlette.responses import JSONResponse", "security", True),
        ("def f():\n    import grpc.aio as aio", "backends.redis", True),  # lazy imports count
        ("if TYPE_CHECKING:\n    from fastapi import Request", "jobs", True),
        ("import numpy, asyncio", "core", False),
    ],
)
def test_the_transport_check_itself(source: str, package: str, caught: bool) -> None:
    found = [t for _, t in imported_modules(source, "modelwire.x.y") if t.split(".")[0] in TRANSPORTS]
    assert bool(found) is caught, found


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("modelwire.protocols.http.ws.endpoint", "protocols.http.ws"),
        ("modelwire.protocols.http.body", "protocols.http"),
        ("modelwire.protocols.grpc._generated.modelwire.v1.jobs_pb2", "protocols.grpc._generated"),
        ("modelwire.backends.redis.jobs", "backends.redis"),
        ("modelwire.app.lifecycle", "app"),
        ("modelwire", "modelwire"),
    ],
)
def test_package_of(module: str, package: str) -> None:
    assert package_of(module) == package


def test_relative_imports_resolve() -> None:
    found = [
        t for _, t in imported_modules("from ..errors import E\nfrom . import x", "modelwire.core.dataplane")
    ]
    assert "modelwire.errors" in found
    assert "modelwire.core.x" in found


def test_importing_the_core_loads_no_transport_at_all() -> None:
    """Catches transitive imports (through ``observability``, a third-party helper)."""
    modules = [name for name in MODULES if package_of(name) in NO_TRANSPORT]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    # modelwire's own client and CLI are loaded by the package's public API (``modelwire/__init__.py``), so
    # only the third-party stacks are checked here; the static walk above covers modelwire's own layers.
    loaded = [name for name in result.stdout.split() if name.split(".")[0] in TRANSPORTS]
    assert not loaded, loaded
