"""In-process speed of the generator: the ceiling the service is measured against.

    python bench/model.py --weights ../shared/models
    python bench/model.py --sizes 512 --threads 2 --experiments --profile --ort-options

For each backend (torch ``.pt``, ONNX Runtime ``.onnx`` of the same Hayao
weights, and the AnimeGANv3 Hayao ``.onnx``), picture side (256, 512, 1024)
and thread count (1, 2) it prints the forward time, images/s, FLOPs per image
(``torch.utils.flop_counter``, or counted from the ONNX graph) and the
GFLOP/s achieved, next to the fp32 matmul peak measured on this CPU with the
same threads; "use" is the share of that peak. It runs with the service's
malloc (huge pages).

``--profile`` splits the service's PyTorch forward into the convolutions and
everything else (the fp32 limit can only be approached by shrinking the
latter). ``--experiments`` adds the torch variants tried for speed at one
size: plain NCHW against the service's channels_last, the whole-picture
forward against the strip forward, frozen TorchScript traces, batches of two,
with ``--compile`` torch.compile (inductor, frozen weights; compile time shown)
and with ``--bf16`` bf16 autocast (time and PSNR). ``--ort-options`` times the
ONNX Runtime session options the service could choose from.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from animegan_api.cli import reexec_with_hugepage_malloc
from animegan_api.config import Settings
from animegan_api.pictures import imaging
from animegan_api.runtime.precision import psnr
from animegan_api.runtime.predictors import TorchPredictor, load_style
from animegan_api.runtime.weights import ModelFile, load_generator, read_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import onnx_flops
from ort_options import VARIANTS
from ort_options import predictor as ort_predictor

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTO = "food_01.jpg"


def photo_batch(photos: Path, side: int, count: int = 1) -> np.ndarray:
    """A real photo resized to ``side`` x ``side``, as the NCHW batch the service builds."""
    rgb = Image.open(photos / PHOTO).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    return np.repeat(imaging.to_batch(rgb), count, axis=0)


def time_call(fn: Callable[[], object], budget_s: float, min_runs: int = 2) -> list[float]:
    """Per-call seconds after one warm-up call; at least ``min_runs``, more while the budget lasts."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < min_runs or (spent < budget_s and len(times) < 20):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        spent += times[-1]
    return times


def matmul_peak(threads: int, n: int = 3072) -> float:
    """Best fp32 GFLOP/s of an n x n matmul with ``threads`` threads: this CPU's practical ceiling.

    The best of several runs, because this shared machine's speed drifts; a
    single run can read below what the convolutions then achieve.
    """
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(time_call(lambda: torch.mm(a, b), budget_s=4.0, min_runs=6))
    return 2 * n**3 / best / 1e9


