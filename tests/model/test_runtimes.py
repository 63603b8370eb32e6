from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
import skops.io as sio
from onnx import TensorProto, helper, numpy_helper
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from modelwire import ConfigurationError, Datatype, InvalidInputError, Model, TensorSpec
from modelwire.model.runner import ModelRunner
from modelwire.model.runtimes import OnnxModel, SklearnModel, import_model_class

# -- scikit-learn files -------------------------------------------------------------------------------

X = np.array([[0.0, 0.1], [0.2, 0.0], [0.1, 0.3], [2.0, 2.1], [2.2, 1.9], [1.8, 2.3]])
Y = np.array([0, 0, 0, 1, 1, 1])


@pytest.fixture
def classifier() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


def loaded(model: Model) -> Model:
    model.load()
    return model


def test_sklearn_skops_classifier(tmp_path: Path, classifier: LogisticRegression) -> None:
    path = tmp_path / "clf.skops"
    sio.dump(classifier, path)
    model = loaded(SklearnModel("clf", path=path))

    rows = [[0.1, 0.1], [2.0, 2.0], [1.0, 1.2]]
    out = model.predict(rows)

    assert [o["label"] for o in out] == classifier.predict(np.array(rows)).tolist()
    np.testing.assert_allclose([o["probabilities"] for o in out], classifier.predict_proba(np.array(rows)))
    assert all(isinstance(o["label"], int) for o in out)  # numpy scalars would not serialise
    info = model.info()
    assert info.platform == "scikit-learn"
    assert info.inputs == (TensorSpec("input", Datatype.FP32, (-1, 2)),)
    assert info.outputs == (
        TensorSpec("label", Datatype.INT64),
        TensorSpec("probabilities", Datatype.FP64, (-1, 2)),
    )


def test_sklearn_joblib_regressor(tmp_path: Path) -> None:
    regressor = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) + 0.5)
    path = tmp_path / "reg.joblib"
    joblib.dump(regressor, path)
    model = loaded(SklearnModel("reg", path=path))

    out = model.predict([[1.0, 1.0], [3.0, 0.0]])

    np.testing.assert_allclose([o["label"] for o in out], [1.5, 6.5])
    assert all(set(o) == {"label"} for o in out)  # no predict_proba, no probabilities
    assert model.info().outputs == (TensorSpec("label", Datatype.FP64),)


def test_sklearn_text_pipeline_takes_strings(tmp_path: Path) -> None:
    pipeline = Pipeline([("vec", CountVectorizer()), ("clf", LogisticRegression())])
    pipeline.fit(
        ["good great fine", "great good", "bad awful", "awful bad poor"], ["pos", "pos", "neg", "neg"]
    )
    path = tmp_path / "text.skops"
    sio.dump(pipeline, path)
    model = loaded(SklearnModel("text", path=path))

    out = model.predict(["good", "awful"])

    assert [o["label"] for o in out] == ["pos", "neg"]
    info = model.info()
    assert info.inputs == (TensorSpec("input", Datatype.BYTES, (-1,)),)
    assert info.outputs[0] == TensorSpec("label", Datatype.BYTES)


TRANSFORMS: list[int] = []


def _counted(rows: Any) -> Any:
    TRANSFORMS.append(rows.shape[0])
    return rows


@pytest.mark.parametrize("final", ["logistic", "forest"])
def test_sklearn_pipeline_transforms_once_per_batch_with_the_same_answers(tmp_path: Path, final: str) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [f"{w} {v} film" for w in ("good", "great", "bad", "awful", "fine") for v in ("really", "so", "")]
    labels = ["pos" if t.split()[0] in ("good", "great", "fine") else "neg" for t in texts]
    forest = RandomForestClassifier(n_estimators=7, random_state=0)
    estimator = LogisticRegression() if final == "logistic" else forest
    pipeline = Pipeline(
        [("tfidf", TfidfVectorizer()), ("count", FunctionTransformer(_counted)), ("clf", estimator)]
    ).fit(texts, labels)
    path = tmp_path / "text.joblib"
    joblib.dump(pipeline, path)
    model = loaded(SklearnModel("text", path=path))
    batch = [*texts, "good awful", "unseen words only", ""]
    TRANSFORMS.clear()

    out = model.predict(batch)

    assert [len(batch)] == TRANSFORMS  # one pass through the transforms for labels and probabilities
    assert model._labels_from_probabilities is (final == "forest")  # type: ignore[attr-defined]
    assert [o["label"] for o in out] == pipeline.predict(batch).tolist()
    assert [o["probabilities"] for o in out] == pipeline.predict_proba(batch).tolist()  # exactly equal


