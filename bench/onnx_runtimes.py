"""ONNX Runtime against OpenVINO on every real style, through the service's own predictors; prints a table.

    python bench/onnx_runtimes.py                 # about 3 minutes on 2 cores
    python bench/onnx_runtimes.py --side 1024

For each ONNX file in ``--weights``: the warm forward of a real photo at ``--side`` (median of
``--runs`` after one untimed run) on each runtime at T threads, as a share of the fp32 matmul peak
measured in the same run; what a picture size a runtime has not seen yet costs on its first
forward (a 4:3 picture after square ones); which runtime ``ANIMEGAN_ONNX_RUNTIME=auto`` keeps at
the warm-up side; and the PSNR between the two runtimes' pictures. Then the AnimeGANv2 ``.pt``:
the PyTorch strip forward against the same file through OpenVINO (``ANIMEGAN_TORCH_RUNTIME``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from animegan_api.runtime.onnx_runtimes import OnnxRuntime
from animegan_api.runtime.predictors import LoadedStyle, load_style
from animegan_api.runtime.weights import ModelFile, read_spec
from flops import onnx_flops
from model import flops_per_image, matmul_peak, photo_batch, time_call

SHARED = Path(__file__).resolve().parents[2] / "shared"
Forward = Callable[[np.ndarray], np.ndarray]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHARED / "models")
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup-side", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads) * 1e9  # FLOP/s
    batch = photo_batch(args.photos, args.side)
    wide = np.ascontiguousarray(batch[:, :, : args.side * 3 // 4, :])  # a 4:3 picture: a shape not seen yet
    print(f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s on {args.threads} threads; {args.side} px, median of {args.runs}")
    print(f"{'style':<22}{'runtime':<13}{'s':>7}{'% peak':>8}{'new shape s':>13}{'auto keeps':>12}{'PSNR dB':>9}")
    for path in sorted(args.weights.glob("*.onnx")):
        flops = onnx_flops(path, args.side)
        auto = _load(path, args, "auto")
        outputs = {}
        for runtime in ("onnxruntime", "openvino"):
            style = _load(path, args, runtime)
            seconds = _median(style.predictor, batch, args.runs)
            first = _first(style.predictor, wide) - _median(style.predictor, wide, args.runs)
            outputs[runtime] = style.predictor(batch)
            psnr = _psnr(outputs["onnxruntime"], outputs[runtime]) if runtime == "openvino" else None
            row = f"{path.stem:<22}{runtime:<13}{seconds:>7.3f}{flops / seconds / peak:>8.0%}{first:>+13.3f}"
            keeps = auto.runtime if runtime == "openvino" else ""
            print(row + f"{keeps:>12}" + (f"{psnr:>9.1f}" if psnr is not None else ""))
    _pytorch_against_openvino(args, batch, peak)
    return 0


def _pytorch_against_openvino(args: argparse.Namespace, batch: np.ndarray, peak: float) -> None:
    """The .pt through the service's strip forward, and through OpenVINO as ``ANIMEGAN_TORCH_RUNTIME=openvino``
    converts it at load; then a 16:9 picture of the same long side (whole-picture forwards up to the size
    measured at load, strips beyond)."""
    path = args.weights / "animeganv2_hayao.pt"
    spec = ModelFile(path, read_spec(path))
    styles = {
        runtime: load_style(spec, args.threads, args.warmup_side, torch_runtime=runtime)
        for runtime in ("pytorch", "openvino")
    }
    auto = load_style(spec, args.threads, args.warmup_side, torch_runtime="auto")
    flops = flops_per_image(styles["pytorch"].predictor.module, args.side)  # type: ignore[attr-defined]
    wide = np.ascontiguousarray(batch[:, :, : args.side * 9 // 16 // 4 * 4, :])
    seconds = {name: _median(style.predictor, batch, args.runs) for name, style in styles.items()}
    wide_s = {name: _median(style.predictor, wide, args.runs) for name, style in styles.items()}
    psnr = _psnr(styles["pytorch"].predictor(batch), styles["openvino"].predictor(batch))
    print(
        f"\n{path.name}: PyTorch strip forward {seconds['pytorch']:.3f} s ({flops / seconds['pytorch'] / peak:.0%} "
        f"of peak), OpenVINO {seconds['openvino']:.3f} s ({flops / seconds['openvino'] / peak:.0%}); at "
        f"{wide.shape[2]}x{wide.shape[3]} {wide_s['pytorch']:.3f} s against {wide_s['openvino']:.3f} s; PSNR "
        f"between them {psnr:.1f} dB; auto keeps {auto.runtime} ({auto.runtime_seconds})"
    )


def _load(path: Path, args: argparse.Namespace, runtime: OnnxRuntime) -> LoadedStyle:
    return load_style(ModelFile(path, read_spec(path)), args.threads, args.warmup_side, onnx_runtime=runtime)


def _median(forward: Forward, batch: np.ndarray, runs: int) -> float:
    return statistics.median(time_call(lambda: forward(batch), 0.0, runs))


def _first(forward: Forward, batch: np.ndarray) -> float:
    started = time.perf_counter()
    forward(batch)
    return time.perf_counter() - started


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse))  # outputs span [-1, 1]


if __name__ == "__main__":
    raise SystemExit(main())
