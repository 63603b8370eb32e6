from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from modelwire import Datatype, InvalidInputError, TensorSpec
from modelwire.core.tensors import (
    NUMPY_TYPES,
    Tensor,
    decode_raw,
    encode_raw,
    instances_to_tensors,
    tensors_to_instances,
)
from modelwire.model.base import ModelInfo

SENTIMENT = ModelInfo(
    "sentiment",
    "1",
    "scikit-learn",
    (TensorSpec("text", Datatype.BYTES),),
    (TensorSpec("sentiment", Datatype.BYTES), TensorSpec("confidence", Datatype.FP32)),
)
TWO_INPUTS = ModelInfo(
    "two",
    "1",
    "onnxruntime",
    (TensorSpec("a", Datatype.INT64, (-1, 2)), TensorSpec("b", Datatype.FP32, (-1, 2))),
    (TensorSpec("sum", Datatype.FP32, (-1, 2)),),
)
ROWS = ModelInfo("rows", "1", "python", (TensorSpec("values", Datatype.FP32, (-1, -1)),), ())

# -- the raw little-endian codec ---------------------------------------------------------------------

NUMERIC_SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 65_534, 65_535],
    "UINT32": [0, 1, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2**64 - 2, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-32_768, -1, 0, 32_767],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [0.5, -1.5, 0.0, 65_504.0],
    "FP32": [0.25, -3.5, 1e-3, 3.0e38],
    "FP64": [0.1, -2.5e-300, 1e300, 0.0],
}


def test_every_numeric_datatype_has_a_sample() -> None:
    assert set(NUMERIC_SAMPLES) == set(NUMPY_TYPES)


@pytest.mark.parametrize("datatype", sorted(NUMERIC_SAMPLES))
def test_numeric_round_trip(datatype: str) -> None:
    values = NUMERIC_SAMPLES[datatype]
    raw = encode_raw(datatype, values)
    assert len(raw) == 4 * np.dtype(NUMPY_TYPES[datatype]).itemsize
    decoded = decode_raw(datatype, raw, [2, 2])
    expected = np.asarray(values, dtype=NUMPY_TYPES[datatype]).tolist()
    assert decoded == expected
    assert [type(v) for v in decoded] == [type(v) for v in expected]  # plain Python scalars


def test_numeric_raw_is_little_endian() -> None:
    assert encode_raw("INT32", [1, 256]) == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    assert decode_raw("FP32", struct.pack("<2f", 1.5, -2.0), [2]) == [1.5, -2.0]


def test_bytes_round_trip() -> None:
    items = [b"I love this product", b"", "caf\u00e9".encode(), bytes(range(256))]
    raw = encode_raw("BYTES", items)
    assert raw[:4] == struct.pack("<I", len(items[0]))
    assert decode_raw("BYTES", raw, [4]) == items
    assert decode_raw("BYTES", raw, [2, 2]) == items


def test_bytes_encodes_strings_as_utf8() -> None:
    raw = encode_raw("BYTES", ["caf\u00e9", "positive"])
    assert decode_raw("BYTES", raw, [2]) == ["caf\u00e9".encode(), b"positive"]


def test_empty_tensors() -> None:
    assert decode_raw("BYTES", b"", [0]) == []
    assert decode_raw("FP32", b"", [0, 3]) == []


