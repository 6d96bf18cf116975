"""Two real service processes sharing one Redis and one job folder (or one bucket): any replica answers for any job,
a cancel crosses replicas, a killed replica's job is finished by the other, Redis going away costs
only the job routes."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from live import Server, eventually
from local_server import job_document
from redis_server import RedisServer
from s3_server import S3Bucket
from videos import make_clip

pytestmark = pytest.mark.e2e
HEARTBEAT_S = 2


class Replicas:
    """Replicas started on demand, all pointed at one Redis and the same files: one job folder on a shared
    volume, or a bucket (each replica then has a job folder of its own, for scratch)."""

    def __init__(self, weights: Path, folder: Path, redis: RedisServer, bucket: S3Bucket | None) -> None:
        self.weights, self.folder, self.redis, self.bucket = weights, folder, redis, bucket
        self.started: list[Server] = []

    def start(self, name: str, workers: int, **env: str) -> Server:
        files = {"ANIMEGAN_JOB_DIR": str(self.folder / "jobs")}
        if self.bucket is not None:
            files = {"ANIMEGAN_JOB_DIR": str(self.folder / f"{name}-jobs"), "ANIMEGAN_JOB_STORE": self.bucket.url}
            files |= self.bucket.env
        server = Server(
            self.weights,
            self.folder / f"{name}.log",
            ANIMEGAN_REDIS_URL=self.redis.url,
            ANIMEGAN_JOB_WORKERS=str(workers),
            ANIMEGAN_JOB_HEARTBEAT_S=str(HEARTBEAT_S),
            ANIMEGAN_RATE_LIMIT_ENABLED="false",
            **files,
            **env,
        )
        self.started.append(server)
        return server


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest, weights_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> Iterator[Replicas]:
    """Replicas sharing a job folder; parametrized indirectly with "s3", sharing a bucket instead."""
    bucket = request.getfixturevalue("s3_bucket") if getattr(request, "param", "volume") == "s3" else None
    group = Replicas(weights_dir, tmp_path, redis_server, bucket)
    try:
        yield group
    finally:
        for server in group.started:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(30)


def _submit(server: Server, clip: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/jobs", files={"file": ("c.mp4", clip)}, headers=headers, timeout=30)


def _frames(path: Path) -> tuple[int, list[float], str | None]:
    """A video's frame count, frame times and sound codec."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = [float(frame.time) for frame in container.decode(stream) if frame.time is not None]
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    return len(stamps), stamps, audio


@pytest.mark.parametrize("replicas", ["volume", "s3"], indirect=True)
def test_any_replica_answers_for_a_job_another_one_runs(replicas: Replicas, tmp_path: Path) -> None:
    front = replicas.start("front", workers=0)  # takes jobs, runs none
    back = replicas.start("back", workers=1)
    clip = make_clip(tmp_path / "clip.mp4", size=(96, 64), frames=24, audio="aac").read_bytes()
    submitted = _submit(front, clip)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    final = job_document(front.url, job_id)  # progress written by the other replica, streamed by this one
    assert final["status"] == "succeeded" and final["done"] == 24
    result = httpx.get(f"{front.url}/v1/jobs/{job_id}/result", headers={"Range": "bytes=0-99"}, timeout=30)
    assert result.status_code == 206 and len(result.content) == 100
    (tmp_path / "result.mp4").write_bytes(httpx.get(f"{back.url}/v1/jobs/{job_id}/result", timeout=30).content)
    count, _, audio = _frames(tmp_path / "result.mp4")
    assert count == 24 and audio == "aac"
    listed = httpx.get(f"{back.url}/v1/jobs", timeout=10).json()["jobs"]
    assert [doc["id"] for doc in listed] == [job_id]
    assert httpx.delete(f"{back.url}/v1/jobs/{job_id}", timeout=10).status_code == 204
    assert httpx.get(f"{front.url}/v1/jobs/{job_id}", timeout=10).status_code == 404
    if replicas.bucket is not None:
        assert replicas.bucket.keys() == []


