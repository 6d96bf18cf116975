"""Whether a PyTorch style may run in bf16: only where the CPU has it, and only if the picture survives.

bf16 is a request, never an order. Without AVX-512 BF16 (or AMX) the CPU
emulates it many times slower than fp32, and a model whose output drifts
more than ``BF16_MIN_PSNR_DB`` from fp32 on the check pictures would be a
silent quality loss; either way the style stays fp32 and says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import imaging

if TYPE_CHECKING:
    from .predictors import Predictor

Precision = Literal["fp32", "bf16"]
BF16_MIN_PSNR_DB = 35.0
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def apply_precision(
    predictor: Predictor, precision: Precision, check_batches: list[np.ndarray] | None
) -> tuple[Predictor, Precision, str | None]:
    """The predictor to serve, the precision it runs in, and why bf16 was refused (None when it was not)."""
    from .predictors import TorchPredictor

    if precision != "bf16":
        return predictor, "fp32", None
    if not isinstance(predictor, TorchPredictor):
        return predictor, "fp32", "bf16 applies to PyTorch files only; this style runs in ONNX Runtime"
    bf16 = TorchPredictor(predictor.module, bf16=True)
    note = bf16_refusal(predictor, bf16, check_batches or [check_pattern()], cpu_has_bf16())
    return (predictor, "fp32", note) if note else (bf16, "bf16", None)


def bf16_refusal(fp32: Predictor, bf16: Predictor, batches: list[np.ndarray], cpu_bf16: bool) -> str | None:
    """Why this model must stay fp32, or None when bf16 may run."""
    if not cpu_bf16:
        return "this CPU lacks AVX-512 BF16, where bf16 is emulated and many times slower than fp32"
    worst = min(psnr(fp32(batch), bf16(batch)) for batch in batches)
    if worst < BF16_MIN_PSNR_DB:
        return f"bf16 output is only {worst:.1f} dB PSNR from fp32 on the check pictures (needs {BF16_MIN_PSNR_DB:g})"
    return None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR between two generator outputs in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(4.0 / mse))


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = {flag for line in cpuinfo if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return bool(flags & _BF16_CPU_FLAGS)


def check_pattern(side: int = 128) -> np.ndarray:
    """A picture with gradients and edges, for when no check photos are configured."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rings = np.sin(40 * np.hypot(x - 0.5, y - 0.5))
    return np.stack([2 * x - 1, 2 * y - 1, rings])[None].astype(np.float32)


def check_batches(folder: Path | None, count: int = 4, side: int = 256) -> list[np.ndarray] | None:
    """Up to ``count`` photos from ``folder`` as model inputs, for the bf16 quality check."""
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
