"""The runner behind every entry point: a face style framed alike everywhere, and plans priced whole."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from animegan_api.cli import main
from animegan_api.config import Settings
from animegan_api.runtime.precision import psnr
from conftest import expect_error, picture_bytes, swap_predictor, upload
from gates import Gate, until

SIDE = 256


def _array(picture: Image.Image) -> np.ndarray:
    """An RGB picture as a generator-range batch, for PSNR."""
    return np.asarray(picture.convert("RGB"), dtype=np.float32) / 127.5 - 1.0


@pytest.fixture
def face_style(tmp_path: Path, shared: Path) -> Path:
    """A real model (AnimeGANv3 Cute, fast) whose sidecar says ``preprocess: "face"``, alone in a weights folder."""
    folder = tmp_path / "face-weights"
    folder.mkdir()
    shutil.copy(shared / "models" / "animeganv3_cute.onnx", folder / "cute_face.onnx")
    sidecar = json.loads((shared / "models" / "animeganv3_cute.onnx.json").read_text())
    sidecar |= {"name": "cute_face", "file": "cute_face.onnx", "preprocess": "face", "display_name": "Cute face"}
    (folder / "cute_face.onnx.json").write_text(json.dumps(sidecar))
    return folder


@pytest.fixture
def off_centre_face(tmp_path: Path, shared: Path) -> Path:
    """A portrait pasted at the right edge of a wide canvas: its face is far from the centre square."""
    face = Image.open(shared / "photos" / "face_05.jpg").convert("RGB")
    canvas = Image.new("RGB", (2400, 1000), (30, 90, 40))
    canvas.paste(face, (canvas.width - face.width, 0))
    path = tmp_path / "photo.jpg"
    canvas.save(path, "JPEG", quality=92)
    return path


@pytest.mark.real_weights
async def test_a_face_style_frames_the_same_face_on_transform_compare_and_convert(
    make_client: Any, settings_for: Callable[..., Settings], face_style: Path, off_centre_face: Path, tmp_path: Path
) -> None:
    data = off_centre_face.read_bytes()
    form = {"max_side": str(SIDE)}
    async with make_client(settings_for(weights_dir=face_style, cache_max_bytes=0)) as client:
        transformed = await client.post("/v1/transform", files=upload(data, "photo.jpg"), data=form)
        compared = await client.post("/v1/compare", files=upload(data, "photo.jpg"), data=form)
    assert transformed.status_code == 200 and compared.status_code == 200, compared.text
    for name in ("x-faces-found", "x-face-box", "x-face-roll"):
        assert transformed.headers[name] == compared.headers[name], name
    assert transformed.headers["x-faces-found"] == "1"
    left = int(transformed.headers["x-face-box"].split(",")[0])
    assert left > 2400 - 1000  # on the face at the right edge, not the centre square

    out = tmp_path / "out"
    argv = ["convert", str(off_centre_face), "-o", str(out), "--weights-dir", str(face_style), "--max-side", str(SIDE)]
    assert main(argv) == 0
    avatar = Image.open(io.BytesIO(transformed.content))
    converted = Image.open(out / "photo.png")
    assert avatar.size == converted.size == (SIDE, SIDE)
    assert psnr(_array(avatar), _array(converted)) > 40  # the same cut; only thread counts may differ

    # The compare sheet: the original (fitted to 256 x 106) first, then the style's square fitted into a tile.
    sheet = Image.open(io.BytesIO(compared.content))
    tile_w, square, gap = SIDE, int(1000 * SIDE / 2400), 8
    left = 2 * gap + tile_w + (tile_w - square) // 2
    tile = sheet.crop((left, gap, left + square, gap + square))
    expected = avatar.resize((square, square), Image.Resampling.LANCZOS)
    assert psnr(_array(tile), _array(expected)) > 25


@pytest.mark.real_weights
async def test_a_sheet_of_three_faces_is_refused_before_it_waits_when_one_forward_fits(
    make_client: Any, settings_for: Callable[..., Settings], shared: Path
) -> None:
    """2 s a face, 10 s of work ahead, 14 s deadline: one face would fit (12 s), three would end at 16 s."""
    async with make_client(settings_for(request_timeout_s=14.0, max_queue=8, cache_max_bytes=0)) as client:
        gate = Gate(output=np.zeros_like)
        swap_predictor(client, gate)
        speed = client.app.state.services.engine.speed
        for _ in range(20):  # a steady rate: the spread admission adds twice shrinks to nothing
            speed.record(gate, 3 * 64 * 64, 2.0)
        ahead = asyncio.ensure_future(client.post("/v1/transform", files=upload(picture_bytes((160, 128)))))
        await gate.started(1)
        await until(lambda: client.app.state.services.engine.backlog_s() > 9)
        group = (shared / "photos" / "group_01.jpg").read_bytes()
        sheet = await client.post("/v1/avatar", files=upload(group), data={"face": "all", "size": "64"})
        message = expect_error(sheet, 503, "overloaded")
        assert "model time is 6.0 s" in message and sheet.headers["retry-after"] == "2"
        assert len(gate.inputs) == 1  # refused before it queued: the model only ever saw the request ahead
        single = asyncio.ensure_future(client.post("/v1/avatar", files=upload(group), data={"face": "0", "size": "64"}))
        await until(lambda: client.app.state.services.engine.waiting == 1)  # one face fits: admitted, it waits
        gate.open()
        assert [r.status_code for r in await asyncio.gather(ahead, single)] == [200, 200]
        assert len(gate.inputs) == 2


@pytest.mark.real_weights
async def test_a_sheet_whose_faces_alone_outlast_the_deadline_is_413_before_any_forward(
    make_client: Any, settings_for: Callable[..., Settings], shared: Path
) -> None:
    """6 s a face, 14 s deadline, nothing ahead: three faces (18 s) could never finish, so no forward starts."""
    async with make_client(settings_for(request_timeout_s=14.0, cache_max_bytes=0)) as client:
        gate = Gate(output=np.zeros_like)
        gate.open()
        swap_predictor(client, gate)
        for _ in range(20):
            client.app.state.services.engine.speed.record(gate, 3 * 64 * 64, 6.0)
        group = (shared / "photos" / "group_01.jpg").read_bytes()
        sheet = await client.post("/v1/avatar", files=upload(group), data={"face": "all", "size": "64"})
        message = expect_error(sheet, 413, "too_large_for_deadline")
        assert "3 forwards need about 18.0 s" in message and "fewer styles or faces" in message
        single = await client.post("/v1/avatar", files=upload(group), data={"face": "1", "size": "64"})
        assert single.status_code == 200, single.text
        assert len(gate.inputs) == 1  # only the single face ever reached the model
