"""The memory budget held for real: a live server with a 2.5 GB budget, the largest pictures its settings admit.

Every answer is 200 or a typed refusal (413 too large for the budget, 503
at capacity); the process's peak resident set never passes the budget; and
after the large pictures, idle memory comes back near where it started.
With the ONNX styles' memory profiles, every real style is served at the
largest ``max_side`` the settings admit.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from live import Server
from local_server import status_mib

pytestmark = [pytest.mark.e2e, pytest.mark.real_weights]
BUDGET_MIB = 2560


@pytest.fixture(scope="module")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("memory") / "server.log"
    running = Server(
        shared / "models", log, "--workers", "2", "--threads", "1", "--max-queue", "8", "--request-timeout-s", "240",
        ANIMEGAN_MEMORY_BUDGET_MB=str(BUDGET_MIB), ANIMEGAN_MAX_SIDE_LIMIT="2048", ANIMEGAN_CACHE_MAX_BYTES="0",
        ANIMEGAN_RATE_LIMIT_ENABLED="false", ANIMEGAN_LOG_LEVEL="warning",
    )  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def profiled(shared: Path, memory_profiles: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Defaults but the budget: one worker of two threads, the runtimes ``auto`` chooses, measured profiles."""
    log = tmp_path_factory.mktemp("memory-profiled") / "server.log"
    running = Server(
        shared / "models", log, "--workers", "1", "--threads", "2", "--request-timeout-s", "240",
        ANIMEGAN_MEMORY_BUDGET_MB=str(BUDGET_MIB), ANIMEGAN_MEMORY_PROFILE_DIR=str(memory_profiles),
        ANIMEGAN_CACHE_MAX_BYTES="0", ANIMEGAN_RATE_LIMIT_ENABLED="false", ANIMEGAN_LOG_LEVEL="warning",
    )  # fmt: skip
    yield running
    running.stop()


def _post(url: str, photo: bytes, **form: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/transform", files={"image": ("p.jpg", photo)}, data=form, timeout=300)


def _typed(response: httpx.Response) -> str:
    """'200', or the refusal's status and code; anything else fails the test."""
    if response.status_code == 200:
        return "200"
    code = response.json()["error"]["code"]
    assert (response.status_code, code) in {(413, "too_large_for_memory"), (503, "overloaded")}, response.text
    return f"{response.status_code} {code}"


def _twelve_megapixels(photo: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").resize((4000, 3000)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_the_largest_admitted_requests_stay_within_the_budget(server: Server, shared: Path) -> None:
    pid = server.process.pid
    idle_start = status_mib(pid)
    street = (shared / "photos" / "street_03_4k.jpg").read_bytes()
    styles = [s["name"] for s in httpx.get(f"{server.url}/v1/styles").json()["styles"]]
    outcomes: Counter[str] = Counter()
    for style in styles:  # one after another, each at the largest size the settings allow
        response = _post(server.url, street, style=style, max_side="2048")
        outcomes[f"{style}: {_typed(response)}"] += 1
        if response.status_code == 200:
            assert Image.open(io.BytesIO(response.content)).size[0] == 2048
    assert outcomes["animeganv2_hayao: 200"] == 1  # the strip forward fits where the whole one (6.5 GiB) could not

    async def together(requests: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
            posts = [client.post("/v1/transform", files={"image": ("p.jpg", p)}, data=f) for p, f in requests]
            return await asyncio.gather(*posts)

    both = asyncio.run(together([(street, {"style": "animeganv2_hayao", "max_side": "2048"})] * 2))
    outcomes.update(f"two at once: {_typed(r)}" for r in both)
    assert all(r.status_code == 200 for r in both)  # the second waits for bytes instead of failing
    big = _twelve_megapixels(shared / "photos" / "city_01.jpg")
    burst = asyncio.run(together([(big, {"style": "animeganv3_cute"})] * 16))
    outcomes.update(f"16 x 12 MP: {_typed(r)}" for r in burst)
    peak = status_mib(pid, "VmHWM")
    idle_end = status_mib(pid)
    print(
        f"\nbudget {BUDGET_MIB} MiB: idle {idle_start:.0f} -> {idle_end:.0f} MiB, peak {peak:.0f} MiB; {dict(outcomes)}"
    )
    assert peak <= BUDGET_MIB
    assert idle_end - idle_start <= 200


def test_every_real_style_is_served_at_max_side_2048_within_the_budget(profiled: Server, shared: Path) -> None:
    """OpenVINO's held buffers would leave no room (1.3 GB resident): ``auto`` gives them up for this budget."""
    street = (shared / "photos" / "street_03_4k.jpg").read_bytes()  # 3840x2160: 2048x1152 at max_side 2048
    styles = httpx.get(f"{profiled.url}/v1/styles").json()["styles"]
    names = {style["name"] for style in styles}
    assert names == {"animeganv2_hayao", "animeganv3_hayao", "animeganv3_shinkai", "animeganv3_cute"}
    for style in styles:
        response = _post(profiled.url, street, style=style["name"], max_side="2048")
        assert response.status_code == 200, f"{style['name']} on {style['runtime']}: {response.text}"
        assert Image.open(io.BytesIO(response.content)).size == (2048, 1152)
    peak = status_mib(profiled.process.pid, "VmHWM")
    print(
        f"\nbudget {BUDGET_MIB} MiB, peak {peak:.0f} MiB: " + ", ".join(f"{s['name']} {s['runtime']}" for s in styles)
    )
    assert peak <= BUDGET_MIB
