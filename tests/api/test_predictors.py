from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from animegan_api.config import Settings
from animegan_api.runtime.memory import SplitCost
from animegan_api.runtime.model import Generator
from animegan_api.runtime.onnx_runtimes import OnnxPredictor
from animegan_api.runtime.weights import WeightsError, sha256_of
from conftest import load_file, picture_bytes, save_random_generator, upload


@pytest.mark.parametrize("kind", ["nchw", "nhwc"])
def test_onnx_runs_like_the_torch_generator_in_either_layout(onnx_models: dict[str, Path], kind: str) -> None:
    style = load_file(onnx_models[kind])
    assert (style.spec.format, style.spec.layout) == ("onnx", kind.upper())
    assert style.spec.architecture == ("animeganv3" if kind == "nhwc" else "animeganv2")
    torch.manual_seed(0)
    reference = Generator().eval()
    batch = np.random.default_rng(0).uniform(-1, 1, (2, 3, 24, 40)).astype(np.float32)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(batch)).numpy()
    assert np.abs(style.predictor(batch) - expected).max() < 1e-4


def test_pictures_up_to_the_measured_size_run_in_the_arena_session_larger_ones_in_the_plain_one(
    onnx_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = load_file(onnx_models["nhwc"]).predictor  # warm-up side 32: memory measured up to 128 x 128
    assert isinstance(predictor, OnnxPredictor) and predictor.arena is not None
    assert predictor.arena_pixels == 128 * 128
    assert predictor.arena.get_session_options().enable_cpu_mem_arena
    assert not predictor.session.get_session_options().enable_cpu_mem_arena
    used: list[str] = []
    for label, session in (("arena", predictor.arena), ("plain", predictor.session)):
        run = session.run
        monkeypatch.setattr(session, "run", lambda *a, _run=run, _label=label: used.append(_label) or _run(*a))
    torch.manual_seed(0)
    reference, rng = Generator().eval(), np.random.default_rng(1)
    for height, width in ((128, 128), (128, 132), (64, 40)):
        batch = rng.uniform(-1, 1, (1, 3, height, width)).astype(np.float32)
        with torch.inference_mode():
            expected = reference(torch.from_numpy(batch)).numpy()
        assert np.abs(predictor(batch) - expected).max() < 1e-4
    assert used == ["arena", "plain", "arena"]


def test_an_onnx_style_is_measured_on_both_sessions(onnx_models: dict[str, Path]) -> None:
    cost = load_file(onnx_models["nchw"], measure_memory=True).cost
    assert isinstance(cost, SplitCost) and cost.pixels == 128 * 128
    sizes = [(64, 64), (128, 128), (128, 132), (512, 512)]
    needs = [cost.forward_bytes(w, h) for w, h in sizes]
    assert needs == sorted(needs) and needs[0] > 0
    assert needs[-1] == cost.large.forward_bytes(512, 512) >= cost.small.forward_bytes(128 * 128, 1)


def test_size_rule_is_probed_when_no_sidecar_states_it(onnx_models: dict[str, Path]) -> None:
    assert load_file(onnx_models["nhwc"]).size_multiple == 4
    assert load_file(onnx_models["nhwc16"]).size_multiple == 16


def test_a_wrong_size_rule_in_the_sidecar_fails_at_load_naming_the_field(
    onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    path = shutil.copy(onnx_models["nhwc16"], tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text('{"size_multiple": 8}')
    with pytest.raises(WeightsError, match="field 'size_multiple'") as info:
        load_file(Path(path))
    assert info.value.path.name == "m.onnx.json"


def test_a_wrong_layout_in_the_sidecar_is_named(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    path = Path(shutil.copy(onnx_models["nchw"], tmp_path / "m.onnx"))
    (tmp_path / "m.onnx.json").write_text('{"layout": "NHWC"}')
    with pytest.raises(WeightsError, match=r"field 'layout': sidecar says NHWC but the graph input .* is NCHW") as info:
        load_file(path)
    assert info.value.path.name == "m.onnx.json"


def test_a_wrong_checksum_in_the_sidecar_is_named(tmp_path: Path) -> None:
    path = save_random_generator(tmp_path / "m.pt", sidecar={"sha256": "0" * 64})
    with pytest.raises(WeightsError, match="field 'sha256'") as info:
        load_file(path)
    assert info.value.path.name == "m.pt.json"
    path.with_name("m.pt.json").write_text(f'{{"sha256": "{sha256_of(path)}"}}')
    assert load_file(path).spec.sha256 == sha256_of(path)


def test_a_broken_onnx_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x01garbage")
    with pytest.raises(WeightsError, match="not a readable ONNX model"):
        load_file(path)


def test_torch_and_onnx_of_the_same_weights_agree_through_the_service(
    onnx_models: dict[str, Path], tmp_path: Path, make_client: Any
) -> None:
    save_random_generator(tmp_path / "same.pt")
    shutil.copy(onnx_models["nchw"], tmp_path / "same.onnx")

    async def run(backend: str) -> np.ndarray:
        settings = Settings(weights_dir=tmp_path, backend=backend, warmup_side=32, rate_limit_enabled=False)
        async with make_client(settings) as client:
            response = await client.post("/v1/transform", files=upload(picture_bytes((48, 40))))
        assert response.status_code == 200
        return np.asarray(Image.open(io.BytesIO(response.content)), dtype=np.int16)

    assert np.abs(asyncio.run(run("torch")) - asyncio.run(run("onnxruntime"))).max() <= 1


def test_a_loaded_style_carries_a_warm_forward_s_timing(weights_dir: Path) -> None:
    loaded = load_file(weights_dir / "random.pt")
    elements, seconds = loaded.warm_timing
    assert elements == 3 * 36 * 36 and 0 < seconds < 5  # warm-up side 32: the odd multiple of 4 near it, 36