@pytest.mark.parametrize(
    ("datatype", "raw", "shape", "message"),
    [
        pytest.param("BYTES", b"\x05\x00", [1], "incomplete length prefix", id="bytes: prefix cut"),
        pytest.param(
            "BYTES", b"\x05\x00\x00\x00abc", [1], "shorter than its length", id="bytes: element cut"
        ),
        pytest.param(
            "BYTES", encode_raw("BYTES", [b"a", b"b"]), [3], "holds 2 elements", id="bytes: too few"
        ),
        pytest.param(
            "BYTES", encode_raw("BYTES", [b"a", b"b"]), [1], "holds 2 elements", id="bytes: too many"
        ),
        pytest.param("FP32", b"\x00" * 8, [3], r"holds 8 bytes .* needs 3", id="fp32: too few"),
        pytest.param("INT64", b"\x00" * 24, [2], r"holds 24 bytes .* needs 2", id="int64: too many"),
        pytest.param("FP32", b"\x00" * 7, [2], "FP32", id="fp32: not a multiple of 4 bytes"),
        pytest.param("INT16", b"\x00" * 3, [1], "INT16", id="int16: odd byte count"),
        pytest.param("FP32", b"", [-1], "negative", id="negative dimension"),
        pytest.param("COMPLEX64", b"\x00" * 8, [1], "unsupported datatype", id="unknown datatype"),
    ],
)
def test_truncated_or_mismatched_raw_data(datatype: str, raw: bytes, shape: list[int], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_raw(datatype, raw, shape)


# -- tensors <-> instances -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        pytest.param([2], [b"I love this product", b"awful"], id="[N] bytes"),
        pytest.param([2, 1], [b"I love this product", b"awful"], id="[N,1] bytes"),
        pytest.param([2], ["I love this product", "awful"], id="[N] already text (JSON)"),
        pytest.param([2, 1], ["I love this product", "awful"], id="[N,1] text"),
    ],
)
def test_sentiment_text_tensor_becomes_one_string_per_instance(shape: list[int], data: list[Any]) -> None:
    tensor = Tensor("text", "BYTES", shape, data)
    assert tensors_to_instances(SENTIMENT, [tensor]) == ["I love this product", "awful"]


def test_invalid_utf8_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="UTF-8"):
        tensors_to_instances(SENTIMENT, [Tensor("text", "BYTES", [1], [b"\xff\xfe"])])


@pytest.mark.parametrize(
    ("tensors", "match", "field"),
    [
        pytest.param(
            [Tensor("text", "FP32", [1], [1.0])],
            "must be BYTES, not FP32",
            "inputs.text.datatype",
            id="wrong datatype",
        ),
        pytest.param(
            [Tensor("texts", "BYTES", [1], [b"x"])], "unknown input 'texts'", "inputs", id="unknown input"
        ),
        pytest.param([], "no inputs", "inputs", id="no inputs"),
        pytest.param(
            [Tensor("text", "BYTES", [3], [b"x"])],
            "has 1 elements but shape",
            "inputs.text.data",
            id="shape needs more data",
        ),
        pytest.param([Tensor("text", "BYTES", [], [b"x"])], "batch dimension", None, id="scalar"),
        pytest.param(
            [Tensor("text", "BYTES", [1], [b"x"]), Tensor("extra", "BYTES", [1], [b"y"])],
            "unknown",
            "inputs",
            id="an extra input",
        ),
    ],
)
def test_bad_tensors_for_the_sentiment_model(tensors: list[Tensor], match: str, field: str | None) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        tensors_to_instances(SENTIMENT, tensors)
    assert info.value.field == field


@pytest.mark.parametrize(
    "shape",
    [[-1, -2], [2, -1, -1], [-2, 1]],
    ids=["two negatives", "negative inner dims", "negative batch"],
)
def test_negative_dimensions_are_invalid_input(shape: list[int]) -> None:
    with pytest.raises(InvalidInputError, match="negative"):
        tensors_to_instances(ROWS, [Tensor("values", "FP32", shape, [1.0, 2.0])])


