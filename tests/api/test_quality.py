"""Picture quality with the real models from ../shared (skips without them, fails in CI)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from animegan_api.config import Settings
from animegan_api.pictures import imaging
from animegan_api.pictures.sheets import contact_sheet
from animegan_api.runtime.model import Generator
from conftest import serving

pytestmark = pytest.mark.real_weights
PHOTOS = ("landscape_01.jpg", "face_01.jpg")
MAX_SIDE = 384
# (backend, style, file that must have run it, size multiple)
SERVED = [
    ("torch", "animeganv2_hayao", "animeganv2_hayao.pt", 4),
    ("onnxruntime", "animeganv2_hayao", "animeganv2_hayao.onnx", 4),
    ("torch", "animeganv3_hayao", "animeganv3_hayao.onnx", 8),
    ("torch", "animeganv3_shinkai", "animeganv3_shinkai.onnx", 8),
    ("torch", "animeganv3_cute", "animeganv3_cute.onnx", 16),
]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _torch_reference(checkpoint: Path, upsample: str, rgb: Image.Image) -> np.ndarray:
    """An independent forward: the state dict straight into a generator, no service code."""
    generator = Generator(upsample).eval()  # type: ignore[arg-type]
    generator.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32).copy()).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.inference_mode():
        y = generator(x)[0].permute(1, 2, 0).numpy()
    return np.rint(np.clip((y + 1) * 127.5, 0, 255))


def _onnx_reference(model: Path, rgb: Image.Image) -> np.ndarray:
    """An independent ONNX Runtime run, with the layout read straight off the graph."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    nhwc = graph_input.shape[-1] == 3
    x = np.asarray(rgb, dtype=np.float32) / 127.5 - 1
    feed = x[None] if nhwc else x.transpose(2, 0, 1)[None]
    y = session.run(None, {graph_input.name: np.ascontiguousarray(feed)})[0][0]
    y = y if nhwc else y.transpose(1, 2, 0)
    return np.rint(np.clip((y + 1) * 127.5, 0, 255))


async def _post_all(models: Path, photos: Path, backend: str, styles: list[str]) -> dict[tuple[str, str], bytes]:
    settings = Settings(weights_dir=models, backend=backend, warmup_side=64, rate_limit_enabled=False)
    results = {}
    async with serving(settings) as client:
        for style in styles:
            for photo in PHOTOS:
                response = await client.post(
                    "/v1/transform",
                    files={"image": (photo, (photos / photo).read_bytes())},
                    data={"style": style, "max_side": str(MAX_SIDE)},
                )
                assert response.status_code == 200, response.text
                assert response.headers["x-style"] == style
                results[(style, photo)] = response.content
        listed = {s["name"]: s["file"] for s in (await client.get("/v1/styles")).json()["styles"]}
    for style in styles:
        results[(style, "file")] = listed[style].encode()
    return results


@pytest.fixture(scope="module")
def served(shared: Path) -> dict[tuple[str, str, str], bytes]:
    """Every real model's output for the photos, as the service returns it, computed once."""
    outputs: dict[tuple[str, str, str], bytes] = {}
    for backend in ("torch", "onnxruntime"):
        styles = sorted({style for b, style, _, _ in SERVED if b == backend})
        for (style, photo), body in asyncio.run(
            _post_all(shared / "models", shared / "photos", backend, styles)
        ).items():
            outputs[(backend, style, photo)] = body
    return outputs


