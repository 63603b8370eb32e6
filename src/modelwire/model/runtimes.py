"""Built-in runtimes: scikit-learn files, ONNX files (onnxruntime), and user ``Model`` classes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelwire.errors import ConfigurationError, InvalidInputError
from modelwire.model.base import Datatype, Model, TensorSpec
from modelwire.model.repository import missing_extra

__all__ = ["OnnxModel", "SklearnModel", "import_model_class"]

_ONNX_TYPES = {
    "tensor(float)": (Datatype.FP32, np.float32),
    "tensor(double)": (Datatype.FP64, np.float64),
    "tensor(int64)": (Datatype.INT64, np.int64),
    "tensor(int32)": (Datatype.INT32, np.int32),
    "tensor(int8)": (Datatype.INT8, np.int8),
    "tensor(uint8)": (Datatype.UINT8, np.uint8),
    "tensor(bool)": (Datatype.BOOL, np.bool_),
    "tensor(string)": (Datatype.BYTES, np.object_),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _stack(batch: Sequence[Any], dtype: Any, name: str) -> np.ndarray[Any, Any]:
    try:
        array = np.asarray(batch, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"input {name!r} must be rows of equal length of numbers: {exc}") from exc
    if array.ndim == 1 and dtype is not np.object_:
        array = array.reshape(len(batch), -1)
    return array


def _texts(batch: Sequence[Any]) -> list[str]:
    """A text pipeline's rows: strings only (anything else would fail deep inside the vectorizer)."""
    for item in batch:
        if not isinstance(item, str):
            raise InvalidInputError(f"input 'input' must be text (a string), not {type(item).__name__}")
    return list(batch)


class SklearnModel(Model):
    """Any scikit-learn estimator or pipeline file: ``.skops`` (safe) or ``.joblib``/``.pkl`` (pickle).

    Instances are feature rows; each output is ``{"label": ..., "probabilities": [...]}`` (the latter when
    the estimator has ``predict_proba``). Pickle files run code when loaded: serve only files you trust.

    A batch goes through a pipeline's transforms once, and both the labels and the probabilities are read
    from the final estimator on that one result (``pipeline.predict`` and ``pipeline.predict_proba`` would
    run every transform twice). A forest's labels are taken from its probabilities, as its own ``predict``
    does. Answers are those of ``predict`` and ``predict_proba``, exactly.
    """

    platform: ClassVar[str] = "scikit-learn"

    def __init__(self, name: str, version: str = "1", *, path: Path, **options: Any) -> None:
        super().__init__(name, version, **options)
        self.path = path
        self.estimator: Any = None
        self._transforms: Any = None  # a pipeline's steps but the last, run once per batch
        self._final: Any = None
        self._labels_from_probabilities = False
        self._inputs: tuple[TensorSpec, ...] = (TensorSpec("input", Datatype.FP32, (-1, -1)),)
        self._outputs: tuple[TensorSpec, ...] = (TensorSpec("label", Datatype.INT64),)

    def load(self) -> None:
        if not self.path.is_file():
            raise ConfigurationError(f"model file {self.path} does not exist")
        try:
            self.estimator = self._read()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"could not load {self.path}: {exc!r}") from exc
        self._transforms, self._final = _split_pipeline(self.estimator)
        self._labels_from_probabilities = _predict_is_argmax_of_proba(self._final)
        features = getattr(self.estimator, "n_features_in_", -1)
        dtype = Datatype.BYTES if features == -1 and _takes_text(self.estimator) else Datatype.FP32
        shape = (-1,) if dtype is Datatype.BYTES else (-1, int(features))
        self._inputs = (TensorSpec("input", dtype, shape),)
        outputs = [TensorSpec("label", _label_type(self.estimator))]
        if hasattr(self.estimator, "predict_proba"):
            classes = len(getattr(self.estimator, "classes_", []))
            outputs.append(TensorSpec("probabilities", Datatype.FP64, (-1, classes or -1)))
        self._outputs = tuple(outputs)

    def _read(self) -> Any:
        try:
            import joblib  # type: ignore[import-untyped]
            import sklearn  # noqa: F401 - the estimator's own library, checked before a file is read
            import skops.io as sio
        except ImportError as exc:
            raise missing_extra("sklearn", f"serving {self.path.name}", exc) from exc
        if self.path.suffix != ".skops":
            return joblib.load(self.path)

        untrusted = sio.get_untrusted_types(file=self.path)
        refused = sorted(t for t in untrusted if not t.startswith(("sklearn.", "numpy.")))
        if refused:
            # Only estimator and array types are trusted: anything else (a function, a user class) could
            # run code when the file is loaded.
            raise ConfigurationError(f"{self.path} contains types modelwire does not trust: {refused}")
        return sio.load(self.path, trusted=untrusted)

    def info(self) -> Any:
        info = super().info()
        info.inputs, info.outputs = self._inputs, self._outputs
        return info

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        text = self._inputs[0].datatype is Datatype.BYTES
        rows: Any = _texts(batch) if text else _stack(batch, np.float64, "input")
        final = self._final
        features = rows if self._transforms is None else self._transforms.transform(rows)
        if not hasattr(final, "predict_proba"):
            return [{"label": _jsonable(label)} for label in final.predict(features)]
        probabilities = final.predict_proba(features)
        if self._labels_from_probabilities:
            labels = final.classes_.take(np.argmax(probabilities, axis=1), axis=0)
        else:
            labels = final.predict(features)
        return [
            {"label": _jsonable(label), "probabilities": _jsonable(p)}
            for label, p in zip(labels, probabilities, strict=True)
        ]


