"""Every hostile or broken upload gets its documented status in the JSON error shape, without reaching the model."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

import corpus
from animegan_api.config import Settings

CASES = corpus.build()


def test_the_corpus_is_broad() -> None:
    assert len(CASES) >= 30
    assert {c.status for c in CASES} == {200, 400, 404, 413, 415, 422}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, Any, int, bytes]]:
    """Post the whole corpus once to one app (a fresh one per test module keeps it cheap)."""
    import asyncio

    from conftest import save_random_generator, serving, swap_predictor

    weights = tmp_path_factory.mktemp("weights")
    save_random_generator(weights / "random.pt")
    settings = Settings(weights_dir=weights, warmup_side=32, rate_limit_enabled=False)

    async def run() -> dict[str, tuple[int, Any, int, bytes]]:
        out = {}
        async with serving(settings) as client:
            forwards: list[int] = []
            model = client.app.state.services.registry.entries["random"].loaded.predictor
            swap_predictor(client, lambda batch: forwards.append(1) or model(batch))
            for case in CASES:
                before = len(forwards)
                response = await client.post(
                    "/v1/transform", files=case.files, data=case.data, content=case.content, headers=case.headers
                )
                out[case.name] = (response.status_code, response.headers, len(forwards) - before, response.content)
            assert (await client.get("/readyz")).json()["in_flight"] == 0
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_gets_its_status(results: dict[str, tuple[int, Any, int, bytes]], case: corpus.Case) -> None:
    status, headers, forwards, body = results[case.name]
    assert status == case.status, body[:300]
    assert forwards == (1 if status == 200 else 0)  # a refusal never costs a forward
    if status == 200:
        assert Image.open(io.BytesIO(body)).format == "PNG"
    elif status == 422:
        assert __import__("json").loads(body)["error"]["code"] == "invalid_request"
    else:
        error = __import__("json").loads(body)["error"]
        assert set(error) == {"code", "message"} and "Traceback" not in error["message"]
    assert headers["x-content-type-options"] == "nosniff"


def test_extreme_shapes_keep_their_size_on_request(results: dict[str, tuple[int, Any, int, bytes]]) -> None:
    assert Image.open(io.BytesIO(results["1x20000 strip"][3])).size == (8, 512)
    assert Image.open(io.BytesIO(results["1x1 picture"][3])).size == (8, 8)


async def test_a_body_slower_than_the_read_timeout_gets_408(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    stalled = asyncio.Event()  # set only once the answer is in: nothing but the body timeout can end the wait

    async def trickle() -> Any:
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
        await stalled.wait()
        yield b"never mind"

    async with make_client(settings_for(body_timeout_s=0.3)) as client:
        response = await client.post(
            "/v1/transform", content=trickle(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
        stalled.set()
    assert response.status_code == 408 and response.json()["error"]["code"] == "body_timeout"
