"""ONNX styles on ONNX Runtime or OpenVINO, PyTorch ones on PyTorch or OpenVINO: forced, or the faster one
chosen at load; the same pictures either way, f32 pinned, and memory handed back after large pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from animegan_api.runtime.memory import SplitCost
from animegan_api.runtime.model import Generator
from animegan_api.runtime.onnx_runtimes import OnnxPredictor, OpenVinoPredictor
from animegan_api.runtime.predictors import TorchPredictor
from animegan_api.runtime.strip_memory import StripCost
from conftest import load_file, save_random_generator


def _reference(batch: np.ndarray) -> np.ndarray:
    torch.manual_seed(0)  # the seed the ONNX exports were made with
    with torch.inference_mode():
        return Generator().eval()(torch.from_numpy(batch)).numpy()


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_openvino_runs_the_file_like_the_torch_generator_at_any_size(onnx_models: dict[str, Path], layout: str) -> None:
    style = load_file(onnx_models[layout], onnx_runtime="openvino")
    assert style.runtime == "openvino" and isinstance(style.predictor, OpenVinoPredictor)
    assert str(style.predictor.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 32, 32), (2, 3, 24, 40), (1, 3, 64, 36), (1, 3, 32, 32)):  # new shapes, then one seen
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        assert np.abs(style.predictor(batch) - _reference(batch)).max() < 1e-4


def test_auto_times_both_runtimes_at_load_and_keeps_the_faster(onnx_models: dict[str, Path]) -> None:
    style = load_file(onnx_models["nhwc"], onnx_runtime="auto")
    assert style.runtime_seconds is not None and set(style.runtime_seconds) == {"onnxruntime", "openvino"}
    assert style.runtime == min(style.runtime_seconds, key=style.runtime_seconds.__getitem__)
    assert style.predictor.runtime == style.runtime
    forced = load_file(onnx_models["nhwc"], onnx_runtime="onnxruntime")
    assert isinstance(forced.predictor, OnnxPredictor) and forced.runtime_seconds is None


def test_int8_is_onnx_runtimes_so_auto_leaves_openvino_out(
    onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("animegan_api.runtime.precision.missing_instructions", lambda wanted: "no VNNI here")
    auto = load_file(onnx_models["nhwc"], onnx_runtime="auto", precision="int8")
    assert auto.runtime == "onnxruntime" and auto.runtime_seconds is None
    forced = load_file(onnx_models["nhwc"], onnx_runtime="openvino", precision="int8")
    assert (forced.runtime, forced.precision) == ("openvino", "fp32")
    assert forced.precision_note == "int8 applies to ONNX files run by ONNX Runtime only; this style runs in OpenVINO"


def test_pictures_above_the_measured_size_go_to_onnx_runtime_whose_memory_goes_back(
    onnx_models: dict[str, Path],
) -> None:
    """OpenVINO keeps the memory of the largest picture it ran: it only runs the sizes measured at load."""
    style = load_file(onnx_models["nchw"], onnx_runtime="openvino", measure_memory=True)  # measured up to 128 x 128
    predictor = style.predictor
    assert isinstance(predictor, OpenVinoPredictor) and predictor.keep_pixels == 128 * 128
    assert isinstance(predictor.large, OnnxPredictor) and predictor.large.arena is None
    assert isinstance(style.cost, SplitCost) and style.cost.pixels == 128 * 128
    made: list[Any] = []
    predictor.compiled = _Counting(predictor.compiled, made)
    predictor._idle.clear()
    ran: list[tuple[int, ...]] = []
    large = predictor.large
    predictor.large = lambda batch: ran.append(batch.shape) or large(batch)  # type: ignore[assignment]
    rng = np.random.default_rng(2)
    for shape in ((1, 3, 128, 128), (1, 3, 256, 128), (1, 3, 64, 64)):
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        assert np.abs(predictor(batch) - _reference(batch)).max() < 1e-4
    assert ran == [(1, 3, 256, 128)] and len(made) == 1  # one OpenVINO request, reused


class _Counting:
    """A compiled model whose requests are counted as they are made."""

    def __init__(self, compiled: Any, made: list[Any]) -> None:
        self._compiled, self._made = compiled, made

    def create_infer_request(self) -> Any:
        request = self._compiled.create_infer_request()
        self._made.append(request)
        return request


@pytest.mark.parametrize("upsample", ["align_corners", "tf_legacy"])
def test_openvino_runs_the_pytorch_generator_converted_at_load(tmp_path: Path, upsample: str) -> None:
    """The AnimeGANv2 .pt through OpenVINO: the strip forward's pictures at any size on the rule, batches too;
    larger pictures than were measured go to the strip forward, costed as such."""
    path = save_random_generator(tmp_path / "g.pt", seed=3, sidecar={"name": "g", "upsample": upsample})
    style = load_file(path, torch_runtime="openvino", measure_memory=True)
    predictor = style.predictor
    assert style.runtime == "openvino" and isinstance(predictor, OpenVinoPredictor)
    assert str(predictor.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert isinstance(predictor.large, TorchPredictor) and isinstance(style.cost, SplitCost)
    assert isinstance(style.cost.large, StripCost) and style.cost.pixels == predictor.keep_pixels == 128 * 128
    rng = np.random.default_rng(4)
    for shape in ((1, 3, 32, 32), (2, 3, 24, 40), (1, 3, 64, 36), (1, 3, 256, 96), (1, 3, 32, 32)):
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        assert np.abs(predictor(batch) - predictor.large(batch)).max() < 1e-4, shape


def test_auto_times_pytorch_and_openvino_for_a_pytorch_file_unless_bf16_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_random_generator(tmp_path / "g.pt", sidecar={"name": "g"})
    style = load_file(path, torch_runtime="auto")
    assert style.runtime_seconds is not None and set(style.runtime_seconds) == {"pytorch", "openvino"}
    assert style.runtime == min(style.runtime_seconds, key=style.runtime_seconds.__getitem__)
    assert load_file(path).runtime == "pytorch"  # the default: PyTorch alone
    monkeypatch.setattr("animegan_api.runtime.precision.missing_instructions", lambda wanted: "no AMX here")
    bf16 = load_file(path, torch_runtime="auto", precision="bf16")
    assert (bf16.runtime, bf16.runtime_seconds, bf16.precision_note) == ("pytorch", None, "no AMX here")
    forced = load_file(path, torch_runtime="openvino", precision="bf16")
    assert (forced.runtime, forced.precision) == ("openvino", "fp32")
    assert forced.precision_note == "bf16 applies to PyTorch files only; this style runs in OpenVINO"
