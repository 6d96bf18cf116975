"""Jobs through one replica and through two sharing Redis: throughput, and what the shared store costs a frame.

    python bench/jobs_scale.py              # about 4 minutes on 2 cores; prints figures
    python bench/jobs_scale.py --clips 6    # a longer batch

One batch of clips (generated, moving pattern, 256x192, sound on) through ``animegan-api serve`` with a real
style (AnimeGANv3 Shinkai, ONNX, frames at ``--side``), on fresh job folders, in interleaved rounds of:

- ``sqlite``: one replica, the embedded store (W=1, T=2: the whole machine);
- ``redis``: one replica, records, queue and notices in Redis (same W and T);
- ``redis x2``: two replicas sharing Redis and the folder, each T=1 (together the same two cores), the
  clips submitted to them in turn.

Throughput is frames / (last job's finish - first job's submit). The shared store's cost per frame is
(``redis`` - ``sqlite``) wall time over the frames, best run against best run; it includes everything
Redis adds (progress saves twice a second, notices, the queue's claims and heartbeats), and is noise
where it is smaller than the spread of the ``sqlite`` runs. ``redis x2`` on one 2-core machine measures
the sharing, not more hardware: two T=1 replicas against one T=2 replica.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from local_server import free_port, job_document, start_server, stop
from videos import make_clip

SHARED = Path(__file__).resolve().parents[2] / "shared"
STYLE = "animeganv3_shinkai"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHARED / "models")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--side", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        weights = root / "weights"
        weights.mkdir()
        for name in (STYLE + ".onnx", STYLE + ".onnx.json"):
            (weights / name).symlink_to((args.weights / name).resolve())
        clips = [make_clip(root / f"clip{i}.mp4", (256, 192), args.frames, audio="aac") for i in range(args.clips)]
        redis = _redis(root / "redis")
        configs = {"sqlite": (1, None), "redis": (1, redis[1]), "redis x2": (2, redis[1])}
        walls: dict[str, list[float]] = {name: [] for name in configs}
        try:
            for round_ in range(args.rounds):  # interleaved: the machine's speed drifts over minutes
                for name, (replicas, url) in configs.items():
                    folder = root / f"{name.replace(' ', '')}{round_}"
                    walls[name].append(_run(weights, folder, clips, args.side, replicas, url))
        finally:
            redis[0].terminate()
            redis[0].wait(10)
    frames = args.clips * args.frames
    print(f"{args.clips} clips x {args.frames} frames at {args.side} px, style {STYLE}, {args.rounds} rounds")
    print(f"{'run':<10}{'best s':>8}{'median s':>10}{'frames/s (best)':>17}   every run (s)")
    for name, times in walls.items():
        every = " ".join(f"{t:.1f}" for t in times)
        print(f"{name:<10}{min(times):>8.2f}{statistics.median(times):>10.2f}{frames / min(times):>17.2f}   {every}")
    base, shared, two = (min(walls[name]) for name in configs)
    spread = (max(walls["sqlite"]) - base) / base
    cost_ms = (shared - base) / frames * 1000
    print(f"shared store cost (best against best): {cost_ms:+.2f} ms a frame ({shared / base - 1:+.1%})")
    print(f"two replicas sharing Redis: {base / two:.2f}x one; spread of the sqlite runs {spread:.1%}")
    return 0


def _redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    folder.mkdir()
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    process = subprocess.Popen([*command, "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)
    subprocess.run(["redis-cli", "-p", str(port), "flushall"], check=True, capture_output=True)
    return process, url


def _run(weights: Path, folder: Path, clips: list[Path], side: int, replicas: int, redis: str | None) -> float:
    """Wall seconds from the first submit to the last job's finish."""
    folder.mkdir()
    if redis is not None:
        subprocess.run(["redis-cli", "-u", redis, "flushall"], check=True, capture_output=True)
    threads = str(2 // replicas)
    env = {"ANIMEGAN_JOB_DIR": str(folder / "jobs"), "ANIMEGAN_RATE_LIMIT_ENABLED": "false", "OMP_NUM_THREADS": threads}
    if redis is not None:
        env["ANIMEGAN_REDIS_URL"] = redis
    servers = [
        start_server(weights, ["--threads", threads], log=folder / f"server{i}.log", env=env) for i in range(replicas)
    ]
    try:
        ids = []
        for index, clip in enumerate(clips):
            url = servers[index % replicas][1]
            files = {"file": (clip.name, clip.read_bytes())}
            answer = httpx.post(f"{url}/v1/jobs", files=files, data={"max_side": str(side)}, timeout=60)
            answer.raise_for_status()
            ids.append(answer.json()["id"])
        documents = [job_document(servers[0][1], job_id, timeout_s=900) for job_id in ids]
    finally:
        for process, _ in servers:
            stop(process)
    assert all(doc["status"] == "succeeded" for doc in documents), documents
    first = min(_time(doc["created_at"]) for doc in documents)
    return max(_time(doc["finished_at"]) for doc in documents) - first


def _time(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    raise SystemExit(main())
