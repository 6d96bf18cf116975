"""``auto`` gives OpenVINO up where its held buffers leave a style no room in the memory budget, and only then."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from animegan_api.config import Settings
from animegan_api.runtime import predictors
from conftest import save_random_generator


@pytest.fixture
def openvino_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto``'s timing always finds OpenVINO faster (the tiny test models leave it to chance)."""

    def fastest(candidates: Sequence[Any], side: int, runs: int = 2) -> tuple[Any, dict[str, float]]:
        seconds = {candidate.runtime: 0.1 if candidate.runtime == "openvino" else 0.2 for candidate in candidates}
        return next(c for c in candidates if c.runtime == "openvino"), seconds

    monkeypatch.setattr(predictors, "fastest", fastest)


@pytest.fixture
def both_formats(tmp_path: Path, onnx_models: dict[str, Path]) -> Path:
    weights = tmp_path / "both"
    weights.mkdir()
    (weights / "vino.onnx").symlink_to(onnx_models["nhwc"])
    save_random_generator(weights / "random.pt")
    return weights


async def _runtimes(client: Any) -> dict[str, tuple[str, str | None]]:
    styles = (await client.get("/v1/styles")).json()["styles"]
    return {style["name"]: (style["runtime"], style["runtime_note"]) for style in styles}


@pytest.mark.usefixtures("openvino_wins")
async def test_a_budget_without_room_moves_auto_styles_off_openvino_for_good(
    both_formats: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(weights_dir=both_formats, onnx_runtime="auto", torch_runtime="auto", memory_budget_mb=1)
    async with make_client(settings) as client:
        runtimes = await _runtimes(client)
        assert {name: runtime for name, (runtime, _) in runtimes.items()} == {
            "vino": "onnxruntime",
            "random": "pytorch",
        }
        for name, (_, note) in runtimes.items():
            assert note is not None and note.startswith("OpenVINO was faster (")
            assert "no room in the memory budget for a 2048x2048 picture" in note, name
        metrics = (await client.get("/metrics")).text
        assert 'animegan_style_runtime{runtime="onnxruntime",style="vino"} 1.0' in metrics
        assert 'animegan_style_runtime{runtime="pytorch",style="random"} 1.0' in metrics
        assert 'runtime="openvino"' not in metrics
        reloaded = await client.post("/v1/admin/reload")
        assert {s["name"]: s["runtime"] for s in reloaded.json()["styles"]} == {
            "vino": "onnxruntime",
            "random": "pytorch",
        }


@pytest.mark.usefixtures("openvino_wins")
async def test_a_budget_with_room_keeps_the_faster_runtime(
    both_formats: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(
        weights_dir=both_formats,
        onnx_runtime="auto",
        torch_runtime="auto",
        memory_budget_mb=65536,
        max_side_limit=64,
        default_max_side=64,
    )
    async with make_client(settings) as client:
        assert await _runtimes(client) == {"vino": ("openvino", None), "random": ("openvino", None)}


async def test_a_forced_openvino_stays_whatever_the_budget(
    both_formats: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(
        weights_dir=both_formats, onnx_runtime="openvino", torch_runtime="openvino", memory_budget_mb=1
    )
    async with make_client(settings) as client:
        assert await _runtimes(client) == {"vino": ("openvino", None), "random": ("openvino", None)}
