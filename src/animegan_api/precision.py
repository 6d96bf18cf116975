"""Whether a style may run in reduced precision: only where the CPU has the instructions and the picture survives.

bf16 (PyTorch styles) and int8 (ONNX styles) are requests, never orders.
Without the instructions that make them fast *and* exact enough, the CPU
either emulates them many times slower than fp32 (bf16 without AVX-512 BF16)
or takes a path that loses the picture (int8 without VNNI: AVX2's u8 x s8
multiply-add saturates; on AnimeGANv2 Hayao that is 25-31 dB PSNR against
fp32). A copy whose output drifts more than ``MIN_PSNR_DB`` from fp32 on the
check pictures would be a silent quality loss. Either way the style stays
fp32 and says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import imaging

if TYPE_CHECKING:
    from .predictors import Predictor

Precision = Literal["fp32", "bf16", "int8"]
MIN_PSNR_DB = 35.0
CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo names of the instructions each precision needs (any one of them)
NEEDED_FLAGS: dict[str, frozenset[str]] = {
    "bf16": frozenset({"avx512_bf16", "amx_bf16"}),
    "int8": frozenset({"avx512_vnni", "avx_vnni", "amx_int8"}),
}
_WITHOUT_FLAGS = {
    "bf16": "this CPU lacks AVX-512 BF16 and AMX, where bf16 is emulated and many times slower than fp32",
    "int8": "this CPU lacks VNNI (AVX-512 VNNI or AVX-VNNI) and AMX, where int8 convolutions saturate "
    "and lose the picture (25-31 dB PSNR on AnimeGANv2 Hayao without VNNI)",
}


def apply_precision(
    predictor: Predictor, precision: Precision, check_batches: list[np.ndarray] | None, path: Path, threads: int
) -> tuple[Predictor, Precision, str | None]:
    """The predictor to serve, the precision it runs in, and why the request was refused (None when it was not)."""
    if precision == "fp32":
        return predictor, "fp32", None
    batches = check_batches or [check_pattern()]
    candidate = _candidate(predictor, precision, batches, path, threads)
    if isinstance(candidate, str):
        return predictor, "fp32", candidate
    note = quality_refusal(predictor, candidate, batches, precision)
    return (predictor, "fp32", note) if note else (candidate, precision, None)


def _candidate(
    predictor: Predictor, precision: Precision, batches: list[np.ndarray], path: Path, threads: int
) -> Predictor | str:
    """The reduced-precision copy to check, or why there is none."""
    from .predictors import OnnxPredictor, TorchPredictor
    from .quantize import QuantizeError, int8_session

    runtime = {"bf16": TorchPredictor, "int8": OnnxPredictor}[precision]
    if not isinstance(predictor, runtime):
        kind = "PyTorch" if precision == "bf16" else "ONNX"
        other = "ONNX Runtime" if isinstance(predictor, OnnxPredictor) else "PyTorch"
        return f"{precision} applies to {kind} files only; this style runs in {other}"
    if not cpu_flags() & NEEDED_FLAGS[precision]:
        return _WITHOUT_FLAGS[precision]
    if isinstance(predictor, TorchPredictor):
        return TorchPredictor(predictor.module, bf16=True)
    assert isinstance(predictor, OnnxPredictor)
    try:
        return OnnxPredictor(int8_session(path, predictor.signature, batches, threads), predictor.signature)
    except QuantizeError as exc:
        return str(exc)


def quality_refusal(fp32: Predictor, reduced: Predictor, batches: list[np.ndarray], precision: str) -> str | None:
    """Why the reduced-precision output may not be served, or None when it stays close enough to fp32."""
    worst = min(psnr(fp32(batch), reduced(batch)) for batch in batches)
    if worst < MIN_PSNR_DB:
        return f"{precision} output is only {worst:.1f} dB PSNR from fp32 on the check pictures (needs {MIN_PSNR_DB:g})"
    return None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR between two generator outputs in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(4.0 / mse))


def cpu_flags(source: Path = CPUINFO) -> frozenset[str]:
    """The instruction-set flags the kernel reports; empty when it reports none (so nothing is assumed)."""
    try:
        with source.open(encoding="ascii", errors="replace") as cpuinfo:
            return frozenset(
                flag for line in cpuinfo if line.startswith("flags") for flag in line.split(":", 1)[1].split()
            )
    except OSError:
        return frozenset()


def check_pattern(side: int = 128) -> np.ndarray:
    """A picture with gradients and edges, for when no check photos are configured."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rings = np.sin(40 * np.hypot(x - 0.5, y - 0.5))
    return np.stack([2 * x - 1, 2 * y - 1, rings])[None].astype(np.float32)


def check_batches(folder: Path | None, count: int = 4, side: int = 256) -> list[np.ndarray] | None:
    """Up to ``count`` photos from ``folder`` as model inputs, for the quality check."""
    if folder is None:
        return None
    batches = []
    for path in sorted(p for p in folder.iterdir() if p.is_file())[: count * 4]:
        try:
            prepared = imaging.prepare(path.read_bytes(), max_pixels=100_000_000, max_side=side, multiple=32)
        except imaging.ImageError:
            continue
        batches.append(imaging.to_batch(prepared.rgb))
        if len(batches) == count:
            break
    if not batches:
        raise ValueError(f"precision_check_dir {folder} holds no readable picture")
    return batches
