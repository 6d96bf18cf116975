"""Jobs through one replica and through two sharing Redis: throughput, and what the shared store costs a frame.

    python bench/jobs_scale.py              # about 7 minutes on 2 cores; prints figures
    python bench/jobs_scale.py --clips 6    # a longer batch

One batch of clips (generated, moving pattern, 256x192, sound on) through ``animegan-api serve`` with a real
style (AnimeGANv3 Shinkai, ONNX, frames at ``--side``), on fresh job folders, in interleaved rounds of:

- ``sqlite``: one replica, the embedded store (W=1, T=2: the whole machine);
- ``redis``: one replica, records, queue and notices in Redis (same W and T);
- ``redis x2``: two replicas sharing Redis and the folder, each T=1 (together the same two cores), the
  clips submitted to them in turn;
- ``s3``, ``s3 x2``: as ``redis`` and ``redis x2``, the files in a bucket (``ANIMEGAN_JOB_STORE``) on an
  S3 endpoint on loopback (moto's server, in memory): each job's input goes up at submit, comes down to
  the replica that runs it, and its result goes up. No network lies between them, so this is the
  protocol's and the copies' cost, not a real store's latency.

Throughput is frames / (last job's finish - first job's submit). The shared store's cost per frame is
(``redis`` - ``sqlite``) wall time over the frames, best run against best run (and ``s3`` - ``redis`` for
the bucket); it includes everything
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

import boto3
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
        redis, s3 = _redis(root / "redis"), _moto(root / "moto.log")
        configs = {
            "sqlite": (1, None, None),
            "redis": (1, redis[1], None),
            "redis x2": (2, redis[1], None),
            "s3": (1, redis[1], s3[1]),
            "s3 x2": (2, redis[1], s3[1]),
        }
        walls: dict[str, list[float]] = {name: [] for name in configs}
        try:
            for round_ in range(args.rounds):  # interleaved: the machine's speed drifts over minutes
                for name, (replicas, url, endpoint) in configs.items():
                    folder = root / f"{name.replace(' ', '')}{round_}"
                    walls[name].append(_run(weights, folder, clips, args.side, replicas, url, endpoint))
        finally:
            for process in (redis[0], s3[0]):
                process.terminate()
                process.wait(10)
    frames = args.clips * args.frames
    print(f"{args.clips} clips x {args.frames} frames at {args.side} px, style {STYLE}, {args.rounds} rounds")
    print(f"{'run':<10}{'best s':>8}{'median s':>10}{'frames/s (best)':>17}   every run (s)")
    for name, times in walls.items():
        every = " ".join(f"{t:.1f}" for t in times)
        print(f"{name:<10}{min(times):>8.2f}{statistics.median(times):>10.2f}{frames / min(times):>17.2f}   {every}")
    base, shared, two, bucket, bucket_two = (min(walls[name]) for name in configs)
    spread = (max(walls["sqlite"]) - base) / base
    cost_ms = (shared - base) / frames * 1000
    print(f"shared store cost (best against best): {cost_ms:+.2f} ms a frame ({shared / base - 1:+.1%})")
    print(
        f"files in a bucket, over Redis alone: {(bucket - shared) / frames * 1000:+.2f} ms a frame "
        f"({bucket / shared - 1:+.1%}); two replicas: {(bucket_two - two) / frames * 1000:+.2f} ms a frame"
    )
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


def _moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free loopback port; its endpoint."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            return process, endpoint
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("moto.server did not start") from None
            time.sleep(0.05)


def _run(
    weights: Path, folder: Path, clips: list[Path], side: int, replicas: int, redis: str | None, s3: str | None
) -> float:
    """Wall seconds from the first submit to the last job's finish."""
    folder.mkdir()
    if redis is not None:
        subprocess.run(["redis-cli", "-u", redis, "flushall"], check=True, capture_output=True)
    threads = str(2 // replicas)
    env = {"ANIMEGAN_JOB_DIR": str(folder / "jobs"), "ANIMEGAN_RATE_LIMIT_ENABLED": "false", "OMP_NUM_THREADS": threads}
    if redis is not None:
        env["ANIMEGAN_REDIS_URL"] = redis
    if s3 is not None:
        env |= _bucket(s3, folder.name)
    servers = [
        start_server(weights, ["--threads", threads], log=folder / f"server{i}.log", env=_own_dir(env, folder, i))
        for i in range(replicas)
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


def _bucket(endpoint: str, name: str) -> dict[str, str]:
    """A new bucket on the endpoint; the variables that point a replica at it."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    bucket = "bench-" + name.replace("x", "-").lower()
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    client.create_bucket(Bucket=bucket)
    return {**env, "ANIMEGAN_JOB_STORE": f"s3://{bucket}/jobs"}


def _own_dir(env: dict[str, str], folder: Path, index: int) -> dict[str, str]:
    """With a bucket each replica keeps its scratch in a job folder of its own, as in a cluster."""
    return {**env, "ANIMEGAN_JOB_DIR": str(folder / f"jobs{index}")} if "ANIMEGAN_JOB_STORE" in env else env


def _time(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    raise SystemExit(main())
