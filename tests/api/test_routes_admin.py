from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from animegan_api.config import Settings
from conftest import picture_bytes, save_random_generator, upload
from gates import Gate

KEYED = {"api_keys": "alpha-key, beta-key"}


async def test_reload_picks_up_new_files_without_dropping_requests(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for()) as client:
        entry = client.app.state.services.registry.entries["random"]
        gate = Gate(output=np.zeros_like)
        entry.loaded = dataclasses.replace(entry.loaded, predictor=gate)
        in_flight = asyncio.create_task(client.post("/v1/transform", files=upload(picture_bytes())))
        await gate.started(1)  # the request is inside the model when the reload happens
        save_random_generator(weights_dir / "added.pt", seed=2)
        reloaded = await client.post("/v1/admin/reload")
        assert reloaded.status_code == 200
        assert {s["name"] for s in reloaded.json()["styles"]} == {"random", "added"}
        gate.open()
        assert (await in_flight).status_code == 200
        after = await client.post("/v1/transform", files=upload(picture_bytes()), data={"style": "added"})
        assert after.status_code == 200


async def test_admin_key_is_required_when_configured(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(admin_key="s3cret")) as client:
        assert (await client.post("/v1/admin/reload")).status_code == 401
        assert (await client.post("/v1/admin/reload", headers={"x-api-key": "nope"})).status_code == 403
        assert (await client.post("/v1/admin/reload", headers={"authorization": "Bearer s3cret"})).status_code == 200
        assert (await client.post("/v1/admin/reload", headers={"x-api-key": "s3cret"})).status_code == 200


async def test_without_a_key_admin_answers_loopback_only(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for()) as client:
        transport = httpx.ASGITransport(app=client.app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as remote:
            refused = await remote.post("/v1/admin/reload")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert (await client.post("/v1/admin/reload")).status_code == 200


async def test_admin_needs_the_admin_key_when_api_keys_are_on(
    make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(**KEYED)) as client:
        refused = await client.post("/v1/admin/reload", headers={"x-api-key": "alpha-key"})
        assert refused.status_code == 403 and "ANIMEGAN_ADMIN_KEY" in refused.json()["error"]["message"]
    async with make_client(settings_for(**KEYED, admin_key="root")) as client:
        assert (await client.post("/v1/admin/reload", headers={"x-api-key": "root"})).status_code == 200
