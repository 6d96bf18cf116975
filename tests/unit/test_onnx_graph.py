"""The layout-transpose fold: graphs built here in tf2onnx's shape, and the real AnimeGANv3 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from animegan_api.runtime.onnx_graph import GraphError, fold_layout_transposes, read_graph
from animegan_api.runtime.weights import WeightsError, served_graph

CHANNELS = 4


def _normalisation(
    reshape_to: list[int], div_by_picture: bool = False, reshape_picture: bool = False
) -> onnx.ModelProto:
    """x - mean(x), to NHWC, / sqrt(var + eps) and * sqrt(mean(x^2) + eps) as (N,1,1,C), back to NCHW, + mean.

    With ``div_by_picture`` the Div's other operand is a whole NHWC picture, with ``reshape_picture`` the
    reshaped operand is made from the (N, C, H, W) picture, not from (N, C, 1, 1) statistics: either
    must stop the fold.
    """
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["mean"]),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["squared"]),
        helper.make_node("GlobalAveragePool", ["squared"], ["variance"]),
        helper.make_node("Add", ["variance", "eps"], ["variance_eps"]),
        helper.make_node("Sqrt", ["variance_eps"], ["std"]),
        helper.make_node("Reshape", ["x" if reshape_picture else "std", "to_channels_last"], ["std_nhwc"]),
        helper.make_node("Mul", ["x", "x"], ["x2"]),
        helper.make_node("GlobalAveragePool", ["x2"], ["energy"]),
        helper.make_node("Add", ["energy", "eps"], ["energy_eps"]),
        helper.make_node("Sqrt", ["energy_eps"], ["scale"]),
        helper.make_node("Reshape", ["scale", "to_channels_last"], ["scale_nhwc"]),
        helper.make_node("Transpose", ["centred"], ["centred_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["x"], ["x_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Div", ["centred_nhwc", "x_nhwc" if div_by_picture else "std_nhwc"], ["normalised"]),
        helper.make_node("Mul", ["normalised", "scale_nhwc"], ["scaled"]),
        helper.make_node("Mul", ["half", "scaled"], ["halved"]),  # a scalar on the left
        helper.make_node("Transpose", ["halved"], ["back"], perm=[0, 3, 1, 2]),
        helper.make_node("Add", ["back", "mean"], ["y"]),
    ]
    constants = [
        numpy_helper.from_array(np.array([1e-5], dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(np.array(reshape_to, dtype=np.int64), "to_channels_last"),
    ]
    graph = helper.make_graph(
        nodes,
        "normalisation",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, CHANNELS, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, CHANNELS, None, None])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def _transposes(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "Transpose" for node in model.graph.node)


def test_the_normalisation_is_computed_in_nchw_with_the_same_numbers() -> None:
    model = _normalisation([-1, 1, 1, CHANNELS])
    x = np.random.default_rng(0).standard_normal((2, CHANNELS, 5, 7)).astype(np.float32)
    expected = _run(model, x)
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert fold_layout_transposes(folded) == 1
    onnx.checker.check_model(folded, full_check=True)
    assert _transposes(folded) == 0  # the pair folded; x_nhwc, which nothing read, dropped with the reshapes
    assert not any(node.op_type == "Reshape" for node in folded.graph.node)  # the bypassed reshapes went too
    assert {c.name for c in folded.graph.initializer} == {"eps", "half"}
    np.testing.assert_array_equal(_run(folded, x), expected)


@pytest.mark.parametrize(
    ("reshape_to", "div_by_picture", "reshape_picture"),
    [([-1, 1, 1, CHANNELS], True, False), ([-1, CHANNELS, 1, 1], False, False), ([-1, 1, 1, CHANNELS], False, True)],
    ids=["a-picture-operand", "a-reshape-that-is-not-channels-last", "a-reshape-of-a-picture"],
)
def test_a_chain_the_fold_cannot_prove_is_left_as_it_is(
    reshape_to: list[int], div_by_picture: bool, reshape_picture: bool
) -> None:
    model = _normalisation(reshape_to, div_by_picture, reshape_picture)
    before = model.SerializeToString()
    assert fold_layout_transposes(model) == 0
    assert model.SerializeToString() == before


def test_bytes_that_are_not_a_model_are_a_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(GraphError):
        read_graph(path)
    with pytest.raises(WeightsError, match="not a readable ONNX model"):
        served_graph(path)


@pytest.mark.real_weights
@pytest.mark.parametrize(
    ("name", "pairs"), [("animeganv3_shinkai", 13), ("animeganv3_cute", 1), ("animeganv3_hayao", 0)]
)
def test_the_real_animeganv3_files_fold_to_equal_outputs(shared: Path, name: str, pairs: int) -> None:
    path = shared / "models" / f"{name}.onnx"
    model = onnx.load(str(path))
    assert fold_layout_transposes(model) == pairs
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    folded = ort.InferenceSession(read_graph(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-1, 1, (1, 96, 160, 3)).astype(np.float32)
    feed = {original.get_inputs()[0].name: x}
    np.testing.assert_allclose(folded.run(None, feed)[0], original.run(None, feed)[0], rtol=0, atol=1e-5)
