"""The layout-transpose and InstanceNormalization folds: graphs built here in tf2onnx's shape, and the real
AnimeGANv3 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from animegan_api.runtime.onnx_graph import GraphError, fold_instance_norms, fold_layout_transposes, read_graph
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


def _written_out(form: str, mean_reshaped_to: list[int], squared: str = "x") -> onnx.ModelProto:
    """(x - mean) / sqrt(variance + eps), then a LeakyRelu, op by op as tf2onnx writes it: the dividend's Sub
    reads the pooled mean, the squared difference's reads it through a Reshape, and the quotient is a Div
    (``form`` "div") or a Mul by a Reciprocal ("reciprocal"). ``squared`` is the tensor whose variance is taken
    (or "eps" for an eps that is a graph input rather than a constant)."""
    eps = "eps_input" if squared == "eps" else "eps"
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["mean"]),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("GlobalAveragePool", ["z"], ["z_mean"]),
        helper.make_node("Reshape", ["z_mean" if squared == "z" else "mean", "statistics"], ["mean_again"]),
        helper.make_node("Sub", ["z" if squared == "z" else "x", "mean_again"], ["centred_again"]),
        helper.make_node("Mul", ["centred_again", "centred_again"], ["squared"]),
        helper.make_node("GlobalAveragePool", ["squared"], ["variance"]),
        helper.make_node("Add", ["variance", eps], ["variance_eps"]),
        helper.make_node("Sqrt", ["variance_eps"], ["std"]),
    ]
    if form == "div":
        nodes.append(helper.make_node("Div", ["centred", "std"], ["normalised"]))
    else:
        nodes.append(helper.make_node("Reciprocal", ["std"], ["inverse"]))
        nodes.append(helper.make_node("Mul", ["inverse", "centred"], ["normalised"]))
    nodes.append(helper.make_node("LeakyRelu", ["normalised"], ["y"], alpha=0.2))
    constants = [
        numpy_helper.from_array(np.array([1e-5], dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array(mean_reshaped_to, dtype=np.int64), "statistics"),
    ]
    pictures = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, CHANNELS, None, None]) for name in "xz"]
    if eps != "eps":
        pictures.append(helper.make_tensor_value_info("eps_input", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        nodes,
        "written-out",
        pictures,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, CHANNELS, None, None])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feed(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    feed = {name: (3 * rng.standard_normal((2, CHANNELS, 5, 7)) + 1).astype(np.float32) for name in "xz"}
    if any(i.name == "eps_input" for i in model.graph.input):
        feed["eps_input"] = np.array([1e-5], dtype=np.float32)
    return feed


@pytest.mark.parametrize("form", ["div", "reciprocal"])
def test_a_normalisation_written_out_becomes_one_instance_norm(form: str) -> None:
    model = _written_out(form, [-1, CHANNELS, 1, 1])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, _feed(model))[0]
    assert fold_instance_norms(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node] == ["InstanceNormalization", "LeakyRelu"]
    norm = model.graph.node[0]
    assert list(norm.input) == ["x", "normalised/unit_scale", "normalised/zero_bias"]
    assert helper.get_attribute_value(norm.attribute[0]) == pytest.approx(1e-5)
    assert {c.name for c in model.graph.initializer} == {"normalised/unit_scale", "normalised/zero_bias"}
    folded = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(folded.run(None, _feed(model))[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("mean_reshaped_to", "squared"),
    [([-1, CHANNELS, 1, 1], "z"), ([-1, CHANNELS, 1, 1], "eps"), ([1, CHANNELS, 1, 1], "x")],
    ids=["another-tensors-variance", "an-eps-that-is-not-constant", "a-reshape-that-may-change-the-batch"],
)
def test_a_normalisation_the_fold_cannot_prove_is_left_as_it_is(mean_reshaped_to: list[int], squared: str) -> None:
    model = _written_out("reciprocal", mean_reshaped_to, squared)
    before = model.SerializeToString()
    assert fold_instance_norms(model) == 0
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
    ("name", "pairs", "norms"),
    [("animeganv3_shinkai", 13, 13), ("animeganv3_cute", 1, 1), ("animeganv3_hayao", 0, 13)],
)
def test_the_real_animeganv3_files_fold_to_equal_outputs(shared: Path, name: str, pairs: int, norms: int) -> None:
    path = shared / "models" / f"{name}.onnx"
    model = onnx.load(str(path))
    assert fold_layout_transposes(model) == pairs
    assert fold_instance_norms(model) == norms
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    folded = ort.InferenceSession(read_graph(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-1, 1, (1, 96, 160, 3)).astype(np.float32)
    feed = {original.get_inputs()[0].name: x}
    np.testing.assert_allclose(folded.run(None, feed)[0], original.run(None, feed)[0], rtol=0, atol=1e-5)
