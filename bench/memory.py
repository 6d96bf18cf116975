"""What one forward costs in memory at 512, 1024 and 2048 px.

    python bench/memory.py --weights ../shared/models

Each size runs in a fresh process (so an earlier, larger forward cannot hide
a smaller one's peak): load the Hayao generator as the service does, note
the resident set, run one forward on a real photo at that size, and report
the peak resident set (VmHWM) minus that baseline. It runs with and without
the huge-page malloc tunable that ``serve`` sets, since huge pages round
allocations up to 2 MiB.
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
import torch
from PIL import Image
from animegan_api import imaging
from animegan_api.predictors import load_style
from animegan_api.weights import ModelFile, read_spec

def status(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024

model, photo, side, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
predictor = load_style(ModelFile(model, read_spec(model)), threads, 64).predictor
batch = imaging.to_batch(Image.open(photo).convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
idle = status("VmRSS")
began = time.perf_counter()
predictor(batch)
print(json.dumps({"idle_mib": idle, "peak_mib": status("VmHWM"), "forward_s": time.perf_counter() - began}))
"""


def measure(model: Path, photo: Path, side: int, threads: int, hugepages: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if hugepages:
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(model), str(photo), str(side), str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHARED / "models")
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    model, photo = args.weights / "animeganv2_hayao.pt", args.photos / "street_03_4k.jpg"
    print(f"{'side':>5} {'huge pages':>10} {'idle MiB':>9} {'peak MiB':>9} {'forward MiB':>12} {'forward s':>10}")
    for side in args.sizes:
        for hugepages in (True, False):
            row = measure(model, photo, side, args.threads, hugepages)
            print(
                f"{side:>5} {'on' if hugepages else 'off':>10} {row['idle_mib']:>9.0f} {row['peak_mib']:>9.0f} "
                f"{row['peak_mib'] - row['idle_mib']:>12.0f} {row['forward_s']:>10.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
