"""Bounded soak test: steady mixed load on a real server while its memory is watched (loopback only).

    python bench/soak.py --weights ../shared/models --duration 600

Starts ``animegan-api serve`` on a free loopback port, keeps 2 x W clients
posting real photos at mixed sizes and output formats for ``--duration``
seconds, samples the server's resident memory every ``--sample-s`` seconds,
and fails (exit 1) if the memory floor rises: the lowest sample of the
soak's last third may exceed the lowest of its first third by at most
``--max-growth-mib``. A leak lifts the floor; a large request only adds a
transient peak, so peaks and medians are reported but not judged (a one-minute
run once showed medians rising 157 MiB and still ended below its start).
A warm-up first sends every (photo, size, format) combination twice, because
the allocator takes a while to reach its plateau, and the server runs with
``MALLOC_ARENA_MAX=2`` (override it in the environment), which makes glibc
settle within a minute. Without the cap it takes several minutes to climb to
its plateau, so a one-minute run cannot tell that climb from a leak; a leak in
the service's own code lifts the floor either way. Stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import DEFAULT_PHOTOS, load_photos, run_load
from local_server import start_server, status_mib

MIXED_FORMS = [
    {"max_side": "256", "format": "png"},
    {"max_side": "512", "format": "jpeg"},
    {"max_side": "384", "format": "webp"},
    {"max_side": "128", "format": "png", "keep_size": "true"},
]


async def _sample(pid: int, every_s: float, until: float, samples: list[tuple[float, float]], started: float) -> None:
    while time.monotonic() < until:
        samples.append((round(time.monotonic() - started, 1), round(status_mib(pid), 1)))
        await asyncio.sleep(every_s)


DEFAULT_LOG = Path(__file__).resolve().parent / "results" / "soak-server.log"


def soak(
    weights: Path,
    *,
    duration_s: float = 600,
    workers: int = 1,
    sample_s: float = 5.0,
    max_growth_mib: float = 100.0,
    photos_dir: Path = DEFAULT_PHOTOS,
    photo_names: list[str] | None = None,
    log: Path = DEFAULT_LOG,
    warmup_cycles: int = 2,
) -> dict[str, object]:
    """Run the warm-up cycles, then the soak; the summary says whether memory stayed within the bound."""
    photos = load_photos(photos_dir, photo_names)
    cycle = math.lcm(len(photos), len(MIXED_FORMS)) * warmup_cycles
    log.parent.mkdir(parents=True, exist_ok=True)
    process, url = start_server(
        weights,
        [
            "--workers",
            str(workers),
            "--max-queue",
            str(2 * workers),
            "--default-style",
            "animeganv2_hayao",
            "--log-level",
            "warning",
        ],
        # glibc arenas capped so memory settles within the warm-up (see the module docstring)
        log=log,
        env={"ANIMEGAN_RATE_LIMIT_ENABLED": "false", "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")},
    )
    samples: list[tuple[float, float]] = []
    try:

        async def phase(requests: int, seconds: float) -> dict[str, object]:
            started = time.monotonic()
            sampler = asyncio.create_task(_sample(process.pid, sample_s, started + seconds, samples, started))
            load = await run_load(url, photos, 2 * workers, requests, seconds, MIXED_FORMS)
            sampler.cancel()
            samples.append((round(time.monotonic() - started, 1), round(status_mib(process.pid), 1)))
            return load

        warmup = asyncio.run(phase(cycle, 3600))
        warm = [rss for _, rss in samples]
        samples.clear()
        load = asyncio.run(phase(10**9, duration_s))
        healthy = httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    finally:
        process.terminate()
        exit_code = process.wait(timeout=120)
    after = [rss for _, rss in samples]
    third = max(1, len(after) // 3)
    first, last = min(after[:third]), min(after[-third:])
    growth = last - first
    return {
        "duration_s": duration_s,
        "warmup_requests": warmup["requests"],
        "workers": workers,
        "requests": load["requests"],
        "statuses": load["statuses"],
        "throughput_rps": load["throughput_rps"],
        "rss_after_warmup_mib": warm[-1],
        "rss_warm_peak_mib": max(warm),
        "rss_soak_peak_mib": max(after),
        "rss_first_third_floor_mib": first,
        "rss_last_third_floor_mib": last,
        "rss_first_third_median_mib": statistics.median(after[:third]),
        "rss_last_third_median_mib": statistics.median(after[-third:]),
        "rss_end_mib": samples[-1][1],
        "growth_mib": round(growth, 1),
        "max_growth_mib": max_growth_mib,
        "healthy_after": healthy,
        "exit_code": exit_code,
        "samples": samples,
        "passed": growth <= max_growth_mib and healthy and exit_code == 0 and set(load["statuses"]) == {"200"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_PHOTOS.parent / "models")
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--max-growth-mib", type=float, default=100.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    summary = soak(
        args.weights,
        duration_s=args.duration,
        workers=args.workers,
        sample_s=args.sample_s,
        max_growth_mib=args.max_growth_mib,
    )
    for t, rss in summary["samples"]:  # type: ignore[union-attr]
        print(f"{t:8.1f} s  {rss:8.1f} MiB")
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