async def test_sklearn_text_pipeline_refuses_what_is_not_text(tmp_path: Path) -> None:
    pipeline = Pipeline([("vec", CountVectorizer()), ("clf", LogisticRegression())])
    pipeline.fit(["good great", "great good", "bad awful", "awful bad"], ["pos", "pos", "neg", "neg"])
    path = tmp_path / "text.joblib"
    joblib.dump(pipeline, path)
    runner = ModelRunner(loaded(SklearnModel("text", path=path)))
    for batch in ([5], [None], [["a", "b"]], ["good", 5]):
        with pytest.raises(InvalidInputError, match="must be text"):
            await runner.run(batch)
    assert [o["label"] for o in await runner.run(["good"])] == ["pos"]


async def test_sklearn_rows_of_the_wrong_width_are_invalid_input(
    tmp_path: Path, classifier: LogisticRegression
) -> None:
    path = tmp_path / "clf.skops"
    sio.dump(classifier, path)
    runner = ModelRunner(loaded(SklearnModel("clf", path=path)))
    for batch in ([[1.0, 2.0, 3.0]], [[1.0, 2.0], [1.0]], [["a", "b"]]):
        with pytest.raises(InvalidInputError):
            await runner.run(batch)


def test_sklearn_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SklearnModel("gone", path=tmp_path / "gone.skops").load()


def test_sklearn_skops_file_with_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.skops"
    sio.dump(FunctionTransformer(func=os.system), path)
    with pytest.raises(ConfigurationError, match=r"posix\.system|nt\.system"):
        SklearnModel("evil", path=path).load()


def test_sklearn_corrupt_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.skops"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ConfigurationError, match=r"corrupt\.skops"):
        SklearnModel("corrupt", path=path).load()


# -- ONNX ----------------------------------------------------------------------------------------------

W = np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]], dtype=np.float32)
B = np.array([0.25, -1.0], dtype=np.float32)


def save_onnx(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def linear_onnx(tmp_path: Path) -> Path:
    """Y = X·W + b, with a dynamic batch dimension."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "b"], ["Y"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "b")],
    )
    return save_onnx(graph, tmp_path / "linear.onnx")


@pytest.fixture
def two_input_onnx(tmp_path: Path) -> Path:
    """sum = a + b, product = a * b (int64 a, float b cast to match)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["a"], ["a_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a_float", "b"], ["sum"]),
            helper.make_node("Mul", ["a_float", "b"], ["product"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("product", TensorProto.FLOAT, ["N", 2]),
        ],
    )
    return save_onnx(graph, tmp_path / "two.onnx")


def test_onnx_linear_model_matches_numpy(linear_onnx: Path) -> None:
    model = loaded(OnnxModel("linear", path=linear_onnx))
    rows = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5], [10.0, 0.0, 0.0]]

    out = model.predict(rows)

    expected = np.array(rows, dtype=np.float32) @ W + B
    np.testing.assert_allclose([o["Y"] for o in out], expected, rtol=1e-6)
    info = model.info()
    assert info.platform == "onnxruntime"
    assert info.inputs == (TensorSpec("X", Datatype.FP32, (-1, 3)),)
    assert info.outputs == (TensorSpec("Y", Datatype.FP32, (-1, 2)),)


