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

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from animegan_api.pictures import imaging

__all__ = [
    "MIN_PSNR_DB",
    "NEEDED_FLAGS",
    "Precision",
    "check_batches",
    "check_pattern",
    "cpu_flags",
    "missing_instructions",
    "psnr",
    "quality_refusal",
]

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


def missing_instructions(precision: Precision) -> str | None:
    """Why this CPU cannot run ``precision`` fast and exactly enough, or None when it has the instructions."""
    if precision == "fp32" or cpu_flags() & NEEDED_FLAGS[precision]:
        return None
    return _WITHOUT_FLAGS[precision]


def quality_refusal(
    fp32: Callable[[np.ndarray], np.ndarray],
    reduced: Callable[[np.ndarray], np.ndarray],
    batches: list[np.ndarray],
    precision: str,
) -> str | None:
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
