from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from animegan_api.config import Settings
from animegan_api.http.errors import SHUTTING_DOWN
from conftest import AppClient, expect_error, picture_bytes, upload


async def test_health_and_readiness(client: AppClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "styles": ["random"], "in_flight": 0, "queued": 0}


async def test_not_ready_without_models(
    tmp_path: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(weights_dir=tmp_path / "empty")) as client:
        assert (await client.get("/healthz")).status_code == 200
        expect_error(await client.get("/readyz"), 503, "not_ready")
        expect_error(await client.post("/v1/transform", files=upload(picture_bytes())), 503, "not_ready")


async def test_draining_gives_the_same_refusal_on_readyz_and_the_routes(client: AppClient) -> None:
    client.app.state.services.draining = True
    probe = await client.get("/readyz")
    refused = await client.post("/v1/transform", files=upload(picture_bytes()))
    for response in (probe, refused):
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json() == {"error": {"code": "shutting_down", "message": SHUTTING_DOWN}}
