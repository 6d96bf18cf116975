"""Picture quality with the real Hayao checkpoint from ../shared (skips without it, fails in CI)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from animegan_api import imaging
from animegan_api.config import Settings
from animegan_api.model import Generator

pytestmark = pytest.mark.real_weights
PHOTOS = ("street_02.jpg", "face_01.jpg")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _reference(checkpoint: Path, upsample: str, rgb: Image.Image) -> np.ndarray:
    """An independent forward: the state dict straight into a generator, no service code."""
    generator = Generator(upsample).eval()  # type: ignore[arg-type]
    generator.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy()).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.inference_mode():
        y = generator(x)[0].permute(1, 2, 0).numpy()
    return np.rint(np.clip((y + 1) * 127.5, 0, 255))


@pytest.fixture(scope="module")
def served(shared: Path) -> dict[str, Any]:
    """The service's outputs for the photos, computed once."""
    import asyncio

    from animegan_api.app import create_app

    async def run() -> dict[str, bytes]:
        import httpx

        app = create_app(Settings(weights_dir=shared / "models", warmup_side=64, rate_limit_enabled=False))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                results = {}
                for name in PHOTOS:
                    data = (shared / "photos" / name).read_bytes()
                    response = await client.post("/v1/transform", files={"image": (name, data)})
                    assert response.status_code == 200, response.text
                    assert response.headers["x-style"] == "animeganv2_hayao"
                    results[name] = response.content
                return results

    return asyncio.run(run())


@pytest.mark.parametrize("photo", PHOTOS)
def test_service_equals_an_in_process_forward(shared: Path, served: dict[str, bytes], photo: str) -> None:
    data = (shared / "photos" / photo).read_bytes()
    prepared = imaging.prepare(data, max_pixels=40_000_000, max_side=512, multiple=4)
    output = np.asarray(Image.open(io.BytesIO(served[photo])).convert("RGB"))
    assert output.shape[:2] == prepared.rgb.size[::-1]
    reference = _reference(shared / "models" / "animeganv2_hayao.pt", "tf_legacy", prepared.rgb)
    assert _psnr(output, reference) >= 40.0


@pytest.mark.parametrize("photo", PHOTOS)
def test_sidecar_upsampling_is_honoured(shared: Path, served: dict[str, bytes], photo: str) -> None:
    """With the port's default upsampling the Hayao output is visibly different (about 20 dB)."""
    prepared = imaging.prepare((shared / "photos" / photo).read_bytes(), max_pixels=40_000_000, max_side=512, multiple=4)
    output = np.asarray(Image.open(io.BytesIO(served[photo])).convert("RGB"))
    wrong = _reference(shared / "models" / "animeganv2_hayao.pt", "align_corners", prepared.rgb)
    assert _psnr(output, wrong) < 30.0


@pytest.mark.parametrize("photo", PHOTOS)
def test_output_is_stylised_not_a_copy(shared: Path, served: dict[str, bytes], photo: str) -> None:
    prepared = imaging.prepare((shared / "photos" / photo).read_bytes(), max_pixels=40_000_000, max_side=512, multiple=4)
    output = np.asarray(Image.open(io.BytesIO(served[photo])).convert("RGB"))
    assert 10.0 < _psnr(output, np.asarray(prepared.rgb)) < 25.0