def test_rows_of_a_two_dimensional_input() -> None:
    tensor = Tensor("values", "FP32", [2, 3], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert tensors_to_instances(ROWS, [tensor]) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_higher_rank_instances_keep_their_shape() -> None:
    tensor = Tensor("values", "FP32", [1, 2, 2], [1.0, 2.0, 3.0, 4.0])
    assert tensors_to_instances(ROWS, [tensor]) == [[[1.0, 2.0], [3.0, 4.0]]]


def test_several_inputs_become_one_mapping_per_instance() -> None:
    tensors = [
        Tensor("b", "FP32", [2, 2], [0.5, 1.5, 2.5, 3.5]),
        Tensor("a", "INT64", [2, 2], [1, 2, 3, 4]),
    ]
    assert tensors_to_instances(TWO_INPUTS, tensors) == [
        {"b": [0.5, 1.5], "a": [1, 2]},
        {"b": [2.5, 3.5], "a": [3, 4]},
    ]


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        pytest.param([Tensor("a", "INT64", [1, 2], [1, 2])], "missing \\['b'\\]", id="missing"),
        pytest.param(
            [
                Tensor("a", "INT64", [1, 2], [1, 2]),
                Tensor("b", "FP32", [1, 2], [1.0, 2.0]),
                Tensor("c", "FP32", [1, 2], [1.0, 2.0]),
            ],
            "unknown \\['c'\\]",
            id="unknown",
        ),
        pytest.param(
            [Tensor("a", "INT64", [1, 2], [1, 2]), Tensor("b", "FP32", [2, 2], [1.0, 2.0, 3.0, 4.0])],
            "same batch size",
            id="batch sizes differ",
        ),
        pytest.param(
            [Tensor("a", "FP32", [1, 2], [1.0, 2.0]), Tensor("b", "FP32", [1, 2], [1.0, 2.0])],
            "must be INT64",
            id="wrong datatype",
        ),
    ],
)
def test_bad_multi_input_requests(tensors: list[Tensor], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        tensors_to_instances(TWO_INPUTS, tensors)


SENTIMENT_OUTPUTS = [
    {"sentiment": "positive", "confidence": 0.93},
    {"sentiment": "negative", "confidence": 0.71},
]


def test_sentiment_outputs_become_one_tensor_per_output() -> None:
    sentiment, confidence = instances_to_tensors(SENTIMENT, SENTIMENT_OUTPUTS)
    assert sentiment == Tensor("sentiment", "BYTES", [2], ["positive", "negative"])
    assert confidence == Tensor("confidence", "FP32", [2], [0.93, 0.71])


def test_requested_outputs_are_chosen_and_ordered() -> None:
    (confidence,) = instances_to_tensors(SENTIMENT, SENTIMENT_OUTPUTS, ["confidence"])
    assert confidence.name == "confidence"
    with pytest.raises(InvalidInputError, match="unknown outputs \\['label'\\]") as info:
        instances_to_tensors(SENTIMENT, SENTIMENT_OUTPUTS, ["label"])
    assert info.value.field == "outputs"


def test_plain_outputs_take_the_declared_output_name() -> None:
    info = ModelInfo("sum", "1", "python", (), (TensorSpec("total", Datatype.FP64),))
    assert instances_to_tensors(info, [6.0, 0.5]) == [Tensor("total", "FP64", [2], [6.0, 0.5])]


def test_row_outputs_keep_their_shape_and_undeclared_ones_infer_a_type() -> None:
    info = ModelInfo("m", "1", "python", (), ())
    (tensor,) = instances_to_tensors(info, [{"vec": [1, 2, 3]}, {"vec": [4, 5, 6]}])
    assert tensor == Tensor("vec", "INT64", [2, 3], [1, 2, 3, 4, 5, 6])
    (flags,) = instances_to_tensors(info, [{"ok": True}])
    assert flags.datatype == "BOOL"


def test_tensors_survive_a_round_trip_through_the_raw_codec() -> None:
    sentiment, confidence = instances_to_tensors(SENTIMENT, SENTIMENT_OUTPUTS)
    assert decode_raw("BYTES", encode_raw("BYTES", sentiment.data), sentiment.shape) == [
        b"positive",
        b"negative",
    ]
    restored = decode_raw("FP32", encode_raw("FP32", confidence.data), confidence.shape)
    np.testing.assert_allclose(restored, [0.93, 0.71], rtol=1e-6)
