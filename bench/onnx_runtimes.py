"""ONNX Runtime against OpenVINO on every real style, through the service's own predictors; prints a table.

    python bench/onnx_runtimes.py                 # about 3 minutes on 2 cores
    python bench/onnx_runtimes.py --side 1024

For each ONNX file in ``--weights``: the warm forward of a real photo at ``--side`` (median of
``--runs`` after one untimed run) on each runtime at T threads, as a share of the fp32 matmul peak
measured in the same run; what a picture size a runtime has not seen yet costs on its first
forward (a 4:3 picture after square ones); which runtime ``ANIMEGAN_ONNX_RUNTIME=auto`` keeps at
the warm-up side; and the PSNR between the two runtimes' pictures. Then the AnimeGANv2 ``.pt``:
the PyTorch strip forward the service runs against the same module converted to OpenVINO at load.
"""

from __future__ import annotations

import argparse
import copy
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
    """The .pt through the service's strip forward, and the same module converted to OpenVINO."""
    import openvino as ov

    path = args.weights / "animeganv2_hayao.pt"
    style = _load(path, args, "onnxruntime")
    module = style.predictor.module  # type: ignore[attr-defined]
    flops = flops_per_image(module, args.side)
    plain = copy.deepcopy(module).to(memory_format=torch.contiguous_format)
    converted = ov.convert_model(plain, example_input=torch.zeros(1, 3, 64, 64))
    config = {"INFERENCE_NUM_THREADS": args.threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()

    def vino(feed: np.ndarray) -> np.ndarray:
        request.infer({0: feed})
        return np.array(request.get_output_tensor(0).data)

    strip_s, vino_s = _median(style.predictor, batch, args.runs), _median(vino, batch, args.runs)
    psnr = _psnr(style.predictor(batch), vino(batch))
    print(
        f"\n{path.name}: PyTorch strip forward {strip_s:.3f} s ({flops / strip_s / peak:.0%} of peak), "
        f"converted to OpenVINO {vino_s:.3f} s ({flops / vino_s / peak:.0%}); PSNR between them {psnr:.1f} dB"
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
