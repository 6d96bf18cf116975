"""Real uvicorn in a subprocess, real weights, real photos, real sockets."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
from PIL import Image

from animegan_api.cli import main
from animegan_api.cli.health import listening_address
from conftest import save_random_generator
from live import Server, eventually, forward_seconds, multipart_post

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("e2e") / "server.log"
    running = Server(shared / "models", log, "--workers", "1", "--max-queue", "2")
    yield running
    running.stop()


@pytest.mark.real_weights
def test_real_photo_over_real_http(server: Server, shared: Path) -> None:
    data = (shared / "photos" / "face_05.jpg").read_bytes()
    response = httpx.post(
        f"{server.url}/v1/transform", files={"image": ("face.jpg", data)}, data={"max_side": "256"}, timeout=60
    )
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (256, 252)
    assert "server" not in response.headers
    styles = httpx.get(f"{server.url}/v1/styles").json()["styles"]
    assert [s["name"] for s in styles] == [
        "animeganv2_hayao",
        "animeganv3_cute",
        "animeganv3_hayao",
        "animeganv3_shinkai",
    ]
    assert all(s["loaded"] and s["available"] for s in styles)


@pytest.mark.real_weights
def test_client_that_leaves_the_queue_never_reaches_the_model(server: Server, shared: Path) -> None:
    photo = (shared / "photos" / "street_01.jpg").read_bytes()
    forward = forward_seconds(server.url, photo)  # also fills the result cache: the requests below differ in size

    def ready() -> dict[str, int]:
        state: dict[str, int] = httpx.get(f"{server.url}/readyz").json()
        return state

    busy = multipart_post(server.port, photo, fields={"max_side": "508"})  # takes the only worker for one forward
    eventually(lambda: ready()["in_flight"] == 1, forward, "the first request reaching the model")
    leaver = multipart_post(server.port, photo, fields={"max_side": "504"})
    eventually(lambda: ready()["queued"] == 1, forward, "the second request queueing behind it")
    leaver.close()
    busy.settimeout(60)
    status_line = b""
    while b"\r\n" not in status_line and (chunk := busy.recv(4096)):  # a segment may hold less than a line
        status_line += chunk
    assert status_line.startswith(b"HTTP/1.1 200")
    busy.close()
    eventually(lambda: "inference skipped" in server.log.read_text(), 2 * forward, "the leaver's skip")
    idle = httpx.get(f"{server.url}/readyz").json()
    assert idle["in_flight"] == 0 and idle["queued"] == 0


def test_the_healthcheck_follows_the_server_to_its_port(server: Server) -> None:
    assert server.port != 8000
    assert listening_address(("127.0.0.1", 8000))[1] == server.port  # read from the serve process's arguments
    assert main(["healthcheck", "--port", str(server.port)]) == 0


@pytest.mark.real_weights
def test_sigterm_shuts_down_gracefully_with_exit_0(server: Server) -> None:
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log


def test_sighup_rescans_the_weights_folder(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    save_random_generator(weights / "first.pt")
    server = Server(weights, tmp_path / "server.log")
    try:
        save_random_generator(weights / "second.pt", seed=1)
        server.process.send_signal(signal.SIGHUP)
        styles = f"{server.url}/v1/styles"
        both = {"first", "second"}
        eventually(lambda: {s["name"] for s in httpx.get(styles).json()["styles"]} == both, 30, "the reload")
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(("setting", "expected"), [("true", True), ("false", False)])
def test_serve_restarts_itself_with_hugepage_malloc(tmp_path: Path, setting: str, expected: bool) -> None:
    """The tunable must be in the environment glibc read at start: /proc/PID/environ of the running server."""
    weights = tmp_path / "weights"
    weights.mkdir()
    save_random_generator(weights / "r.pt")
    environment = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    with mock.patch.dict(os.environ, environment, clear=True):
        server = Server(weights, tmp_path / "server.log", ANIMEGAN_MALLOC_HUGEPAGES=setting)
    try:
        started_with = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        assert (b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in started_with) is expected
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        assert server.stop() == 0
