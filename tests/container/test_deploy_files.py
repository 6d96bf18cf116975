"""The container and cluster files: linted, validated, consistent, and the entrypoint run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from streaq import Worker

from animegan_api.config import Settings
from animegan_api.runtime.memory import default_budget
from local_server import free_port, launch, wait_ready

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _dockerfile_env() -> dict[str, str]:
    """The final stage's ENV, as the image would set it."""
    final_stage = _dockerfile().split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", final_stage, flags=re.M | re.S):
        for pair in shlex.split(block.replace("\\\n", " ")):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_hadolint_passes() -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_validate_strictly() -> None:
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--kubernetes-version", "1.30.0", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {m.name for m in MANIFESTS} >= {"deployment.yaml", "service.yaml", "pdb.yaml", "redis.yaml", "jobs-pvc.yaml"}


def test_manifests_agree_with_the_service() -> None:
    deployment = yaml.safe_load((REPO / "deploy/kubernetes/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    workers, threads = int(env["ANIMEGAN_WORKERS"]), int(env["ANIMEGAN_THREADS"])
    assert env["OMP_NUM_THREADS"] == env["ANIMEGAN_THREADS"]
    assert (
        float(container["resources"]["requests"]["cpu"])
        == float(container["resources"]["limits"]["cpu"])
        == workers * threads
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    drain = float(env["ANIMEGAN_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= drain + container["lifecycle"]["preStop"]["sleep"]["seconds"] + 10
    assert any(v["name"] == "weights" and v["readOnly"] for v in container["volumeMounts"])
    # No request the settings admit may get the pod OOM-killed: the budget comes from the pod's limit, with headroom.
    limit = _bytes(container["resources"]["limits"]["memory"])
    budget_mb = int(env.get("ANIMEGAN_MEMORY_BUDGET_MB", "-1"))
    assert budget_mb != 0, "the memory budget must not be turned off in the shipped manifest"
    budget = budget_mb * 1024 * 1024 if budget_mb > 0 else default_budget(limit)
    assert budget <= limit - 256 * 1024 * 1024


def test_replicas_share_jobs_and_scale_on_the_job_queue() -> None:
    """Redis and a RWX job volume for every replica; KEDA scales on the very stream the service's queue uses."""
    deployment = yaml.safe_load((REPO / "deploy/kubernetes/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    redis_service = list(yaml.safe_load_all((REPO / "deploy/kubernetes/redis.yaml").read_text()))[1]
    address = f"{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}"
    assert env["ANIMEGAN_REDIS_URL"] == f"redis://{address}/0"
    claim = yaml.safe_load((REPO / "deploy/kubernetes/jobs-pvc.yaml").read_text())
    jobs = next(v for v in pod["volumes"] if v["name"] == "jobs")
    assert jobs["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    scaled = yaml.safe_load((REPO / "deploy/kubernetes/keda/scaledobject.yaml").read_text())
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    triggers = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
    assert triggers["cpu"]["metadata"]["value"] == "70" and triggers["cpu"]["metricType"] == "Utilization"
    queue = Worker(redis_url="redis://unused", queue_name=Settings().redis_prefix + "jobs")
    streams = triggers["redis-streams"]["metadata"]
    assert streams["stream"] == queue.stream_key + queue.priorities[0] and streams["address"] == address
    assert int(streams["streamLength"]) == int(env.get("ANIMEGAN_JOB_WORKERS", "1"))  # a pod per job it can run


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_dockerfile_and_compose_agree_with_the_service() -> None:
    dockerfile = _dockerfile()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2  # multi-stage
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile  # the default real users build with
    assert 'export PIP_INDEX_URL="$TORCH_INDEX"' in dockerfile and "pip install torch==2.13.0" in dockerfile
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
    assert re.search(r"^USER \d+$", dockerfile, re.M) and "STOPSIGNAL SIGTERM" in dockerfile
    assert '["animegan-api", "healthcheck"]' in dockerfile.split("HEALTHCHECK", 1)[1]  # follows the server's port
    env = _dockerfile_env()
    assert env["ANIMEGAN_WEIGHTS_DIR"] == "/weights" and env["OMP_NUM_THREADS"] == env["ANIMEGAN_THREADS"]
    compose = yaml.safe_load((REPO / "docker/compose.yaml").read_text())
    for name in ("animegan", "animegan-2"):  # two replicas sharing Redis and the job volume
        service = compose["services"][name]
        assert any(v.endswith(":/weights:ro") for v in service["volumes"]) and "jobs:/jobs" in service["volumes"]
        assert service["environment"]["ANIMEGAN_REDIS_URL"] == "redis://redis:6379/0"
    assert "--appendonly" in compose["services"]["redis"]["command"]
    assert compose["services"]["prometheus"]["volumes"][0].startswith("./prometheus.yml")
    scrape = yaml.safe_load((REPO / "docker/prometheus.yml").read_text())["scrape_configs"][0]
    targets = scrape["static_configs"][0]["targets"]
    assert scrape["metrics_path"] == "/metrics" and targets == ["animegan:8000", "animegan-2:8000"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "*.pt", "*.onnx"} <= set(ignored)


@pytest.mark.e2e
@pytest.mark.real_weights
def test_the_image_entrypoint_runs_outside_docker(shared: Path, tmp_path: Path) -> None:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", _dockerfile(), re.M).group(1))
    assert entrypoint == ["animegan-api", "serve", "--host", "0.0.0.0"]
    port = free_port()
    env = {
        **os.environ,
        **_dockerfile_env(),
        "ANIMEGAN_WEIGHTS_DIR": str(shared / "models"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    log = tmp_path / "server.log"
    process = launch([*entrypoint, "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout_s=90, log=log)
        photo = (shared / "photos" / "face_02.jpg").read_bytes()
        response = httpx.post(
            f"{url}/v1/transform", files={"image": ("f.jpg", photo)}, data={"max_side": "256"}, timeout=60
        )
        assert response.status_code == 200
        assert "animegan_inference_seconds_count" in httpx.get(f"{url}/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "animegan_api.access" and line["route"] == "/v1/transform"]
    assert len(access) == 1 and access[0]["status"] == 200 and access[0]["style"] == "animeganv2_hayao"
    assert not any(line["logger"] == "uvicorn.access" for line in lines)
