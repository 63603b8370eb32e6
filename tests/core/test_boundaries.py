"""The core knows no transport: ``core/``, ``model/``, ``jobs/``, ``events/`` import no web or RPC stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelwire

PACKAGE = Path(modelwire.__file__).parent
CORE_PACKAGES = [name for name in ("core", "model", "jobs", "events") if (PACKAGE / name).is_dir()]
FORBIDDEN = ("fastapi", "starlette", "grpc", "granian", "websockets", "httpx")
# modelwire's own transport layers would drag the stacks in behind the import
FORBIDDEN_INTERNAL = ("modelwire.protocols", "modelwire.server", "modelwire.client", "modelwire.cli")


def is_forbidden(module: str) -> bool:
    top = module.split(".")[0]
    if top in FORBIDDEN or top.startswith("grpc_"):
        return True
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN_INTERNAL)


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """Every module an import statement in ``source`` names, relative ones resolved against ``module``."""
    package = module.rsplit(".", 1)[0]
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


def core_modules() -> list[Path]:
    return sorted(path for name in CORE_PACKAGES for path in (PACKAGE / name).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_core_packages_exist() -> None:
    assert {"core", "model"} <= set(CORE_PACKAGES)
    assert len(core_modules()) >= 8


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_transport(path: Path) -> None:
    name = module_name(path)
    offending = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for line, target in imported_modules(path.read_text(encoding="utf-8"), name)
        if is_forbidden(target)
    ]
    assert not offending, "\n".join(offending)


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("import fastapi", True),
        ("from starlette.responses import JSONResponse", True),
        ("import grpc.aio as aio", True),
        ("from grpc_health.v1 import health_pb2", True),
        ("import granian", True),
        ("from websockets.asyncio.server import serve", True),
        ("def f():\n    import httpx", True),  # lazy imports count
        ("if TYPE_CHECKING:\n    from fastapi import Request", True),
        ("from ..protocols.rest import app", True),
        ("from modelwire import server", True),
        ("from modelwire.client import AsyncClient", True),
        ("import grpcio_tools_like", False),
        ("import numpy, asyncio", False),
        ("from ..errors import ModelwireError", False),
        ("from . import tensors", False),
        ("from modelwire.model.base import Model", False),
    ],
)
def test_the_check_itself(source: str, caught: bool) -> None:
    found = [
        target for _, target in imported_modules(source, "modelwire.core.dataplane") if is_forbidden(target)
    ]
    assert bool(found) is caught, found


def test_importing_the_core_loads_no_transport_at_all() -> None:
    """Catches transitive imports (through ``services``, ``observability``, a third-party helper)."""
    modules = [module_name(path) for path in core_modules()] + ["modelwire.services"]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    # modelwire's own client and CLI are loaded by the package's public API (``modelwire/__init__.py``), so
    # only the third-party stacks are checked here; the static walk above covers modelwire's own layers.
    loaded = [
        name for name in result.stdout.split() if is_forbidden(name) and not name.startswith("modelwire")
    ]
    assert not loaded, loaded