def flops_per_image(module: torch.nn.Module, side: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(torch.zeros(1, 3, side, side))
    return counter.get_total_flops()


def torch_runner(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()

    return run


def onnx_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The service's own predictor: its arena session up to the measured size, the plain one above."""
    return load_style(ModelFile(path, read_spec(path)), threads, Settings().warmup_side).predictor


def backend_table(args: argparse.Namespace, module: torch.nn.Module) -> list[dict[str, object]]:
    rows = []
    peaks = {t: matmul_peak(t) for t in args.threads}
    flops = {"torch v2": {side: flops_per_image(module, side) for side in args.sizes}}
    flops |= {label: {side: onnx_flops(path, side) for side in args.sizes} for label, path in args.onnx.items()}
    for threads in args.threads:
        torch.set_num_threads(threads)
        runners = {"torch v2": TorchPredictor(_copy(module))}
        runners |= {label: onnx_runner(path, threads) for label, path in args.onnx.items()}
        for side in args.sizes:
            batch = photo_batch(args.photos, side)
            for backend, run in runners.items():
                times = time_call(lambda run=run, batch=batch: run(batch), budget_s=args.budget)
                median = statistics.median(times)
                gflop = flops[backend][side] / 1e9
                row = {
                    "backend": backend,
                    "side": side,
                    "threads": threads,
                    "runs": len(times),
                    "forward_s": round(median, 4),
                    "images_per_s": round(1 / median, 3),
                    "gflop_per_image": round(gflop, 2),
                    "gflop_s": round(gflop / median, 1),
                    "matmul_peak_gflop_s": round(peaks[threads], 1),
                    "peak_share": round(gflop / median / peaks[threads], 3),
                }
                rows.append(row)
                print(
                    f"{backend:>12} {side:>5} {threads:>3} {median:>9.3f} {1 / median:>8.2f} "
                    f"{row['gflop_per_image']:>8} {row['gflop_s']:>8} {row['matmul_peak_gflop_s']:>8} "
                    f"{100 * row['peak_share']:>5.0f}%",
                    flush=True,
                )
    return rows


def profile(args: argparse.Namespace, module: torch.nn.Module) -> dict[str, object]:
    """Where the service's forward spends its time: the convolutions against everything else."""
    side, threads = args.sizes[0], max(args.threads)
    torch.set_num_threads(threads)
    service, batch = TorchPredictor(_copy(module)), photo_batch(args.photos, side)
    time_call(lambda: service(batch), budget_s=0, min_runs=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        service(batch)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops) / 1e6
    conv = sum(e.self_cpu_time_total for e in ops if "convolution" in e.key) / 1e6
    gflop = flops_per_image(module, side) / 1e9
    print(f"profile {side} px, {threads} threads: {total:.3f} s, convolutions {conv:.3f} s ({100 * conv / total:.0f}%)")
    for event in ops[:8]:
        print(f"  {event.key:<28} {event.self_cpu_time_total / 1e3:>8.1f} ms {event.count:>5} calls")
    print(
        f"  the convolutions alone run at {gflop / conv:.1f} GFLOP/s; the rest costs {total - conv:.3f} s per forward"
    )
    top = {e.key: round(e.self_cpu_time_total / 1e6, 4) for e in ops[:8]}
    return {"side": side, "threads": threads, "total_s": round(total, 4), "conv_s": round(conv, 4), "top_ops_s": top}


def experiments(args: argparse.Namespace, module: torch.nn.Module) -> list[dict[str, object]]:
    """Each torch variant against the plain fp32 forward, same size and threads, in one run."""
    side, threads = args.sizes[0], max(args.threads)
    torch.set_num_threads(threads)
    batch = photo_batch(args.photos, side)
    reference = torch_runner(module)(batch)
    service = TorchPredictor(_copy(module))
    variants: dict[str, tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]] = {
        "NCHW fp32 (plain)": (torch_runner(module), batch),
        "channels_last (service)": (service, batch),
        "channels_last whole picture": (_whole(service.module), batch),
        "NCHW jit trace + freeze": (_frozen(module, batch), batch),
        "NCHW batch of 2": (torch_runner(module), np.repeat(batch, 2, axis=0)),
        "channels_last batch of 2": (service, np.repeat(batch, 2, axis=0)),
        "channels_last jit freeze": (_frozen(TorchPredictor(_copy(module)).module, batch, channels_last=True), batch),
    }
    if args.compile:
        variants["torch.compile, frozen"] = (_compiled(service.module, batch), batch)
    if args.bf16:
        variants["channels_last bf16 autocast"] = (_bf16(service.module), batch)
    rows = []
    base = None
    for name, (run, feed) in variants.items():
        times = time_call(lambda run=run, feed=feed: run(feed), budget_s=args.budget)
        per_image = statistics.median(times) / feed.shape[0]
        base = base or per_image
        quality = psnr(run(feed)[:1], reference)
        rows.append(
            {
                "variant": name,
                "side": side,
                "threads": threads,
                "s_per_image": round(per_image, 4),
                "speedup": round(base / per_image, 3),
                "psnr_db": round(quality, 1),
            }
        )
        print(f"{name:>28} {per_image:>9.3f} {base / per_image:>8.2f}x {quality:>8.1f}", flush=True)
    return rows


def ort_table(args: argparse.Namespace) -> list[dict[str, object]]:
    """Each ONNX Runtime session variant against the service's options, same model, size and threads.

    Each session first runs one picture of another size, as the service's do at
    load: ORT's memory pattern spares only the first shape a session sees, and
    a service sees many.
    """
    side, threads = args.sizes[0], max(args.threads)
    batch, other = photo_batch(args.photos, side), np.zeros((1, 3, side // 2 + 8, side // 2 + 8), np.float32)
    rows = []
    print(f"\nONNX Runtime options, {side} px, {threads} threads")
    for label, path in args.onnx.items():
        base = None
        for name, tweak in VARIANTS.items():
            predictor = ort_predictor(path, threads, tweak, side * side)
            predictor(other)
            median = statistics.median(time_call(lambda p=predictor: p(batch), budget_s=args.budget, min_runs=3))
            base = base or median
            rows.append(
                {"model": label, "variant": name, "forward_s": round(median, 4), "speedup": round(base / median, 3)}
            )
            print(f"{label:>8} {name:>28} {median:>8.3f} s {base / median:>6.2f}x", flush=True)
    return rows


def _layout(batch: np.ndarray, channels_last: bool) -> torch.Tensor:
    x = torch.from_numpy(batch)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _frozen(
    module: torch.nn.Module, batch: np.ndarray, channels_last: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.freeze(
            torch.jit.trace(module if channels_last else _copy(module), _layout(batch, channels_last))
        )

    def run(feed: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return traced(_layout(feed, channels_last)).numpy()

    return run


def _whole(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The channels_last module's own forward: the whole picture at once, as before the strip forward."""

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(_layout(batch, True)).numpy()

    return run


def _compiled(module: torch.nn.Module, batch: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Inductor with the weights frozen into the graph (oneDNN-packed); the first call compiles, with gcc."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    compiled = torch.compile(module)
    started = time.perf_counter()
    with torch.inference_mode():
        compiled(_layout(batch, True))
    print(f"torch.compile: first call (compiling) took {time.perf_counter() - started:.1f} s", flush=True)

    def run(feed: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compiled(_layout(feed, True)).numpy()

    return run


def _bf16(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return module(_layout(batch, True)).float().numpy()

    return run


def _copy(module: torch.nn.Module) -> torch.nn.Module:
    clone = type(module)(upsample=module.upsample)
    clone.load_state_dict(module.state_dict())
    return clone.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHARED / "models")
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of timed runs per cell (at least 2 runs)")
    parser.add_argument("--experiments", action="store_true", help="also time the torch variants at the first size")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute to compile)")
    parser.add_argument("--profile", action="store_true", help="split the torch forward into convolutions and the rest")
    parser.add_argument("--ort-options", action="store_true", help="also time ONNX Runtime session options")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time bf16 autocast (very slow on CPUs without AVX-512 BF16: minutes per forward)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    reexec_with_hugepage_malloc(sys.orig_argv[1:])  # the allocator serve uses
    pt = args.weights / "animeganv2_hayao.pt"
    onnx = {"ort v2": "animeganv2_hayao.onnx", "ort v3": "animeganv3_hayao.onnx"}
    args.onnx = {label: args.weights / name for label, name in onnx.items() if (args.weights / name).is_file()}
    torch.set_num_interop_threads(1)
    module = load_generator(pt, read_spec(pt))
    hugepages = "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")
    print(
        f"CPU threads available: {torch.get_num_threads()}; torch {torch.__version__}; "
        f"malloc huge pages {'on' if hugepages else 'off (not glibc)'}"
    )
    print(
        f"{'backend':>12} {'side':>5} {'thr':>3} {'forward s':>9} {'img/s':>8} "
        f"{'GFLOP':>8} {'GFLOP/s':>8} {'peak':>8} {'use':>6}"
    )
    result: dict[str, object] = {"backends": backend_table(args, module)}
    if args.profile:
        result["profile"] = profile(args, module)
    if args.experiments:
        print(f"\n{'variant':>28} {'s/image':>9} {'speedup':>9} {'PSNR dB':>8}")
        result["experiments"] = experiments(args, module)
    if args.ort_options:
        result["ort_options"] = ort_table(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
