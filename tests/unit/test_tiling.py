"""The strip forward against the whole-picture forward, which stays the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animegan_api.pictures import imaging
from animegan_api.runtime.model import Generator
from animegan_api.runtime.precision import psnr
from animegan_api.runtime.predictors import TorchPredictor
from animegan_api.runtime.tiling import StripForward
from animegan_api.runtime.weights import load_generator, read_spec


def _both(generator: Generator, x: torch.Tensor, strip_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        return generator(x).numpy(), StripForward(generator, strip_pixels)(x).numpy()


@pytest.mark.parametrize("upsample", ["align_corners", "tf_legacy"])
@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 72, 40), (1, 3, 36, 52), (1, 3, 8, 8)])
def test_many_strips_give_the_whole_forward(upsample: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    generator = Generator(upsample=upsample).eval()  # type: ignore[arg-type]
    x = torch.rand(shape) * 2 - 1
    whole, strips = _both(generator, x, strip_pixels=300)  # strips of 8 rows: every border case is crossed
    assert strips.shape == whole.shape
    assert psnr(whole, strips) >= 80


def test_one_strip_per_layer_gives_the_whole_forward_too() -> None:
    torch.manual_seed(1)
    generator = Generator(upsample="tf_legacy").eval()
    whole, strips = _both(generator, torch.rand(1, 3, 48, 64) * 2 - 1, strip_pixels=1 << 30)
    assert psnr(whole, strips) >= 80


def test_the_torch_predictor_runs_strips_with_the_same_output() -> None:
    torch.manual_seed(2)
    generator = Generator(upsample="tf_legacy").eval()
    batch = (np.random.default_rng(0).random((1, 3, 40, 56), dtype=np.float32) * 2 - 1).astype(np.float32)
    predictor = TorchPredictor(generator)
    assert isinstance(predictor.forward, StripForward)
    with torch.inference_mode():
        whole = generator(torch.from_numpy(batch)).numpy()
    assert psnr(predictor(batch), whole) >= 80


@pytest.mark.real_weights
@pytest.mark.parametrize(("photo", "side"), [("landscape_01.jpg", 1024), ("street_03_4k.jpg", 2048)])
def test_real_photos_at_1024_and_2048_match_the_whole_forward(shared: Path, photo: str, side: int) -> None:
    model = shared / "models" / "animeganv2_hayao.pt"
    generator = load_generator(model, read_spec(model)).to(memory_format=torch.channels_last)
    prepared = imaging.prepare((shared / "photos" / photo).read_bytes(), max_pixels=10**8, max_side=side, multiple=4)
    x = torch.from_numpy(imaging.to_batch(prepared.rgb)).contiguous(memory_format=torch.channels_last)
    assert max(x.shape[-2:]) == side
    whole, strips = _both(generator, x, strip_pixels=1 << 18)
    assert psnr(whole, strips) >= 50
    picture = imaging.from_output(strips[0])
    assert picture.size == prepared.rgb.size and isinstance(picture, Image.Image)
