"""``animegan-api healthcheck``: the container's HEALTHCHECK, on whatever port the server listens on.

A HEALTHCHECK runs as a separate process that sees the container's
environment but not the server's arguments, so a fixed URL reports a server
started with ``--port`` or ``ANIMEGAN_PORT`` elsewhere as unhealthy while it
serves. This command finds the running ``serve`` process and reads its
``--host``/``--port``; without one it falls back to the settings.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["healthy", "listening_address"]

_ANY_ADDRESS = {"0.0.0.0", "::", ""}


def listening_address(default: tuple[str, int], proc: Path = Path("/proc")) -> tuple[str, int]:
    """The host and port of the running ``animegan-api serve``, each falling back to ``default``'s."""
    host, port = default
    for argv in _command_lines(proc):
        if "serve" in argv and any("animegan" in part for part in argv[:3]):
            host = _option(argv, "--host") or host
            port = int(_option(argv, "--port") or port)
            break
    return ("127.0.0.1" if host in _ANY_ADDRESS else host), port


def healthy(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Whether ``/healthz`` answers 200 at that address."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with urllib.request.urlopen(f"http://{netloc}/healthz", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _command_lines(proc: Path) -> Iterator[list[str]]:
    """Every process's arguments, lowest PID first (the container's PID 1 before anything it started)."""
    folders = sorted((p for p in proc.glob("[0-9]*") if p.name.isdigit()), key=lambda p: int(p.name))
    for folder in folders:
        try:
            raw = (folder / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            yield raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value``, the last one winning as argparse's does."""
    value = None
    for index, part in enumerate(argv):
        if part == name and index + 1 < len(argv):
            value = argv[index + 1]
        elif part.startswith(name + "="):
            value = part.split("=", 1)[1]
    return value