def _picture(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


@pytest.mark.parametrize(("backend", "style", "file", "multiple"), SERVED)
@pytest.mark.parametrize("photo", PHOTOS)
def test_service_equals_a_direct_run_of_the_model(
    shared: Path,
    served: dict[tuple[str, str, str], bytes],
    backend: str,
    style: str,
    file: str,
    multiple: int,
    photo: str,
) -> None:
    assert served[(backend, style, "file")].decode() == file
    data = (shared / "photos" / photo).read_bytes()
    prepared = imaging.prepare(data, max_pixels=40_000_000, max_side=MAX_SIDE, multiple=multiple)
    assert all(side % multiple == 0 for side in prepared.rgb.size)
    output = _picture(served[(backend, style, photo)])
    assert output.shape[:2] == prepared.rgb.size[::-1]
    model = shared / "models" / file
    reference = (
        _torch_reference(model, "tf_legacy", prepared.rgb)
        if file.endswith(".pt")
        else _onnx_reference(model, prepared.rgb)
    )
    assert _psnr(output, reference) >= 40.0
    assert 8.0 < _psnr(output, np.asarray(prepared.rgb)) < 30.0  # stylised, not a copy


@pytest.mark.parametrize("photo", PHOTOS)
def test_hayao_pytorch_and_onnx_agree(served: dict[tuple[str, str, str], bytes], photo: str) -> None:
    torch_output = _picture(served[("torch", "animeganv2_hayao", photo)])
    onnx_output = _picture(served[("onnxruntime", "animeganv2_hayao", photo)])
    assert _psnr(torch_output, onnx_output) >= 40.0


@pytest.mark.parametrize("photo", PHOTOS)
def test_sidecar_upsampling_is_honoured(shared: Path, served: dict[tuple[str, str, str], bytes], photo: str) -> None:
    """With the port's default upsampling the Hayao output is visibly different (about 20 dB)."""
    prepared = imaging.prepare(
        (shared / "photos" / photo).read_bytes(), max_pixels=40_000_000, max_side=MAX_SIDE, multiple=4
    )
    wrong = _torch_reference(shared / "models" / "animeganv2_hayao.pt", "align_corners", prepared.rgb)
    assert _psnr(_picture(served[("torch", "animeganv2_hayao", photo)]), wrong) < 30.0


async def test_odd_sizes_follow_the_rule_and_keep_size_and_alpha_are_restored(shared: Path) -> None:
    photo = Image.open(shared / "photos" / "street_02.jpg").convert("RGBA")  # 1279x867, odd width
    photo.putalpha(Image.linear_gradient("L").resize(photo.size))
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    async with serving(Settings(weights_dir=shared / "models", warmup_side=64, rate_limit_enabled=False)) as client:
        processed = await client.post(
            "/v1/transform",
            files={"image": ("p.png", buffer.getvalue())},
            data={"style": "animeganv3_cute", "max_side": "333"},
        )
        restored = await client.post(
            "/v1/transform",
            files={"image": ("p.png", buffer.getvalue())},
            data={"style": "animeganv3_cute", "max_side": "333", "keep_size": "true", "format": "webp"},
        )
    small = Image.open(io.BytesIO(processed.content))
    assert small.size == (320, 224) and small.mode == "RGBA"  # 333x225 rounded down to multiples of 16
    full = Image.open(io.BytesIO(restored.content))
    assert full.size == (1279, 867) and full.mode == "RGBA"
    assert np.abs(np.asarray(full.getchannel("A"), dtype=int) - np.asarray(photo.getchannel("A"), dtype=int)).max() <= 2


def test_a_wrong_size_rule_for_a_real_model_is_named(shared: Path, tmp_path: Path) -> None:
    from animegan_api.runtime.predictors import load_style
    from animegan_api.runtime.weights import ModelFile, WeightsError, read_spec

    model = tmp_path / "animeganv3_cute.onnx"
    model.write_bytes((shared / "models" / "animeganv3_cute.onnx").read_bytes())
    (tmp_path / "animeganv3_cute.onnx.json").write_text('{"size_multiple": 8, "layout": "NHWC"}')
    with pytest.raises(WeightsError, match="field 'size_multiple'"):
        load_style(ModelFile(model, read_spec(model)), threads=2, warmup_side=256)
    (tmp_path / "animeganv3_cute.onnx.json").unlink()
    assert load_style(ModelFile(model, read_spec(model)), threads=2, warmup_side=256).size_multiple == 16


def _check_batches(shared: Path) -> list[np.ndarray]:
    return [
        imaging.to_batch(Image.open(shared / "photos" / name).convert("RGB").resize((160, 160)))
        for name in ("face_01.jpg", "city_01.jpg")
    ]


def test_bf16_stays_within_35_db_of_fp32_on_real_photos(shared: Path) -> None:
    """The quality half of the bf16 guard, measured for real (slow here: this CPU emulates bf16)."""
    from animegan_api.runtime.precision import quality_refusal
    from animegan_api.runtime.predictors import TorchPredictor, load_style
    from animegan_api.runtime.weights import ModelFile, read_spec

    model = shared / "models" / "animeganv2_hayao.pt"
    fp32 = load_style(ModelFile(model, read_spec(model)), threads=2, warmup_side=64).predictor
    bf16 = TorchPredictor(fp32.module, bf16=True)
    assert quality_refusal(fp32, bf16, _check_batches(shared), "bf16") is None


@pytest.mark.parametrize("model", ["animeganv2_hayao.onnx", "animeganv3_hayao.onnx"])
def test_int8_is_served_only_where_vnni_keeps_it_within_35_db(
    shared: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    """Quantised for real as if the CPU had VNNI; where it has not, the picture falls below the line and is refused."""
    from animegan_api.runtime import precision
    from animegan_api.runtime.predictors import load_style
    from animegan_api.runtime.weights import ModelFile, read_spec

    has_vnni = bool(precision.cpu_flags() & precision.NEEDED_FLAGS["int8"])
    monkeypatch.setattr(precision, "cpu_flags", lambda source=precision.CPUINFO: frozenset({"avx512_vnni"}))
    path = shared / "models" / model
    style = load_style(ModelFile(path, read_spec(path)), 2, 64, "int8", _check_batches(shared))
    if has_vnni:  # exact u8 x s8 products: the copy may pass; whichever way, the decision says why
        assert style.precision == "int8" or "dB PSNR from fp32" in str(style.precision_note)
    else:
        assert style.precision == "fp32" and "dB PSNR from fp32" in str(style.precision_note)
        assert 20.0 < float(str(style.precision_note).split(" dB")[0].rsplit(" ", 1)[1]) < 35.0


@pytest.mark.parametrize(
    "model",
    [
        "animeganv2_hayao.onnx",
        "animeganv3_hayao.onnx",
        "animeganv3_shinkai.onnx",
        "animeganv3_cute.onnx",
        "animeganv2_hayao.pt",
    ],
)
def test_openvino_and_the_other_runtime_draw_the_same_pictures(shared: Path, model: str) -> None:
    """Either runtime may serve a style (ANIMEGAN_ONNX_RUNTIME / ANIMEGAN_TORCH_RUNTIME=auto): their pictures
    must not tell them apart (the .pt converted for OpenVINO keeps its tf_legacy upsampling)."""
    from animegan_api.runtime.predictors import load_style
    from animegan_api.runtime.weights import ModelFile, read_spec

    path = shared / "models" / model
    other = "onnxruntime" if model.endswith(".onnx") else "pytorch"
    pictures = {}
    for runtime in (other, "openvino"):
        option = {"onnx_runtime" if model.endswith(".onnx") else "torch_runtime": runtime}
        style = load_style(ModelFile(path, read_spec(path)), 2, 64, **option)  # type: ignore[arg-type]
        assert style.runtime == runtime
        outputs = [style.predictor(batch) for batch in _check_batches(shared)]
        pictures[runtime] = [np.asarray(imaging.from_output(output[0])) for output in outputs]
    for other_picture, vino_picture in zip(pictures[other], pictures["openvino"], strict=True):
        assert _psnr(other_picture, vino_picture) >= 50.0


AVATAR_PHOTOS = [f"face_{index:02d}.jpg" for index in range(1, 17)] + ["group_01.jpg"]


def test_real_avatars_keep_the_face(shared: Path, tmp_path: Path) -> None:
    """Every portrait's Hayao avatar is still a face to the detector; the sheet is saved for looking at.

    Set ANIMEGAN_PICTURE_DIR to keep ``avatars.png`` (each face photo's avatar, then the group's faces).
    """
    import os

    from animegan_api.pictures.faces import FaceDetector

    settings = Settings(weights_dir=shared / "models", warmup_side=32, rate_limit_enabled=False)
    detector = FaceDetector()
    tiles: list[tuple[str, Image.Image]] = []

    async def run() -> None:
        async with serving(settings) as client:
            for name in AVATAR_PHOTOS:
                form = {"style": "animeganv2_hayao", "size": "256", "face": "all"}
                response = await client.post(
                    "/v1/avatar", files={"image": (name, (shared / "photos" / name).read_bytes())}, data=form
                )
                assert response.status_code == 200, response.text
                if response.headers["x-faces-found"] == "1":
                    tiles.append((name, Image.open(io.BytesIO(response.content)).convert("RGB")))
                else:
                    assert name == "group_01.jpg" and response.headers["x-faces-found"] == "3"
                    for index in range(3):
                        one = await client.post(
                            "/v1/avatar",
                            files={"image": (name, (shared / "photos" / name).read_bytes())},
                            data={**form, "face": str(index)},
                        )
                        tiles.append((f"{name} face {index}", Image.open(io.BytesIO(one.content)).convert("RGB")))

    asyncio.run(run())
    for name, avatar in tiles:
        assert avatar.size == (256, 256)
        assert len(detector.detect(avatar)) >= 1, f"the avatar of {name} no longer shows a face"
    sheet = contact_sheet(tiles, (256, 256), columns=5)
    sheet.save(Path(os.environ.get("ANIMEGAN_PICTURE_DIR", tmp_path)) / "avatars.png")
