"""Start ``animegan-api serve`` on a free loopback port for a benchmark, and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    weights: Path, args: list[str], *, log: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The server process and its URL, once ``/readyz`` answers 200 (at most two minutes)."""
    port = free_port()
    environment = {**os.environ, "ANIMEGAN_WEIGHTS_DIR": str(weights), **(env or {})}
    output = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "animegan_api", "serve", "--port", str(port), *args],
        env=environment, stdout=output, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"server did not start{f'; see {log}' if log else ''}")
