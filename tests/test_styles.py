from __future__ import annotations

import asyncio
import dataclasses
import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from animegan_api.config import Settings
from animegan_api.model import Generator
from animegan_api import styles
from animegan_api.styles import build_registry, load_style
from animegan_api.weights import ModelFile, WeightsError, read_spec, sha256_of
from conftest import picture_bytes, save_onnx_generator, save_random_generator


def _files(data: bytes) -> dict[str, Any]:
    return {"image": ("photo.png", data)}


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX exports of the seed-0 random generator, made once: NCHW, NHWC, and NHWC needing heights of 16k."""
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "nchw": save_onnx_generator(folder / "nchw.onnx"),
        "nhwc": save_onnx_generator(folder / "nhwc.onnx", nhwc=True),
        "nhwc16": save_onnx_generator(folder / "nhwc16.onnx", nhwc=True, multiple_of_16=True),
    }


def _load(path: Path) -> Any:
    return load_style(ModelFile(path, read_spec(path)), threads=1, warmup_side=32)


@pytest.mark.parametrize("kind", ["nchw", "nhwc"])
def test_onnx_runs_like_the_torch_generator_in_either_layout(onnx_models: dict[str, Path], kind: str) -> None:
    style = _load(onnx_models[kind])
    assert (style.spec.format, style.spec.layout) == ("onnx", kind.upper())
    assert style.spec.architecture == ("animeganv3" if kind == "nhwc" else "animeganv2")
    torch.manual_seed(0)
    reference = Generator().eval()
    batch = np.random.default_rng(0).uniform(-1, 1, (2, 3, 24, 40)).astype(np.float32)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(batch)).numpy()
    assert np.abs(style.predictor(batch) - expected).max() < 1e-4


def test_size_rule_is_probed_when_no_sidecar_states_it(onnx_models: dict[str, Path]) -> None:
    assert _load(onnx_models["nhwc"]).size_multiple == 4
    assert _load(onnx_models["nhwc16"]).size_multiple == 16


def test_a_wrong_size_rule_in_the_sidecar_fails_at_load_naming_the_field(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    path = shutil.copy(onnx_models["nhwc16"], tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text('{"size_multiple": 8}')
    with pytest.raises(WeightsError, match="field 'size_multiple'") as info:
        _load(Path(path))
    assert info.value.path.name == "m.onnx.json"


def test_a_wrong_layout_in_the_sidecar_is_named(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    path = Path(shutil.copy(onnx_models["nchw"], tmp_path / "m.onnx"))
    (tmp_path / "m.onnx.json").write_text('{"layout": "NHWC"}')
    with pytest.raises(WeightsError, match="field 'layout': sidecar says NHWC but the graph input .* is NCHW") as info:
        _load(path)
    assert info.value.path.name == "m.onnx.json"


def test_a_wrong_checksum_in_the_sidecar_is_named(tmp_path: Path) -> None:
    path = save_random_generator(tmp_path / "m.pt", sidecar={"sha256": "0" * 64})
    with pytest.raises(WeightsError, match="field 'sha256'") as info:
        _load(path)
    assert info.value.path.name == "m.pt.json"
    path.with_name("m.pt.json").write_text(f'{{"sha256": "{sha256_of(path)}"}}')
    assert _load(path).spec.sha256 == sha256_of(path)


def test_a_broken_onnx_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x01garbage")
    with pytest.raises(WeightsError, match="not a readable ONNX model"):
        _load(path)


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


def test_torch_and_onnx_of_the_same_weights_agree_through_the_service(
    onnx_models: dict[str, Path], tmp_path: Path, make_client: Any
) -> None:
    save_random_generator(tmp_path / "same.pt")
    shutil.copy(onnx_models["nchw"], tmp_path / "same.onnx")

    async def run(backend: str) -> np.ndarray:
        settings = Settings(weights_dir=tmp_path, backend=backend, warmup_side=32, rate_limit_enabled=False)
        async with make_client(settings) as client:
            response = await client.post("/v1/transform", files=_files(picture_bytes((48, 40))))
        assert response.status_code == 200
        return np.asarray(Image.open(io.BytesIO(response.content)), dtype=np.int16)

    assert np.abs(asyncio.run(run("torch")) - asyncio.run(run("onnxruntime"))).max() <= 1


async def test_lazy_loading_waits_for_the_first_request(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(load_mode="lazy")) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/styles")).json()["styles"][0]["loaded"] is False
        assert (await client.post("/v1/transform", files=_files(picture_bytes()))).status_code == 200
        info = (await client.get("/v1/styles")).json()["styles"][0]
    assert info["loaded"] is True and info["size_multiple"] == 4


async def test_lru_bound_unloads_the_least_recently_used(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    save_random_generator(weights_dir / "second.pt", seed=1)
    async with make_client(settings_for(max_loaded_models=1)) as client:
        async def loaded() -> dict[str, bool]:
            return {s["name"]: s["loaded"] for s in (await client.get("/v1/styles")).json()["styles"]}

        assert await loaded() == {"random": True, "second": False}
        assert (await client.post("/v1/transform", files=_files(picture_bytes()), data={"style": "second"})).status_code == 200
        assert await loaded() == {"random": False, "second": True}
        assert (await client.post("/v1/transform", files=_files(picture_bytes()), data={"style": "random"})).status_code == 200
        assert await loaded() == {"random": True, "second": False}


async def test_unavailable_style_is_listed_and_refused_but_others_serve(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    (weights_dir / "broken.onnx").write_bytes(b"junk")
    async with make_client(settings_for(load_mode="lazy")) as client:
        response = await client.post("/v1/transform", files=_files(picture_bytes()), data={"style": "broken"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "style_unavailable"
        assert (await client.post("/v1/transform", files=_files(picture_bytes()))).status_code == 200
        styles = {s["name"]: s for s in (await client.get("/v1/styles")).json()["styles"]}
        assert styles["broken"]["available"] is False and "ONNX" in styles["broken"]["reason"]
        assert (await client.get("/readyz")).status_code == 200


async def test_reload_picks_up_new_files_without_dropping_requests(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for()) as client:
        entry = client.app.state.registry.entries["random"]

        def slow(batch: np.ndarray) -> np.ndarray:
            time.sleep(0.5)
            return np.zeros_like(batch)

        entry.loaded = dataclasses.replace(entry.loaded, predictor=slow)
        in_flight = asyncio.create_task(client.post("/v1/transform", files=_files(picture_bytes())))
        await asyncio.sleep(0.1)
        save_random_generator(weights_dir / "added.pt", seed=2)
        reloaded = await client.post("/v1/admin/reload")
        assert reloaded.status_code == 200
        assert {s["name"] for s in reloaded.json()["styles"]} == {"random", "added"}
        assert (await in_flight).status_code == 200
        after = await client.post("/v1/transform", files=_files(picture_bytes()), data={"style": "added"})
        assert after.status_code == 200


async def test_admin_key_is_required_when_configured(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for(admin_key="s3cret")) as client:
        assert (await client.post("/v1/admin/reload")).status_code == 401
        assert (await client.post("/v1/admin/reload", headers={"x-api-key": "nope"})).status_code == 403
        assert (await client.post("/v1/admin/reload", headers={"authorization": "Bearer s3cret"})).status_code == 200
        assert (await client.post("/v1/admin/reload", headers={"x-api-key": "s3cret"})).status_code == 200


async def test_without_a_key_admin_answers_loopback_only(make_client: Any, settings_for: Callable[..., Settings]) -> None:
    async with make_client(settings_for()) as client:
        transport = httpx.ASGITransport(app=client.app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as remote:
            refused = await remote.post("/v1/admin/reload")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert (await client.post("/v1/admin/reload")).status_code == 200


async def test_compare_returns_a_captioned_sheet(weights_dir: Path, make_client: Any, settings_for: Callable[..., Settings]) -> None:
    save_random_generator(weights_dir / "second.pt", seed=1, sidecar={"name": "second", "display_name": "Second style"})
    async with make_client(settings_for(compare_max_styles=2)) as client:
        response = await client.post("/v1/compare", files=_files(picture_bytes((120, 80))))
        assert response.status_code == 200 and response.headers["x-styles"] == "random,second"
        sheet = Image.open(io.BytesIO(response.content))
        assert sheet.width > 3 * 120 and 80 < sheet.height < 160  # one row: original and two styles
        chosen = await client.post("/v1/compare", files=_files(picture_bytes()), data={"styles": "second"})
        assert chosen.headers["x-styles"] == "second"
        too_many = await client.post("/v1/compare", files=_files(picture_bytes()), data={"styles": "random,second,x"})
        assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "styles"]
        unknown = await client.post("/v1/compare", files=_files(picture_bytes()), data={"styles": "random,x"})
        assert unknown.status_code == 404
        bad = await client.post("/v1/compare", files=_files(b"nope"))
        assert bad.status_code == 415


def _load_bf16(path: Path, batches: list[np.ndarray] | None = None) -> Any:
    return load_style(ModelFile(path, read_spec(path)), threads=1, warmup_side=32, precision="bf16", check_batches=batches)


def test_bf16_is_refused_on_a_cpu_without_avx512_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(styles, "cpu_has_bf16", lambda: False)
    style = _load_bf16(save_random_generator(tmp_path / "r.pt"))
    assert style.precision == "fp32" and "AVX-512 BF16" in style.precision_note
    assert style.predictor.bf16 is False


def test_bf16_runs_when_the_cpu_has_it_and_the_output_stays_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(styles, "cpu_has_bf16", lambda: True)
    batches = [np.random.default_rng(1).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)]
    path = save_random_generator(tmp_path / "r.pt")
    style = _load_bf16(path, batches)
    assert (style.precision, style.precision_note, style.predictor.bf16) == ("bf16", None, True)
    fp32 = _load(path).predictor(batches[0])
    assert styles.psnr(style.predictor(batches[0]), fp32) >= styles.BF16_MIN_PSNR_DB


def test_bf16_that_degrades_the_picture_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(styles, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(styles, "BF16_MIN_PSNR_DB", 500.0)
    style = _load_bf16(save_random_generator(tmp_path / "r.pt"))  # the built-in check pattern
    assert style.precision == "fp32" and "dB PSNR" in style.precision_note


def test_bf16_leaves_onnx_styles_alone(onnx_models: dict[str, Path]) -> None:
    style = _load_bf16(onnx_models["nchw"])
    assert style.precision == "fp32" and "PyTorch" in style.precision_note


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert styles.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


async def test_styles_listing_reports_the_precision(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import _running_client

    monkeypatch.setattr(styles, "cpu_has_bf16", lambda: False)
    photos = tmp_path / "check"
    photos.mkdir()
    (photos / "a.png").write_bytes(picture_bytes((40, 40)))
    settings = Settings(weights_dir=weights_dir, warmup_side=32, precision="bf16", precision_check_dir=photos)
    async with _running_client(settings) as client:
        (info,) = (await client.get("/v1/styles")).json()["styles"]
    assert info["precision"] == "fp32" and "AVX-512" in info["precision_note"]
