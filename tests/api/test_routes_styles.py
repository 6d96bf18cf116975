from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from animegan_api.config import Settings
from animegan_api.runtime import precision
from conftest import picture_bytes, save_random_generator, serving, upload


async def test_styles_lists_metadata_and_unusable_files(
    weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]
) -> None:
    save_random_generator(
        weights_dir / "legacy.pt", sidecar={"name": "legacy", "upsample": "tf_legacy", "license": "non-commercial"}
    )
    (weights_dir / "broken.pt").write_bytes(b"not a checkpoint")
    async with make_client(settings_for(default_style="legacy")) as client:
        body = (await client.get("/v1/styles")).json()
    styles = {s["name"]: s for s in body["styles"]}
    assert set(styles) == {"broken", "legacy", "random"}
    assert styles["legacy"]["upsample"] == "tf_legacy" and styles["legacy"]["default"] is True
    assert styles["random"]["parameters"] == 2143552 and styles["random"]["file"] == "random.pt"
    assert styles["random"]["loaded"] and styles["random"]["available"] and styles["random"]["memory_bytes"] >= 0
    assert styles["random"]["weights_bytes"] > 8_000_000
    assert not styles["broken"]["available"] and "not a readable PyTorch checkpoint" in styles["broken"]["reason"]
    assert [u["file"] for u in body["unavailable"]] == ["broken.pt"]


@pytest.mark.parametrize(("wanted", "file", "reason"), [("bf16", "pt", "AVX-512 BF16"), ("int8", "onnx", "VNNI")])
async def test_styles_listing_says_why_reduced_precision_was_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wanted: str, file: str, reason: str
) -> None:
    from conftest import save_onnx_generator, serving

    monkeypatch.setattr(precision, "cpu_flags", lambda source=precision.CPUINFO: frozenset({"avx2", "fma"}))
    weights = tmp_path / "weights"
    weights.mkdir()
    (save_random_generator if file == "pt" else save_onnx_generator)(weights / f"random.{file}")
    photos = tmp_path / "check"
    photos.mkdir()
    (photos / "a.png").write_bytes(picture_bytes((40, 40)))
    settings = Settings(weights_dir=weights, warmup_side=32, precision=wanted, precision_check_dir=photos)
    async with serving(settings) as client:
        (info,) = (await client.get("/v1/styles")).json()["styles"]
    assert info["precision"] == "fp32" and reason in info["precision_note"]


async def test_the_runtime_of_each_style_is_in_the_styles_list_and_the_metrics(
    onnx_models: dict[str, Path], settings_for: Any, tmp_path: Path
) -> None:
    weights = tmp_path / "onnx-weights"
    weights.mkdir()
    (weights / "vino.onnx").symlink_to(onnx_models["nhwc"])
    async with serving(settings_for(weights_dir=weights, onnx_runtime="openvino")) as client:
        (style,) = (await client.get("/v1/styles")).json()["styles"]
        assert (style["name"], style["runtime"], style["runtime_seconds"]) == ("vino", "openvino", None)
        metrics = (await client.get("/metrics")).text
        assert 'animegan_style_runtime{runtime="openvino",style="vino"} 1.0' in metrics


async def test_a_pytorch_style_served_by_openvino_says_so_and_transforms(settings_for: Any) -> None:
    """ANIMEGAN_TORCH_RUNTIME reaches the registry: the .pt is converted at load and serves requests."""
    async with serving(settings_for(torch_runtime="openvino")) as client:
        (style,) = (await client.get("/v1/styles")).json()["styles"]
        assert (style["name"], style["runtime"]) == ("random", "openvino")
        assert 'animegan_style_runtime{runtime="openvino",style="random"} 1.0' in (await client.get("/metrics")).text
        response = await client.post("/v1/transform", files=upload(picture_bytes((48, 40))))
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
