"""Request heads are bounded on a real server: their size (431) and the time they may take (408)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import picture_bytes, save_random_generator
from live import Server, multipart_request

pytestmark = pytest.mark.e2e
HEAD_CAP = 8192


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("protocol")
    save_random_generator(folder / "random.pt")
    running = Server(
        folder, folder / "server.log", "--log-level", "warning",
        ANIMEGAN_MAX_HEAD_BYTES=str(HEAD_CAP), ANIMEGAN_HEAD_TIMEOUT_S="1", ANIMEGAN_RATE_LIMIT_ENABLED="false",
    )  # fmt: skip
    yield running
    running.stop()


def _read_reply(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    sock.settimeout(limit_s)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return reply


def _read_one_response(sock: socket.socket) -> bytes:
    """One whole response on a connection that stays open: its head, then content-length bytes of body."""
    sock.settimeout(5)
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _error(reply: bytes) -> tuple[int, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]["code"]


def _send(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server may answer and close first
        sock.sendall(data)
    return sock


def test_a_head_over_the_cap_is_431_and_one_under_it_is_served(server: Server) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * (HEAD_CAP * 2) + b"\r\n\r\n"
    assert _error(_read_reply(_send(server.port, big))) == (431, "request_headers_too_large")
    fine = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"X-Pad: " + b"a" * 4000 + b"\r\n\r\n"
    assert _read_reply(_send(server.port, fine)).startswith(b"HTTP/1.1 200")


def test_an_upload_larger_than_the_head_cap_is_not_counted_as_head(server: Server) -> None:
    request = multipart_request(picture_bytes((96, 96), fmt="BMP"), {"max_side": "64"})  # ~27 KB in one send
    assert len(request) > 3 * HEAD_CAP
    assert _read_reply(_send(server.port, request)).startswith(b"HTTP/1.1 200")


def test_a_head_that_trickles_in_is_408_after_the_head_timeout(server: Server) -> None:
    sock = _send(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    for _ in range(20):  # one header line every 0.2 s: each arrives in time, the head never completes
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.2)
        sock.settimeout(0.01)
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            continue
    assert _error(_read_reply(sock)) == (408, "head_timeout")
    assert time.monotonic() - started < 4  # the 1 s timeout, not the 4 s the client would keep going


def test_oversized_heads_cost_no_memory(server: Server) -> None:
    before = server.rss_bytes()
    sockets = [_send(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"b" * (4 << 20)) for _ in range(10)]
    for sock in sockets:
        _read_reply(sock)
    grown = (server.rss_bytes() - before) / 2**20
    print(f"\nRSS after 10 x 4 MiB header lines: +{grown:.1f} MiB")
    assert grown < 32
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_a_kept_alive_connection_gets_a_fresh_head_timeout_per_request(server: Server) -> None:
    sock = _send(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_one_response(sock).startswith(b"HTTP/1.1 200")
    time.sleep(0.6)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # 0.6 s in: still within 1 s
    assert _read_reply(sock).startswith(b"HTTP/1.1 200")


def test_an_idle_connection_is_closed_without_an_answer(server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    assert _read_reply(sock, limit_s=5) == b""  # closed after the head timeout, nothing sent


def test_the_settings_bound_the_limits(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from animegan_api.config import Settings

    with pytest.raises(ValidationError):
        Settings(max_head_bytes=100)
    assert Settings().max_head_bytes == 64 * 1024 and Settings().head_timeout_s == 10.0
