from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from animegan_api.config import Settings
from animegan_api.runtime.registry import build_registry
from conftest import picture_bytes, save_random_generator, upload


@pytest.mark.parametrize(("backend", "chosen"), [("torch", "same.pt"), ("onnxruntime", "same.onnx")])
def test_backend_picks_the_file_of_a_style_found_in_both_formats(
    onnx_models: dict[str, Path], tmp_path: Path, backend: Any, chosen: str
) -> None:
    save_random_generator(tmp_path / "same.pt")
    shutil.copy(onnx_models["nchw"], tmp_path / "same.onnx")
    shutil.copy(onnx_models["nhwc"], tmp_path / "only.onnx")
    registry = build_registry(tmp_path, backend=backend, warmup_side=32)
    assert registry.entries["same"].file.path.name == chosen
    assert registry.entries["same"].formats == ["onnx", "torch"]
    assert registry.entries["only"].file.path.name == "only.onnx"  # ONNX-only runs on ORT whatever the backend
    assert all(e.loaded for e in registry.entries.values())


async def test_lazy_loading_waits_for_the_first_request(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    async with make_client(settings_for(load_mode="lazy")) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/styles")).json()["styles"][0]["loaded"] is False
        assert (await client.post("/v1/transform", files=upload(picture_bytes()))).status_code == 200
        info = (await client.get("/v1/styles")).json()["styles"][0]
    assert info["loaded"] is True and info["size_multiple"] == 4


async def test_lru_bound_unloads_the_least_recently_used(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    save_random_generator(weights_dir / "second.pt", seed=1)
    async with make_client(settings_for(max_loaded_models=1)) as client:

        async def loaded() -> dict[str, bool]:
            return {s["name"]: s["loaded"] for s in (await client.get("/v1/styles")).json()["styles"]}

        assert await loaded() == {"random": True, "second": False}
        assert (
            await client.post("/v1/transform", files=upload(picture_bytes()), data={"style": "second"})
        ).status_code == 200
        assert await loaded() == {"random": False, "second": True}
        assert (
            await client.post("/v1/transform", files=upload(picture_bytes()), data={"style": "random"})
        ).status_code == 200
        assert await loaded() == {"random": True, "second": False}


async def test_unavailable_style_is_listed_and_refused_but_others_serve(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    (weights_dir / "broken.onnx").write_bytes(b"junk")
    async with make_client(settings_for(load_mode="lazy")) as client:
        response = await client.post("/v1/transform", files=upload(picture_bytes()), data={"style": "broken"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "style_unavailable"
        assert (await client.post("/v1/transform", files=upload(picture_bytes()))).status_code == 200
        styles = {s["name"]: s for s in (await client.get("/v1/styles")).json()["styles"]}
        assert styles["broken"]["available"] is False and "ONNX" in styles["broken"]["reason"]
        assert (await client.get("/readyz")).status_code == 200
