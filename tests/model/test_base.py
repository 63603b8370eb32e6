from __future__ import annotations

from modelwire import Datatype, Model, TensorSpec
from tests.models import EchoModel, SumModel


def test_tensor_spec_describes_itself() -> None:
    spec = TensorSpec("values", Datatype.FP32, (-1, 3))
    assert spec.to_dict() == {"name": "values", "datatype": "FP32", "shape": [-1, 3]}
    assert TensorSpec("text", Datatype.BYTES).shape == (-1,)


def test_info_reports_the_declared_tensors() -> None:
    info = EchoModel("echo", "4", delay_s=0.0).info()
    assert (info.name, info.version, info.platform) == ("echo", "4", "python")
    assert [spec.name for spec in info.inputs] == ["text"]
    assert [(spec.name, spec.datatype) for spec in info.outputs] == [
        ("echo", Datatype.BYTES),
        ("length", Datatype.INT64),
    ]
    assert info.extra == {}


def test_constructing_a_model_has_no_side_effects() -> None:
    model = Model("plain", "2", threads=4)
    assert (model.name, model.version, model.options) == ("plain", "2", {"threads": 4})
    assert model.load() is None
    assert model.unload() is None


def test_is_async_follows_predict() -> None:
    assert SumModel("sum").is_async
    assert not EchoModel().is_async
