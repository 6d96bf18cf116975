"""Measure worker (W) x torch-thread (T) layouts of the real service on this machine.

    python bench/threads.py --weights ../shared/models --requests 12
    python bench/threads.py --styles animeganv2_hayao animeganv3_hayao --requests 16

For each layout it starts ``animegan-api serve`` on a free loopback port,
drives it with ``bench/load.py`` at enough concurrency to keep every worker
busy (512x512 photos, result cache off), once per style asked for, and prints
throughput and latency side by side. The runtime
column is what serves the style (ONNX styles: the one ``auto`` chose for that layout). The
defaults in ``config.py`` come from this table (see docs/performance.md, "Choosing W and T").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import DEFAULT_PHOTOS, load_photos, run_load
from local_server import start_server
from styles import UNCACHED

LAYOUTS = ((1, 1), (1, 2), (2, 1), (2, 2))
SQUARE_PHOTOS = ["food_01.jpg", "street_05.jpg"]  # both 512x512: identical work per request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_PHOTOS.parent / "models")
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--time-limit", type=float, default=240.0)
    parser.add_argument("--styles", nargs="+", default=["animeganv2_hayao"])
    args = parser.parse_args()
    photos = load_photos(DEFAULT_PHOTOS, SQUARE_PHOTOS)
    print(f"{'style':>18} {'runtime':>11} {'W x T':>6} {'conc':>5} {'img/s':>7} {'p50 s':>7} {'p99 s':>7}  statuses")
    for workers, threads in LAYOUTS:
        process, url = start_server(
            args.weights,
            ["--workers", str(workers), "--threads", str(threads), "--max-queue", "64", "--log-level", "warning"],
            env={**UNCACHED, "OMP_NUM_THREADS": str(threads)},
        )
        try:
            runtimes = {s["name"]: s["runtime"] for s in httpx.get(f"{url}/v1/styles").json()["styles"]}
            for style in args.styles:
                concurrency = workers * 2
                form = {"style": style}
                summary = asyncio.run(run_load(url, photos, concurrency, args.requests, args.time_limit, form))
                lat = summary["latency_ok_s"]
                print(
                    f"{style:>18} {runtimes[style]:>11} {workers:>2} x {threads:<2} {concurrency:>5} "
                    f"{summary['throughput_rps']:>7.3f} "
                    f"{lat['p50']:>7.2f} {lat['p99']:>7.2f}  {summary['statuses']}",
                    flush=True,
                )
        finally:
            process.terminate()
            process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