def test_keys_and_owners_hold_across_replicas(replicas: Replicas, tmp_path: Path) -> None:
    keys = {"ANIMEGAN_API_KEYS": "key-a,key-b"}
    one, two = replicas.start("one", workers=0, **keys), replicas.start("two", workers=0, **keys)
    clip = make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=6).read_bytes()
    first = _submit(one, clip, **{"X-API-Key": "key-a", "Idempotency-Key": "upload-7"})
    again = _submit(two, clip, **{"X-API-Key": "key-a", "Idempotency-Key": "upload-7"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    for server in (one, two):
        stranger = httpx.get(f"{server.url}/v1/jobs/{first.json()['id']}", headers={"X-API-Key": "key-b"}, timeout=10)
        assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "job_not_found"
        mine = httpx.get(f"{server.url}/v1/jobs", headers={"X-API-Key": "key-b"}, timeout=10).json()
        assert mine["jobs"] == []
    assert one.stop() == 0 and two.stop() == 0  # SIGTERM still drains and exits: the queue took no signal


def test_a_cancel_through_one_replica_stops_the_job_running_on_the_other(replicas: Replicas, tmp_path: Path) -> None:
    front = replicas.start("front", workers=0)
    replicas.start("back", workers=1)
    clip = make_clip(tmp_path / "clip.mp4", size=(320, 240), frames=600).read_bytes()
    job_id = _submit(front, clip).json()["id"]
    running = job_document(front.url, job_id, until=lambda doc: doc["done"] > 0)
    assert running["status"] == "running"
    began = time.monotonic()
    canceled = httpx.delete(f"{front.url}/v1/jobs/{job_id}", timeout=60)
    took = time.monotonic() - began
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    assert canceled.json()["done"] < 600 and took < 10, took
    back_log = replicas.folder / "back.log"
    eventually(lambda: f"job {job_id} canceled" in back_log.read_text(), 10, "the running replica's log line")
    assert not (replicas.folder / "jobs" / "files" / job_id / "input").exists()


@pytest.mark.parametrize("replicas", ["volume", "s3"], indirect=True)
def test_a_killed_replicas_job_is_finished_by_another_with_every_frame_and_its_sound(
    replicas: Replicas, tmp_path: Path
) -> None:
    doomed = replicas.start("doomed", workers=1)
    clip_path = make_clip(tmp_path / "clip.mp4", size=(192, 144), frames=90, audio="aac")
    job_id = _submit(doomed, clip_path.read_bytes()).json()["id"]
    job_document(doomed.url, job_id, until=lambda doc: doc["done"] > 0)
    heir = replicas.start("heir", workers=1)  # started now, so the job can only have begun on the doomed one
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(10)
    heir_log = replicas.folder / "heir.log"
    eventually(lambda: f"job {job_id} running" in heir_log.read_text(), 3 * HEARTBEAT_S + 10, "the takeover")
    final = job_document(heir.url, job_id)
    assert final["status"] == "succeeded", final
    assert final["done"] == 90
    finished = f"job {job_id} succeeded"
    eventually(lambda: finished in heir_log.read_text(), 10, "the log line, written just after the record")
    assert heir_log.read_text().count(finished) == 1  # delivered once
    (tmp_path / "result.mp4").write_bytes(httpx.get(f"{heir.url}/v1/jobs/{job_id}/result", timeout=30).content)
    count, stamps, audio = _frames(tmp_path / "result.mp4")
    _, source_stamps, _ = _frames(clip_path)
    assert count == 90 and stamps == pytest.approx(source_stamps, abs=1e-3) and audio == "aac"
    if replicas.bucket is not None:  # the dead replica's half-made result never reached the store
        assert replicas.bucket.job_keys(job_id) == ["result.mp4"]


def test_redis_away_costs_the_job_routes_only_and_jobs_go_on_after_a_restart(
    replicas: Replicas, tmp_path: Path, redis_server: RedisServer
) -> None:
    server = replicas.start("solo", workers=1)
    clip = make_clip(tmp_path / "clip.mp4", size=(192, 144), frames=90).read_bytes()
    job_id = _submit(server, clip).json()["id"]
    job_document(server.url, job_id, until=lambda doc: doc["done"] > 0)
    watched: dict[str, Any] = {}
    streaming = threading.Event()

    def watch() -> None:  # one events stream, open across the outage
        watched.update(
            job_document(server.url, job_id, until=lambda doc: streaming.set() or doc["status"] == "succeeded")
        )

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert streaming.wait(30)
    redis_server.stop()  # mid-job; its append-only file keeps every record and the queue
    began = time.monotonic()
    refused = _submit(server, clip)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "jobs_unavailable"
    assert time.monotonic() - began < 3 and "Retry-After" in refused.headers
    status = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10)
    assert status.status_code == 503 and status.json()["error"]["code"] == "jobs_unavailable"
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(picture, "PNG")
    files = {"image": ("p.png", picture.getvalue())}
    assert httpx.post(f"{server.url}/v1/transform", files=files, timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    redis_server.start()
    eventually(lambda: httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).status_code == 200, 30, "jobs back")
    assert job_document(server.url, job_id)["status"] == "succeeded"
    watcher.join(60)
    assert watched["status"] == "succeeded"  # the stream opened before Redis left saw the end
