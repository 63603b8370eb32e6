"""The public API is exactly ``modelwire.__all__`` (as httpx checks its own)."""

from __future__ import annotations

import importlib.resources

import modelwire


def test_all_names_exist_and_nothing_public_is_unlisted() -> None:
    for name in modelwire.__all__:
        assert hasattr(modelwire, name), name
    public = {name for name in vars(modelwire) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(modelwire, name)).__name__ == "module"}
    assert public - modules - set(modelwire.__all__) == set()


def test_core_names_are_exported() -> None:
    for name in (
        "Model",
        "TensorSpec",
        "Datatype",
        "Settings",
        "Client",
        "AsyncClient",
        "run",
        "ModelwireError",
        "ErrorCode",
        "Event",
        "StreamedPrediction",
        "JobHandle",
        "AsyncJobHandle",
        "JobInfo",
        "JobResult",
        "JobEvent",
    ):
        assert name in modelwire.__all__
    assert issubclass(modelwire.ModelNotFoundError, modelwire.ModelwireError)


def test_the_package_says_it_is_typed() -> None:
    """``py.typed`` ships with the package, so users' type checkers read its annotations (PEP 561)."""
    assert importlib.resources.files("modelwire").joinpath("py.typed").is_file()