def _split_pipeline(estimator: Any) -> tuple[Any, Any]:
    """``(transforms, final)``: a pipeline's steps but the last as one pipeline (None if there are none)."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        final = estimator.steps[-1][1]
        if final not in (None, "passthrough"):
            return estimator[:-1], final
    return None, estimator


def _predict_is_argmax_of_proba(estimator: Any) -> bool:
    """Whether ``predict`` is ``classes_[argmax(predict_proba)]``, as in scikit-learn's forests."""
    ensemble = sys.modules.get("sklearn.ensemble")  # loading a forest imported it; nothing else needs to
    if ensemble is None or getattr(estimator, "n_outputs_", None) != 1:
        return False
    return getattr(type(estimator), "predict", None) is ensemble.RandomForestClassifier.predict


def _takes_text(estimator: Any) -> bool:
    steps = getattr(estimator, "steps", None)
    first = steps[0][1] if steps else estimator
    return type(first).__module__.startswith("sklearn.feature_extraction.text")


def _label_type(estimator: Any) -> Datatype:
    classes = getattr(estimator, "classes_", None)
    if classes is not None and np.asarray(classes).dtype.kind in "iu":
        return Datatype.INT64
    if classes is not None and np.asarray(classes).dtype.kind in "US O":
        return Datatype.BYTES
    return Datatype.FP64


class OnnxModel(Model):
    """Any ONNX model, run by onnxruntime on the CPU.

    With one input, an instance is that input's row; with several, a ``{name: row}`` mapping. Each output is
    a ``{output_name: row}`` mapping.
    """

    platform: ClassVar[str] = "onnxruntime"

    def __init__(self, name: str, version: str = "1", *, path: Path, **options: Any) -> None:
        super().__init__(name, version, **options)
        self.path = path
        self.session: Any = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()
        self._dtypes: dict[str, Any] = {}
        self._invalid_argument: type[Exception] = ValueError

    def load(self) -> None:
        try:
            import onnxruntime as ort
            from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
        except ImportError as exc:
            raise missing_extra("onnx", f"serving {self.path.name}", exc) from exc

        self._invalid_argument = InvalidArgument

        if not self.path.is_file():
            raise ConfigurationError(f"model file {self.path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.options.get("threads", 1))
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._inputs = tuple(self._spec(arg) for arg in self.session.get_inputs())
        self._outputs = tuple(self._spec(arg) for arg in self.session.get_outputs())
        self._dtypes = {
            arg.name: _ONNX_TYPES.get(arg.type, (None, np.float32))[1] for arg in self.session.get_inputs()
        }

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        datatype = _ONNX_TYPES.get(arg.type, (Datatype.FP32, None))[0]
        shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        return TensorSpec(arg.name, datatype, shape or (-1,))

    def info(self) -> Any:
        info = super().info()
        info.inputs, info.outputs = self._inputs, self._outputs
        return info

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        names = [spec.name for spec in self._inputs]
        if len(names) == 1:
            feeds = {names[0]: _stack(batch, self._dtypes[names[0]], names[0])}
        else:
            for item in batch:
                if not isinstance(item, dict) or set(item) != set(names):
                    raise InvalidInputError(f"each instance must be a mapping with keys {names}")
            feeds = {n: _stack([item[n] for item in batch], self._dtypes[n], n) for n in names}
        try:
            outputs = self.session.run(None, feeds)
        except self._invalid_argument as exc:  # onnxruntime's word for a wrongly shaped or typed feed
            raise InvalidInputError(f"model {self.name!r} rejected the input: {exc}") from exc
        out_names = [spec.name for spec in self._outputs]
        return [
            {name: _jsonable(values[i]) for name, values in zip(out_names, outputs, strict=True)}
            for i in range(len(batch))
        ]


def import_model_class(path: str) -> type[Model]:
    """Import ``package.module:ClassName`` and check it is a ``Model``."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{path!r} is not of the form package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code: a syntax error or a raise at import time is a bad source too
        raise ConfigurationError(f"cannot import {module_name!r}: {exc!r}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ConfigurationError(f"{path!r} is not a subclass of modelwire.Model")
    return cls
