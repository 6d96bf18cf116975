"""Jobs across a restart of the real process: SIGTERM with one running and one queued, then both finish."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from live import Server
from local_server import job_document
from videos import make_clip

pytestmark = pytest.mark.e2e


def test_sigterm_puts_the_running_job_back_and_a_restart_finishes_both(weights_dir: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", size=(128, 96), frames=120).read_bytes()
    jobs = str(tmp_path / "jobs")
    server = Server(weights_dir, tmp_path / "first.log", ANIMEGAN_JOB_DIR=jobs, ANIMEGAN_RATE_LIMIT_ENABLED="false")
    try:
        ids = []
        for _ in range(2):
            response = httpx.post(f"{server.url}/v1/jobs", files={"file": ("c.mp4", clip)}, timeout=30)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        def state(job_id: str) -> dict[str, object]:
            body: dict[str, object] = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).json()
            return body

        with httpx.stream("GET", f"{server.url}/v1/jobs/{ids[0]}/events", timeout=60) as events:
            for line in events.iter_lines():  # the first progress event: the job is running, frames done
                if line.startswith("data: ") and json.loads(line[6:])["done"] > 0:
                    break
        assert state(ids[1])["status"] == "queued"
    finally:
        began = time.monotonic()
        assert server.stop() == 0
        stopped_in = time.monotonic() - began
    assert stopped_in < 20, f"the drain waited {stopped_in:.1f} s for a job"  # jobs are not drained, they are queued
    restarted = Server(weights_dir, tmp_path / "second.log", ANIMEGAN_JOB_DIR=jobs, ANIMEGAN_RATE_LIMIT_ENABLED="false")
    try:
        first = httpx.get(f"{restarted.url}/v1/jobs/{ids[0]}", timeout=10).json()
        assert first["status"] in ("queued", "running")
        for job_id in ids:
            assert job_document(restarted.url, job_id)["status"] == "succeeded"
            result = httpx.get(f"{restarted.url}/v1/jobs/{job_id}/result", timeout=30)
            assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    finally:
        restarted.stop()
    log = (tmp_path / "first.log").read_text()
    assert "requeued" in log, log[-2000:]
