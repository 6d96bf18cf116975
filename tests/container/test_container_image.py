"""The container image, run for real with podman as the Kubernetes Deployment runs it.

Needs the image (``make image``); skips without it unless ANIMEGAN_REQUIRE_CONTAINER=1 (CI).
One container serves the module's tests in order: health, styles, logs, the largest request,
then SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import save_random_generator
from local_server import free_port

pytestmark = [pytest.mark.container, pytest.mark.real_weights]
REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("ANIMEGAN_IMAGE", "localhost/animegan-api:local")
PODMAN = ["podman", "--runtime", "runc"]  # crun refuses this machine's hybrid cgroups
# The ports with a listening TCP socket, from /proc/net/tcp (the image has no ss or netstat).
PORT_PROBE = (
    "import pathlib; rows = pathlib.Path('/proc/net/tcp').read_text().splitlines()[1:]; "
    "print(*{int(r.split()[1].split(':')[1], 16) for r in rows if r.split()[3] == '0A'})"
)
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]  # podman's defaults exceed the hard limits
DEPLOYMENT = REPO / "deploy" / "kubernetes" / "deployment.yaml"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def image() -> str:
    required = os.environ.get("ANIMEGAN_REQUIRE_CONTAINER") == "1"
    if shutil.which("podman") is None or podman("image", "exists", IMAGE, check=False).returncode != 0:
        message = f"podman or the image {IMAGE} is missing (make image)"
        if required:
            pytest.fail(message + " and ANIMEGAN_REQUIRE_CONTAINER=1")
        pytest.skip(message)
    return IMAGE


def deployment_container() -> dict[str, Any]:
    return yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"][0]


def run_flags(shared: Path) -> list[str]:
    """The Deployment's limits, env, read-only root with /tmp as tmpfs, and weights read-only at /weights."""
    container = deployment_container()
    limits = container["resources"]["limits"]
    memory = limits["memory"].replace("Gi", "g").replace("Mi", "m")
    env = [f"--env={item['name']}={item['value']}" for item in container["env"]]
    return [
        *ULIMITS,
        f"--memory={memory}",
        f"--cpus={limits['cpu']}",
        "--read-only",
        "--tmpfs=/tmp",
        f"--volume={shared / 'models'}:/weights:ro",
        *env,
    ]


