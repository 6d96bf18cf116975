"""What one forward costs in time and memory, per style and size, against what the service predicts.

    python bench/memory.py --weights ../shared/models
    python bench/memory.py --sizes 512 1024 2048 4096 --models animeganv2_hayao.pt animeganv3_hayao.onnx

Each measurement runs in a fresh process (so an earlier, larger forward
cannot hide a smaller one's peak) with the huge-page malloc that ``serve``
uses: load the style as the service does, note the resident set, run one
forward on a real photo at that size, and report the peak resident set
(VmHWM) minus that baseline, beside the memory the service predicts for that
forward (the cost it measures or works out at load, at the default warm-up
side, or the style's ``--profiles`` file) and their ratio; then the peak the
budget predicts for the process (resident before, plus the forward's cost)
against the measured peak. PyTorch styles run both ways: ``whole`` (the plain
module, the reference, no prediction) and ``strips`` (what the service runs,
:mod:`animegan_api.runtime.tiling`); ONNX styles on each runtime,
``onnxruntime`` and ``openvino``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
PROBE = """
import json, sys, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from animegan_api.pictures import imaging
from animegan_api.runtime.memory import fix_mmap_threshold
from animegan_api.runtime.predictors import TorchPredictor, load_style
from animegan_api.runtime.weights import ModelFile, read_spec

def status(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024

model, photo, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[5]
side, threads = int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
fix_mmap_threshold()  # the allocator the service runs with
runtime = mode if mode in ("onnxruntime", "openvino") else "onnxruntime"
profiles = Path(sys.argv[6]) if sys.argv[6] else None
style = load_style(ModelFile(model, read_spec(model)), threads, 256, measure_memory=True, onnx_runtime=runtime,
                   memory_profiles=profiles)
predictor = style.predictor
if mode == "whole":
    predictor.forward = predictor.module
image = Image.open(photo).convert("RGB")
height = max(style.size_multiple, side * image.height // image.width // style.size_multiple * style.size_multiple)
batch = imaging.to_batch(image.resize((side, height), Image.Resampling.LANCZOS))
del image
idle = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the peak from here: loading and calibrating do not count
began = time.perf_counter()
predictor(batch)
predicted = style.cost.forward_bytes(side, height) / 2**20 if style.cost and mode != "whole" else None
print(json.dumps({"idle_mib": idle, "peak_mib": status("VmHWM"), "forward_s": time.perf_counter() - began,
                  "width": side, "height": height, "predicted_mib": predicted}))
"""


def measure(model: Path, photo: Path, side: int, threads: int, mode: str, profiles: Path | None) -> dict[str, float]:
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(model), str(photo), str(side), str(threads), mode, str(profiles or "")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHARED / "models")
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--models", nargs="+", default=["animeganv2_hayao.pt"], help="file names in --weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profiles", type=Path, help="folder of `animegan-api memory-profile` files (ONNX styles)")
    parser.add_argument("--skip-whole-above", type=int, default=2048, help="the whole forward needs ~6.5 GiB at 2048")
    args = parser.parse_args(argv)
    photo = args.photos / "street_03_4k.jpg"
    heading = ("model", "mode", "size", "idle MiB", "peak MiB", "forward MiB", "forward s", "predicted", "pred/meas")
    heading += ("pred. peak", "peak ratio")
    widths = (24, 11, 11, 9, 9, 12, 10, 10, 10, 11, 11)
    print(" ".join(f"{h:>{w}}" for h, w in zip(heading, widths, strict=True)))
    for name in args.models:
        model, stem = args.weights / name, name
        modes = ["whole", "strips"] if model.suffix == ".pt" else ["onnxruntime", "openvino"]
        for side in args.sizes:
            for mode in modes:
                if mode == "whole" and side > args.skip_whole_above:
                    continue
                row = measure(model, photo, side, args.threads, mode, args.profiles)
                size, used = f"{int(row['width'])}x{int(row['height'])}", row["peak_mib"] - row["idle_mib"]
                predicted, idle = row["predicted_mib"], row["idle_mib"]
                guess = f"{'-':>10} {'-':>10} {'-':>11} {'-':>11}"
                if predicted:  # the process's peak as the budget sees it: resident before, plus the forward's cost
                    peak = idle + predicted
                    ratios = f"{predicted / max(used, 1):>10.2f} {peak:>11.0f} {peak / row['peak_mib']:>11.2f}"
                    guess = f"{predicted:>10.0f} {ratios}"
                print(
                    f"{stem:>24} {mode:>11} {size:>11} {row['idle_mib']:>9.0f} {row['peak_mib']:>9.0f} "
                    f"{used:>12.0f} {row['forward_s']:>10.2f} {guess}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
