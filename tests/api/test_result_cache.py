"""The result cache around the runner, over HTTP: hits, keys, what is never cached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from animegan_api.config import Settings
from conftest import AppClient, picture_bytes, swap_predictor, upload


async def test_repeated_upload_is_a_cache_hit_with_the_same_bytes(client: AppClient) -> None:
    photo = picture_bytes((40, 40), color=(10, 120, 200))
    first = await client.post("/v1/transform", files=upload(photo))
    calls: list[int] = []

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.zeros_like(batch)

    swap_predictor(client, counting)
    second = await client.post("/v1/transform", files=upload(photo, name="other-name.png"))
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert second.content == first.content and second.headers["x-style"] == "random"
    assert second.headers["server-timing"].startswith("cache;dur=")
    assert calls == []
    metrics = (await client.get("/metrics")).text
    assert 'animegan_cache_lookups_total{result="hit"} 1.0' in metrics


@pytest.mark.parametrize("change", [{"format": "webp"}, {"max_side": "32"}, {"keep_size": "true"}, {"quality": "50"}])
async def test_any_output_parameter_is_part_of_the_cache_key(client: AppClient, change: dict[str, str]) -> None:
    photo = picture_bytes((40, 40), color=(90, 20, 200))
    await client.post("/v1/transform", files=upload(photo))
    response = await client.post("/v1/transform", files=upload(photo), data=change)
    assert response.status_code == 200 and response.headers["x-cache"] == "miss"


async def test_failures_are_not_cached_and_reload_empties_the_cache(client: AppClient) -> None:
    photo = picture_bytes((40, 40), color=(1, 2, 3))

    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    original = {name: entry.loaded for name, entry in client.app.state.services.registry.entries.items()}
    swap_predictor(client, broken)
    assert (await client.post("/v1/transform", files=upload(photo))).status_code == 500
    for name, loaded in original.items():
        client.app.state.services.registry.entries[name].loaded = loaded
    assert (await client.post("/v1/transform", files=upload(photo))).headers["x-cache"] == "miss"
    assert (await client.post("/v1/transform", files=upload(photo))).headers["x-cache"] == "hit"
    assert (await client.post("/v1/admin/reload")).status_code == 200
    assert len(client.app.state.services.cache) == 0
    assert (await client.post("/v1/transform", files=upload(photo))).headers["x-cache"] == "miss"


async def test_cache_off_sends_no_cache_header(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(cache_max_bytes=0)) as client:
        photo = picture_bytes()
        for _ in range(2):
            response = await client.post("/v1/transform", files=upload(photo))
            assert response.status_code == 200 and "x-cache" not in response.headers
