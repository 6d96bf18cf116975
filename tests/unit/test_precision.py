from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animegan_api.runtime import precision
from animegan_api.runtime.onnx_runtimes import OnnxPredictor
from conftest import load_file, save_random_generator

VNNI = frozenset({"avx2", "fma", "avx512_vnni"})
AVX2_ONLY = frozenset({"avx2", "fma"})


def fake_cpu(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda source=precision.CPUINFO: flags)


def test_bf16_is_refused_on_a_cpu_without_avx512_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, AVX2_ONLY)
    style = load_file(save_random_generator(tmp_path / "r.pt"), precision="bf16")
    assert style.precision == "fp32" and "AVX-512 BF16" in style.precision_note
    assert style.predictor.bf16 is False


def test_bf16_runs_when_the_cpu_has_it_and_the_output_stays_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cpu(monkeypatch, frozenset({"avx512_bf16"}))
    batches = [np.random.default_rng(1).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)]
    path = save_random_generator(tmp_path / "r.pt")
    style = load_file(path, precision="bf16", check_batches=batches)
    assert (style.precision, style.precision_note, style.predictor.bf16) == ("bf16", None, True)
    fp32 = load_file(path).predictor(batches[0])
    assert precision.psnr(style.predictor(batches[0]), fp32) >= precision.MIN_PSNR_DB


def test_bf16_leaves_onnx_styles_alone(onnx_models: dict[str, Path]) -> None:
    style = load_file(onnx_models["nchw"], precision="bf16")
    assert style.precision == "fp32" and "PyTorch files only" in style.precision_note


def test_int8_is_refused_without_vnni_before_anything_is_quantised(
    onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cpu(monkeypatch, AVX2_ONLY)

    def no_quantising(*args: object) -> None:
        raise AssertionError("quantised on a CPU without VNNI")

    monkeypatch.setattr("animegan_api.runtime.quantize.int8_session", no_quantising)
    style = load_file(onnx_models["nhwc"], precision="int8")
    assert style.precision == "fp32" and "lacks VNNI" in style.precision_note


def test_int8_leaves_pytorch_styles_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, VNNI)
    style = load_file(save_random_generator(tmp_path / "r.pt"), precision="int8")
    assert style.precision == "fp32" and "ONNX files run by ONNX Runtime only" in style.precision_note


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_int8_with_vnni_quantises_the_convolutions_and_serves_them_when_close(
    onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """The quantiser really runs (calibrated in the graph's layout); the copy is served only above the line."""
    fake_cpu(monkeypatch, VNNI)
    monkeypatch.setattr(precision, "MIN_PSNR_DB", 0.0)
    batches = [np.random.default_rng(2).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)]
    fp32 = load_file(onnx_models[layout]).predictor
    style = load_file(onnx_models[layout], precision="int8", check_batches=batches)
    assert (style.precision, style.precision_note) == ("int8", None)
    assert isinstance(style.predictor, OnnxPredictor) and style.predictor is not fp32
    int8_out, fp32_out = style.predictor(batches[0]), fp32(batches[0])
    assert int8_out.shape == fp32_out.shape and not np.array_equal(int8_out, fp32_out)
    assert 10.0 < precision.psnr(int8_out, fp32_out) < 120.0


@pytest.mark.parametrize(("wanted", "flags"), [("bf16", frozenset({"amx_bf16"})), ("int8", VNNI)])
def test_a_copy_below_the_quality_line_is_refused_with_its_psnr(
    tmp_path: Path, onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, wanted: str, flags: frozenset[str]
) -> None:
    fake_cpu(monkeypatch, flags)
    monkeypatch.setattr(precision, "MIN_PSNR_DB", 500.0)
    path = save_random_generator(tmp_path / "r.pt") if wanted == "bf16" else onnx_models["nchw"]
    style = load_file(path, precision=wanted)  # the built-in check pattern
    assert style.precision == "fp32" and f"{wanted} output is only" in style.precision_note


def test_cpu_flags_come_from_the_flags_lines(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "fma", "avx_vnni"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


def test_this_machine_refuses_what_it_lacks() -> None:
    flags = precision.cpu_flags()
    for wanted, needed in precision.NEEDED_FLAGS.items():
        reported = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        assert bool(flags & needed) == any(f" {flag}" in reported for flag in needed), wanted
