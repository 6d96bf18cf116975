from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animegan_api import precision
from conftest import load_file, save_random_generator


def test_bf16_is_refused_on_a_cpu_without_avx512_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    style = load_file(save_random_generator(tmp_path / "r.pt"), precision="bf16")
    assert style.precision == "fp32" and "AVX-512 BF16" in style.precision_note
    assert style.predictor.bf16 is False


def test_bf16_runs_when_the_cpu_has_it_and_the_output_stays_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    batches = [np.random.default_rng(1).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)]
    path = save_random_generator(tmp_path / "r.pt")
    style = load_file(path, precision="bf16", check_batches=batches)
    assert (style.precision, style.precision_note, style.predictor.bf16) == ("bf16", None, True)
    fp32 = load_file(path).predictor(batches[0])
    assert precision.psnr(style.predictor(batches[0]), fp32) >= precision.BF16_MIN_PSNR_DB


def test_bf16_that_degrades_the_picture_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "BF16_MIN_PSNR_DB", 500.0)
    style = load_file(save_random_generator(tmp_path / "r.pt"), precision="bf16")  # the built-in check pattern
    assert style.precision == "fp32" and "dB PSNR" in style.precision_note


def test_bf16_leaves_onnx_styles_alone(onnx_models: dict[str, Path]) -> None:
    style = load_file(onnx_models["nchw"], precision="bf16")
    assert style.precision == "fp32" and "PyTorch" in style.precision_note


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert precision.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
