"""Bounded async load generator for a running animegan-api (loopback only).

    python bench/load.py --url http://127.0.0.1:8000 --concurrency 4 --requests 40

Stops at whichever comes first: the request count or the time limit. Prints
throughput, latency percentiles and per-status counts; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import random
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"


def loopback_only(url: str) -> str:
    """Refuse any target that is not this machine: load tests never leave loopback."""
    host = urlparse(url).hostname or ""
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise SystemExit(f"refusing to load {url}: only loopback addresses are allowed")
    return url


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def run_load(
    url: str,
    photos: list[bytes],
    concurrency: int,
    requests: int,
    time_limit_s: float,
    form: dict[str, str] | list[dict[str, str]] | None = None,
    *,
    path: str = "/v1/transform",
    honour_retry_after: bool = False,
) -> dict[str, object]:
    """Send up to ``requests`` posts from ``concurrency`` clients; returns the summary.

    ``form`` may be a list of field sets, cycled request by request (mixed sizes, formats).
    With ``honour_retry_after`` a client refused with 503 waits as its ``Retry-After``
    asks plus up to half as long again at random, as well-behaved clients do,
    instead of retrying in a tight loop or in step with every other client.
    """
    forms = form if isinstance(form, list) else [form or {}]
    loopback_only(url)
    counter = itertools.count()
    jitter = random.Random(0)
    latencies: dict[int, list[float]] = {}
    statuses: Counter[str] = Counter()
    stop_at = time.monotonic() + time_limit_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while (index := next(counter)) < requests and time.monotonic() < stop_at:
            photo = photos[index % len(photos)]
            fields = forms[index % len(forms)]
            started = time.perf_counter()
            try:
                response = await client.post(
                    f"{url}{path}",
                    files={"image": ("photo.jpg", photo)},
                    data=fields,
                    timeout=max(1.0, stop_at - time.monotonic() + 60),
                )
                key: str | int = response.status_code
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            elapsed = time.perf_counter() - started
            statuses[str(key)] += 1
            latencies.setdefault(key if isinstance(key, int) else -1, []).append(elapsed)
            if honour_retry_after and key == 503:
                wait = float(response.headers.get("retry-after", 1)) * jitter.uniform(1.0, 1.5)
                await asyncio.sleep(min(wait, max(0.0, stop_at - time.monotonic())))

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    ok = latencies.get(200, [])
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(ok) / wall, 4) if wall else 0.0,
        "statuses": dict(statuses),
        "latency_ok_s": _summary(ok),
        "latency_by_status_s": {str(k): _summary(v) for k, v in latencies.items()},
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 4),
        "p90": round(percentile(values, 90), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4) if values else float("nan"),
    }


def load_photos(folder: Path, names: list[str] | None = None) -> list[bytes]:
    paths = [folder / n for n in names] if names else sorted(folder.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no photos in {folder}")
    return [p.read_bytes() for p in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds; the run stops by itself")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--photo", action="append", help="photo file name(s) inside --photos (default: all *.jpg)")
    parser.add_argument("--max-side", type=int)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    form = {"max_side": str(args.max_side)} if args.max_side else None
    summary = asyncio.run(
        run_load(
            loopback_only(args.url),
            load_photos(args.photos, args.photo),
            args.concurrency,
            args.requests,
            args.time_limit,
            form,
        )
    )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
