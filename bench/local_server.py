"""Local processes for benchmarks and tests: a server on a free loopback port, ready when it answers.

Also reads a process's memory from /proc.

The one place that knows how to do this; ``tests/`` puts this folder on its
import path and uses it too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def job_document(
    url: str, job_id: object, until: Callable[[dict[str, Any]], object] | None = None, timeout_s: float | None = 300
) -> dict[str, Any]:
    """A job's document from its events stream: the first for which ``until`` holds, else the last (the
    stream ends when the job does)."""
    last: dict[str, Any] = {}
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=timeout_s) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line[6:])
                if until is not None and until(last):
                    break
    return last


def launch(command: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    output = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    path: str = "/readyz",
    timeout_s: float = 120,
    log: Path | None = None,
) -> None:
    """Until ``url + path`` answers 200; raises (with the log) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    detail = log.read_text(errors="replace")[-4000:] if log and log.exists() else "(no log kept)"
    raise RuntimeError(f"{url}{path} did not become ready (exit status {process.poll()}):\n{detail}")


def start_server(
    weights: Path,
    args: list[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
) -> tuple[subprocess.Popen[bytes], str]:
    """``animegan-api serve`` on a free port: the process and its URL, once ``/readyz`` answers 200."""
    port = free_port()
    environment = {**os.environ, "ANIMEGAN_WEIGHTS_DIR": str(weights), **(env or {})}
    process = launch([sys.executable, "-m", "animegan_api", "serve", "--port", str(port), *args], environment, log)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, timeout_s=timeout_s, log=log)
    return process, url


def access_ms(log: Path, status: int, path: str = "/v1/transform") -> list[float]:
    """Sorted server-side durations (ms) of the ``status`` answers to ``path``, from the access log lines

    ``animegan_api.access: POST /v1/transform 503 1.4 ms``: the server's own clock, free of the client's
    share of the cores.
    """
    marker = f" {path} {status} "
    durations = [
        float(line.rsplit(" ", 2)[1]) for line in log.read_text(errors="replace").splitlines() if marker in line
    ]
    return sorted(durations)


def status_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure from ``/proc/PID/status`` (VmRSS now, VmHWM the peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def start_baseline(model: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``bench/baseline_flask.py`` as such scripts are deployed: glibc's default malloc, no tunables."""
    port = free_port()
    script = Path(__file__).resolve().parent / "baseline_flask.py"
    process = launch(
        [sys.executable, str(script), "--weights", str(model), "--port", str(port)],
        {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, path="/health")
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_idle(pid: int, quiet_s: float = 1.0, limit_s: float = 300.0) -> None:
    """Until the process has used under 5% of a core for ``quiet_s`` (its abandoned work is done)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(quiet_s)
        if _cpu_seconds(pid) - before < 0.05 * quiet_s:
            return


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