class Container:
    def __init__(self, name: str, port: int) -> None:
        self.name, self.url = name, f"http://127.0.0.1:{port}"

    def inspect(self, template: str) -> str:
        return podman("inspect", self.name, "--format", template).stdout.strip()

    def logs(self) -> list[dict[str, Any]]:
        result = podman("logs", self.name)
        return [json.loads(line) for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def container(image: str, shared: Path) -> Iterator[Container]:
    name, port = f"animegan-test-{uuid.uuid4().hex[:8]}", free_port()
    podman("run", "--detach", f"--name={name}", f"--publish=127.0.0.1:{port}:8000", *run_flags(shared), image)
    running = Container(name, port)
    try:
        yield running
    finally:
        podman("rm", "--force", "--time=5", name, check=False)


def test_image_runs_as_its_own_user_and_keeps_no_build_secrets(image: str) -> None:
    assert podman("image", "inspect", image, "--format", "{{.Config.User}}").stdout.strip() == "10001"
    script = "id -u; id -g; pip config list; ls /run/secrets 2>/dev/null | wc -l"
    uid, gid, *rest = podman("run", "--rm", *ULIMITS, "--entrypoint=sh", image, "-c", script).stdout.split("\n")
    assert (uid, gid) == ("10001", "10001")
    assert "find-links" not in "\n".join(rest) and "index-url" not in "\n".join(rest)
    size = int(podman("image", "inspect", image, "--format", "{{.Size}}").stdout)
    print(f"\nimage {image}: {size / 1e6:.0f} MB")


def test_healthcheck_turns_healthy_and_readyz_answers(container: Container) -> None:
    deadline = time.monotonic() + 180
    while podman("healthcheck", "run", container.name, check=False).returncode != 0:
        assert time.monotonic() < deadline, podman("logs", container.name).stderr[-2000:]
        time.sleep(2)
    ready = httpx.get(f"{container.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert container.inspect("{{.State.Health.Status}}") == "healthy"
    assert podman("exec", container.name, "id", "-u").stdout.strip() == "10001"
    assert podman("exec", container.name, "touch", "/app/x", check=False).returncode != 0  # read-only root
    podman("exec", container.name, "touch", "/tmp/x")  # the tmpfs is writable


@pytest.mark.parametrize("moved", [["--env=ANIMEGAN_PORT=8123"], ["--port", "8124"]], ids=["env", "argument"])
def test_the_healthcheck_follows_a_moved_port(image: str, tmp_path: Path, moved: list[str]) -> None:
    """A server told to listen elsewhere is reported healthy, not failing on a fixed 8000."""
    weights = tmp_path / "weights"
    weights.mkdir()
    save_random_generator(weights / "random.pt")
    weights.chmod(0o755)
    env, args = (
        [flag for flag in moved if flag.startswith("--env")],
        [flag for flag in moved if not flag.startswith("--env")],
    )
    name = f"animegan-port-{uuid.uuid4().hex[:8]}"
    podman("run", "--detach", f"--name={name}", *ULIMITS, f"--volume={weights}:/weights:ro", *env, image, *args)
    try:
        deadline = time.monotonic() + 120  # a container start: seconds, not forwards
        while podman("healthcheck", "run", name, check=False).returncode != 0:
            assert time.monotonic() < deadline, podman("logs", name).stderr[-2000:]
            time.sleep(1)
        listening = podman("exec", name, "python", "-c", PORT_PROBE).stdout.split()
        assert ("8123" if env else "8124") in listening and "8000" not in listening
    finally:
        podman("rm", "--force", "--time=5", name, check=False)


def test_every_style_converts_a_real_photo(container: Container, shared: Path) -> None:
    styles = httpx.get(f"{container.url}/v1/styles", timeout=10).json()["styles"]
    on_disk = {json.loads(path.read_text())["name"] for path in (shared / "models").glob("*.json")}
    assert {style["name"] for style in styles} == on_disk
    photo = (shared / "photos" / "face_02.jpg").read_bytes()
    for style in styles:
        form = {"style": style["name"], "max_side": "256"}
        response = httpx.post(f"{container.url}/v1/transform", files={"image": ("f.jpg", photo)}, data=form, timeout=60)
        assert response.status_code == 200, (style["name"], response.text)
    avatar = httpx.post(
        f"{container.url}/v1/avatar", files={"image": ("f.jpg", photo)}, data={"size": "128"}, timeout=60
    )
    assert avatar.status_code == 200 and avatar.headers["x-faces-found"] == "1"


def test_logs_are_json_with_one_access_line_per_request(container: Container) -> None:
    ids = [uuid.uuid4().hex[:16] for _ in range(3)]
    for request_id in ids:
        httpx.get(f"{container.url}/v1/styles", headers={"X-Request-ID": request_id}, timeout=10)
    lines = container.logs()  # every line parses as JSON
    access = [line for line in lines if line.get("logger") == "animegan_api.access"]
    assert [sum(line["request_id"] == request_id for line in access) for request_id in ids] == [1, 1, 1]
    assert not any(line.get("logger") == "uvicorn.access" for line in lines)


def test_the_largest_admitted_request_does_not_get_the_container_oom_killed(container: Container, shared: Path) -> None:
    """The 4K photo at the largest max_side, kept at its size: answered or refused, never killed."""
    photo = (shared / "photos" / "street_03_4k.jpg").read_bytes()
    form = {"style": "animeganv2_hayao", "max_side": "2048", "keep_size": "true", "format": "jpeg"}
    response = httpx.post(f"{container.url}/v1/transform", files={"image": ("s.jpg", photo)}, data=form, timeout=120)
    assert response.status_code in (200, 413, 504), response.text
    stats = podman("stats", "--no-stream", "--format", "{{.MemUsage}}", container.name).stdout.strip()
    print(f"\n4K at max_side 2048: {response.status_code}, memory now {stats}")
    assert container.inspect("{{.State.OOMKilled}}") == "false"
    assert container.inspect("{{.State.Running}}") == "true"
    assert httpx.get(f"{container.url}/readyz", timeout=10).status_code == 200


def test_sigterm_drains_the_request_in_flight_and_exits_0(container: Container, shared: Path) -> None:
    photo = (shared / "photos" / "street_01.jpg").read_bytes()
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        form = {"style": "animeganv2_hayao", "max_side": "1024"}
        outcome["response"] = httpx.post(
            f"{container.url}/v1/transform", files={"image": ("s.jpg", photo)}, data=form, timeout=120
        )

    worker = threading.Thread(target=slow_request)
    worker.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{container.url}/readyz", timeout=10).json()["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    podman("stop", "--time=60", container.name, timeout=90)
    worker.join(timeout=60)
    assert outcome["response"].status_code == 200
    assert container.inspect("{{.State.ExitCode}}") == "0"
    assert container.inspect("{{.State.OOMKilled}}") == "false"
    assert any("drain" in line.get("msg", "") for line in container.logs())


@pytest.fixture
def weights_volume(image: str, shared: Path) -> Iterator[str]:
    """The claim ``animegan-weights`` as podman's named volume, holding the test models."""
    name = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["volumes"][0]
    claim = name["persistentVolumeClaim"]["claimName"]
    podman("volume", "rm", "--force", claim, check=False)
    podman("volume", "create", claim)
    archive = subprocess.run(["tar", "-C", str(shared / "models"), "-c", "."], capture_output=True, check=True).stdout
    imported = subprocess.run([*PODMAN, "volume", "import", claim, "-"], input=archive, capture_output=True)
    assert imported.returncode == 0, imported.stderr
    try:
        yield claim
    finally:
        podman("volume", "rm", "--force", claim, check=False)


def test_the_deployment_manifest_runs_under_podman_kube_play(image: str, weights_volume: str, tmp_path: Path) -> None:
    """deploy/kubernetes/deployment.yaml itself, changed only to be reachable: the local image, one replica
    (podman runs each replica as a pod, and two cannot share a host port), and a hostPort."""
    port = free_port()
    manifest = yaml.safe_load(DEPLOYMENT.read_text())
    manifest["spec"]["replicas"] = 1
    spec = manifest["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = image
    spec["containers"][0]["ports"][0]["hostPort"] = port
    played = tmp_path / "deployment.yaml"
    played.write_text(yaml.safe_dump(manifest))
    config = tmp_path / "containers.conf"  # kube play takes no --ulimit: the same limits as defaults
    config.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(config)}

    def kube(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", "kube", *args], capture_output=True, text=True, env=env, timeout=180)

    started = kube("play", "--replace", str(played))
    try:
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not ready(url):
            assert time.monotonic() < deadline, "the pod never became ready"
            time.sleep(2)
        names = podman("ps", "--format", "{{.Names}}").stdout.split()
        (name,) = [n for n in names if n.startswith(manifest["metadata"]["name"]) and n.endswith("-animegan-api")]
        shell = ["exec", name, "sh", "-c"]
        assert podman(*shell, "id -u; id -g").stdout.split() == ["10001", "10001"]  # runAsUser, runAsGroup
        assert podman(*shell, "touch /app/x", check=False).returncode != 0  # readOnlyRootFilesystem
        assert podman(*shell, "touch /weights/x", check=False).returncode != 0  # the claim, read-only
        podman(*shell, "touch /tmp/x")  # the emptyDir
        assert podman(*shell, "echo $ANIMEGAN_TRUST_FORWARDED_FOR $ANIMEGAN_DRAIN_TIMEOUT_S").stdout.split() == [
            "true",
            "30",
        ]
        limits = spec["containers"][0]["resources"]["limits"]
        host = json.loads(podman("inspect", name, "--format", "{{json .HostConfig}}").stdout)
        assert host["Memory"] == int(limits["memory"].removesuffix("Gi")) * 1024**3
        assert host["CpuQuota"] / host["CpuPeriod"] == float(limits["cpu"])
        assert host["ReadonlyRootfs"] is True and host["CapDrop"]
        answer = httpx.get(f"{url}/readyz", timeout=10).json()
        assert answer["status"] == "ready" and answer["styles"]
        pods = podman("pod", "ps", "--format", "{{.Name}}").stdout.split()
        cpus = host["CpuQuota"] / host["CpuPeriod"]
        print(f"\nkube play: pods {pods}, container {name}, memory {host['Memory']}, cpus {cpus}")
    finally:
        down = kube("down", str(played))
        for volume in spec["volumes"]:  # podman makes each emptyDir and claim a named volume that outlives the pod
            if "emptyDir" in volume:
                podman("volume", "rm", "--force", volume["name"], check=False)
            elif volume["name"] != "weights":
                podman("volume", "rm", "--force", volume["persistentVolumeClaim"]["claimName"], check=False)
        assert down.returncode == 0, down.stderr


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_compose_file_is_read_by_podman_compose(image: str) -> None:
    """A real compose implementation reads docker/compose.yaml; --dry-run prints the podman command it would run.

    (Debian's podman-compose 1.0 has no `config`; the Prometheus service's image needs a registry.)
    """
    if shutil.which("podman-compose") is None:
        pytest.fail("podman-compose is missing (apt-get install podman-compose)")
    result = subprocess.run(
        ["podman-compose", "--dry-run", "-f", str(REPO / "docker" / "compose.yaml"), "up", "--no-build", "animegan"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    creates = [line for line in result.stdout.splitlines() if line.startswith("podman create")]
    (create,) = [line for line in creates if "_animegan_1" in line]
    assert any("redis-server --appendonly yes" in line for line in creates)  # the replica depends on Redis
    for flag in ("--read-only", "--tmpfs /tmp", f"-v {REPO / 'weights'}:/weights:ro", "-p 8000:8000"):
        assert flag in create, (flag, create)
    for flag in ("--stop-signal SIGTERM", "--cpus 2.0", "-m 3g", "-e ANIMEGAN_LOG_FORMAT=json"):
        assert flag in create, (flag, create)
