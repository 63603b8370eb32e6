"""docs/examples/client_jobs.py, the client code docs/jobs.md shows, against a real server over both wires."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.serving import ServeModule, ThreadedServer

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "client_jobs.py"


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    """Overrides the folder's: the default model only (its jobs stay in this module's data dir)."""
    return serve_module()


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("client_jobs", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("wire", ["http", "grpc"])
def test_score_file(
    server: ThreadedServer, wire: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("text\nI love this product\nTerrible, a waste of money\nWonderful, I love it\n\n")
    url = server.grpc_url if wire == "grpc" else server.http_url
    counts = load_example().score_file(url, path)
    assert counts == {"positive": 2, "negative": 1}
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("succeeded: {'positive': 2, 'negative': 1}")
    assert any(line.startswith("succeeded 3/3") for line in out)


@pytest.mark.parametrize("wire", ["http", "grpc"])
async def test_score_texts(server: ThreadedServer, wire: str) -> None:
    url = server.grpc_url if wire == "grpc" else server.http_url
    labels = await load_example().score_texts(url, ["I love this product", "Terrible, a waste of money"])
    assert labels == ["positive", "negative"]
