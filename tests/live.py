"""A real ``animegan-api serve`` process on a free loopback port, and raw-socket clients for it."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from local_server import start_server, status_mib


class Server:
    """``animegan-api serve`` for one test, on its own port, with its log kept for the failure message."""

    def __init__(self, weights: Path, log: Path, *args: str, **env: str) -> None:
        self.log = log
        self.process, self.url = start_server(
            weights,
            list(args),
            log=log,
            env={"ANIMEGAN_WARMUP_SIDE": "64", "ANIMEGAN_JOB_DIR": str(log.parent / "jobs"), **env},
            timeout_s=90,
        )
        self.port = int(self.url.rsplit(":", 1)[1])

    def rss_bytes(self) -> int:
        return int(status_mib(self.process.pid) * 1024 * 1024)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def eventually(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Re-check a live server's state until ``condition`` holds; fail naming ``what`` after ``within_s``.

    The server is another process, so there is no event to wait on: the state
    is read again every few milliseconds, and the bound is stated by the test
    (as a multiple of a forward it measured, where a forward is what it waits for).
    """
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within_s:.1f} s"
        time.sleep(0.005)


def forward_seconds(url: str, photo: bytes, max_side: int = 512) -> float:
    """One warm request's model time for ``photo``, from its ``Server-Timing``: the unit live bounds are stated in."""
    response = httpx.post(
        f"{url}/v1/transform", files={"image": ("p.jpg", photo)}, data={"max_side": str(max_side)}, timeout=120
    )
    assert response.status_code == 200, response.text
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    return float(timing["inference"]) / 1000


def raw_request(port: int, head: bytes, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body)
    return sock


def multipart_post(port: int, data: bytes, fields: dict[str, str] | None = None) -> socket.socket:
    """Send one ``POST /v1/transform`` on a fresh connection and hand back the socket to read or drop."""
    return raw_request(port, multipart_request(data, fields))


def multipart_request(data: bytes, fields: dict[str, str] | None = None, boundary: str = "liveboundary") -> bytes:
    """A complete ``POST /v1/transform`` with ``Connection: close``, built once and replayed."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (fields or {}).items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST /v1/transform HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def timed_exchange(port: int, request: bytes) -> tuple[str, float, dict[str, str]]:
    """Send one request on a fresh connection; (status or error name, seconds to the full reply, headers).

    A bare socket client, so the figure is the server's time and not an HTTP
    library's overhead on a machine whose cores the model already fills.
    """
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        reply = await reader.read()
        writer.close()
    except OSError as exc:
        return type(exc).__name__, time.perf_counter() - started, {}
    elapsed = time.perf_counter() - started
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    return (head[0].split(" ")[1] if head and " " in head[0] else "empty"), elapsed, headers
