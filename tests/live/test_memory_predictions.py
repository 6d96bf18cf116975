"""What admission predicts a request needs, against the process's measured peak, per real style at 512 and 2048 px.

A real server (one worker, so one request at a time) with the ONNX styles'
memory profiles measured by ``animegan-api memory-profile`` beforehand. For
each request: the resident set before it plus what admission reserved for it
(``memory_bytes`` in its access line) is the peak the budget counts on; the
process's peak resident set during it (VmHWM, reset before) is what it used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live import Server, eventually
from local_server import status_mib

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]
STYLES = ["animeganv2_hayao", "animeganv3_hayao", "animeganv3_shinkai", "animeganv3_cute"]


@pytest.fixture(scope="module")
def server(shared: Path, memory_profiles: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("memory-predictions")
    running = Server(
        shared / "models", folder / "server.log", "--workers", "1", "--threads", "2", "--request-timeout-s", "240",
        ANIMEGAN_MEMORY_PROFILE_DIR=str(memory_profiles), ANIMEGAN_MEMORY_BUDGET_MB="6144",
        ANIMEGAN_MAX_SIDE_LIMIT="2048", ANIMEGAN_CACHE_MAX_BYTES="0", ANIMEGAN_LOG_FORMAT="json",
        ANIMEGAN_RATE_LIMIT_ENABLED="false", ANIMEGAN_WARMUP_SIDE="256",
    )  # fmt: skip
    yield running
    running.stop()


def _reserved(log: Path, request_id: str) -> int:
    """``memory_bytes`` of the request's access line in the server's JSON log (written once it has answered)."""
    found: list[int] = []

    def logged() -> bool:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        found.extend(line["memory_bytes"] for line in lines if line.get("request_id") == request_id)
        return bool(found)

    eventually(logged, 10, f"the access line of {request_id}")
    return found[0]


@pytest.mark.parametrize("side", [512, 2048])
def test_the_predicted_peak_is_at_most_a_quarter_above_the_measured_one(
    server: Server, shared: Path, side: int
) -> None:
    photo = (shared / "photos" / "street_03_4k.jpg").read_bytes()  # 3840x2160: 2048x1152 at max_side 2048
    pid, rows = server.process.pid, []
    for style in STYLES:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak from here
        before = status_mib(pid)
        response = httpx.post(
            f"{server.url}/v1/transform",
            files={"image": ("street.jpg", photo)},
            data={"style": style, "max_side": str(side)},
            headers={"X-Request-ID": f"{style}-{side}"},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        measured = status_mib(pid, "VmHWM")
        predicted = before + _reserved(server.log, f"{style}-{side}") / 2**20
        rows.append((style, before, measured, predicted, predicted / measured))
    print("\n" + "\n".join(f"{s:20} {side:>5} px: before {b:6.0f} peak {m:6.0f} predicted {p:6.0f} MiB, {r:.2f}x"
                           for s, b, m, p, r in rows))  # fmt: skip
    for style, _, _, _, ratio in rows:
        assert 1.0 <= ratio <= 1.25, f"{style} at {side} px: predicted / measured peak {ratio:.2f}"