def test_onnx_multi_input_model_takes_dict_instances(two_input_onnx: Path) -> None:
    model = loaded(OnnxModel("two", path=two_input_onnx))
    batch = [{"a": [1, 2], "b": [0.5, 0.25]}, {"b": [2.0, -1.0], "a": [3, -4]}]

    out = model.predict(batch)

    a = np.array([[1, 2], [3, -4]], dtype=np.float32)
    b = np.array([[0.5, 0.25], [2.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose([o["sum"] for o in out], a + b)
    np.testing.assert_allclose([o["product"] for o in out], a * b)
    assert {spec.name: spec.datatype for spec in model.info().inputs} == {
        "a": Datatype.INT64,
        "b": Datatype.FP32,
    }


@pytest.mark.parametrize(
    "batch",
    [[{"a": [1, 2]}], [{"a": [1, 2], "b": [1.0, 2.0], "c": [0]}], [[1, 2]]],
    ids=["missing key", "extra key", "not a mapping"],
)
async def test_onnx_multi_input_model_rejects_bad_instances(two_input_onnx: Path, batch: list[Any]) -> None:
    runner = ModelRunner(loaded(OnnxModel("two", path=two_input_onnx)))
    with pytest.raises(InvalidInputError):
        await runner.run(batch)


async def test_onnx_rows_of_the_wrong_width_are_invalid_input(linear_onnx: Path) -> None:
    runner = ModelRunner(loaded(OnnxModel("linear", path=linear_onnx)))
    with pytest.raises(InvalidInputError):
        await runner.run([[1.0, 2.0]])


def test_onnx_from_skl2onnx_matches_sklearn(tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    regressor = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) + 0.5)
    onnx_model = to_onnx(regressor, X[:1].astype(np.float32), target_opset=17)
    path = tmp_path / "reg.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    model = loaded(OnnxModel("reg", path=path))
    (name,) = [spec.name for spec in model.info().outputs]

    rows = [[1.0, 1.0], [3.0, 0.0]]
    out = model.predict(rows)

    np.testing.assert_allclose(np.ravel([o[name] for o in out]), regressor.predict(np.array(rows)), rtol=1e-5)


def test_onnx_without_the_onnx_extra_names_it(linear_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigurationError, match=r"linear.onnx needs the 'onnx' extra.*modelwire\[onnx\]"):
        OnnxModel("linear", path=linear_onnx).load()


@pytest.mark.parametrize("missing", ["sklearn", "skops.io", "joblib"])
@pytest.mark.parametrize("suffix", [".skops", ".joblib"])
def test_sklearn_files_without_the_sklearn_extra_name_it(
    tmp_path: Path, classifier: LogisticRegression, monkeypatch: pytest.MonkeyPatch, missing: str, suffix: str
) -> None:
    path = tmp_path / f"clf{suffix}"
    if suffix == ".skops":
        sio.dump(classifier, path)
    else:
        joblib.dump(classifier, path)
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(
        ConfigurationError, match=rf"clf\{suffix} needs the 'sklearn' extra.*modelwire\[sklearn\]"
    ):
        SklearnModel("clf", path=path).load()


def test_onnx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        OnnxModel("gone", path=tmp_path / "gone.onnx").load()


# -- plain Python classes ------------------------------------------------------------------------------

USER_MODULE = """
from modelwire import Model


class Reverse(Model):
    def predict(self, batch):
        return [text[::-1] for text in batch]


NOT_A_MODEL = 3
"""


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable ``userpkg.models`` package in a temp folder, as a user's code would be."""
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(USER_MODULE)
    (package / "broken.py").write_text("def oops(:\n")
    (package / "raises.py").write_text("raise RuntimeError('import-time failure')\n")
    # Not monkeypatch.syspath_prepend: it calls pkg_resources when some module is loaded as it, and the
    # pkg_resources that kosoku (the Autobahn suite) puts in sys.modules lacks what it calls.
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    yield "userpkg"
    for name in [m for m in sys.modules if m == "userpkg" or m.startswith("userpkg.")]:
        del sys.modules[name]


def test_import_model_class_from_a_package(user_package: str) -> None:
    cls = import_model_class(f"{user_package}.models:Reverse")
    model = cls("rev")
    assert issubclass(cls, Model)
    assert model.predict(["abc"]) == ["cba"]


def test_import_model_class_from_the_test_doubles() -> None:
    from tests.models import EchoModel

    assert import_model_class("tests.models:EchoModel") is EchoModel


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("userpkg.models", "package.module:ClassName"),
        ("userpkg.models:", "package.module:ClassName"),
        (":Reverse", "package.module:ClassName"),
        ("userpkg.nothing_here:Reverse", "cannot import"),
        ("no_such_top_level_package_xyz:Model", "cannot import"),
        ("userpkg.models:Missing", "not a subclass"),
        ("userpkg.models:NOT_A_MODEL", "not a subclass"),
        ("modelwire:Datatype", "not a subclass"),
        ("userpkg.broken:Model", "cannot import"),
        ("userpkg.raises:Model", "cannot import"),
    ],
)
def test_import_model_class_bad_sources(user_package: str, source: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        import_model_class(source)
