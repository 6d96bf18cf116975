"""``POST /v1/avatar`` through the real app, on the real photos with a random generator."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from animegan_api.config import Settings
from conftest import AppClient, expect_error, picture_bytes, save_random_generator, upload

FACE_PHOTOS = [f"face_{index:02d}.jpg" for index in range(1, 17)]


def read(shared: Path, name: str) -> bytes:
    return (shared / "photos" / name).read_bytes()


def boxes(header: str) -> list[tuple[int, ...]]:
    return [tuple(int(value) for value in box.split(",")) for box in header.split(";") if box]


def jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.real_weights
@pytest.mark.parametrize("name", FACE_PHOTOS)
async def test_every_portrait_gives_a_square_avatar(client: AppClient, shared: Path, name: str) -> None:
    response = await client.post("/v1/avatar", files=upload(read(shared, name)), data={"size": "128"})
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (128, 128)
    assert response.headers["x-faces-found"] == "1"
    assert response.headers["x-face-index"] == "0"
    assert boxes(response.headers["x-face-box"]) == boxes(response.headers["x-face-boxes"])
    stages = [part.split(";")[0] for part in response.headers["server-timing"].split(", ")]
    assert stages == ["decode", "detect", "queue", "inference", "encode"]


@pytest.mark.real_weights
async def test_group_photo_every_face_and_each_by_index(client: AppClient, shared: Path) -> None:
    data = read(shared, "group_01.jpg")
    sheet = await client.post("/v1/avatar", files=upload(data), data={"face": "all", "size": "96"})
    assert sheet.status_code == 200
    assert sheet.headers["x-faces-found"] == "3" and sheet.headers["x-face-index"] == "0,1,2"
    found = boxes(sheet.headers["x-face-boxes"])
    width, height = Image.open(io.BytesIO(sheet.content)).size
    assert width > 3 * 96 and height > 96  # three captioned tiles side by side
    third = await client.post("/v1/avatar", files=upload(data), data={"face": "2", "size": "96"})
    assert boxes(third.headers["x-face-box"]) == [found[2]]
    largest = await client.post("/v1/avatar", files=upload(data), data={"size": "96"})
    assert boxes(largest.headers["x-face-box"])[0] == max(found, key=lambda box: box[2] * box[3])
    message = expect_error(await client.post("/v1/avatar", files=upload(data), data={"face": "3"}), 422, "no_face")
    assert "only 3 found" in message


@pytest.mark.real_weights
async def test_a_landscape_has_no_face(client: AppClient, shared: Path) -> None:
    response = await client.post("/v1/avatar", files=upload(read(shared, "landscape_01.jpg")))
    assert "no face found" in expect_error(response, 422, "no_face")


@pytest.mark.real_weights
async def test_a_face_in_the_corner_is_found_where_it_was_put(client: AppClient, shared: Path) -> None:
    face = Image.open(shared / "photos" / "face_05.jpg").convert("RGB")
    alone = await client.post("/v1/avatar", files=upload(jpeg(face)), data={"size": "64"})
    ((left, top, width, height),) = boxes(alone.headers["x-face-box"])
    canvas = Image.new("RGB", (2000, 1400), (30, 90, 40))
    offset = (canvas.width - face.width, canvas.height - face.height)  # bottom-right corner
    canvas.paste(face, offset)
    padded = await client.post("/v1/avatar", files=upload(jpeg(canvas)), data={"size": "64"})
    assert padded.status_code == 200
    ((found,),) = [boxes(padded.headers["x-face-box"])]
    assert overlap(found, (left + offset[0], top + offset[1], width, height)) > 0.7  # searched at 1/3 scale here


def overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over union of two left, top, width, height boxes."""
    width = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


async def test_a_plain_picture_has_no_face(client: AppClient) -> None:
    expect_error(await client.post("/v1/avatar", files=upload(picture_bytes((300, 300)))), 422, "no_face")


@pytest.mark.parametrize(
    "form", [{"face": "left"}, {"face": "-1"}, {"margin": "9"}, {"size": "8"}, {"size": "4096"}, {"quality": "0"}]
)
async def test_parameters_out_of_range_are_422(client: AppClient, form: dict[str, str]) -> None:
    response = await client.post("/v1/avatar", files=upload(picture_bytes()), data=form)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == next(iter(form))


async def test_bad_uploads_get_the_image_errors(client: AppClient) -> None:
    expect_error(await client.post("/v1/avatar", files=upload(b"not a picture")), 415, "unsupported_image")
    expect_error(await client.post("/v1/avatar", files=upload(b"\x89PNG\r\n\x1a\n broken")), 400, "corrupt_image")
    expect_error(
        await client.post("/v1/avatar", files=upload(picture_bytes()), data={"style": "x"}), 404, "unknown_style"
    )


@pytest.mark.real_weights
async def test_repeat_is_a_cache_hit_with_the_same_face_headers(client: AppClient, shared: Path) -> None:
    data, form = read(shared, "face_01.jpg"), {"size": "64", "margin": "1.0"}
    first = await client.post("/v1/avatar", files=upload(data), data=form)
    again = await client.post("/v1/avatar", files=upload(data), data=form)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.content == first.content
    assert again.headers["x-face-box"] == first.headers["x-face-box"]
    other = await client.post("/v1/avatar", files=upload(data), data={"size": "64", "margin": "0.2"})
    assert other.headers["x-cache"] == "miss"


@pytest.fixture
def face_style(tmp_path: Path, settings_for: Callable[..., Settings]) -> Settings:
    folder = tmp_path / "face-weights"
    folder.mkdir()
    save_random_generator(folder / "portrait.pt", sidecar={"preprocess": "face", "size_multiple": 4})
    return settings_for(weights_dir=folder)


@pytest.mark.real_weights
async def test_face_styles_are_framed_on_the_face_by_transform(
    make_client: Any, face_style: Settings, shared: Path
) -> None:
    face = Image.open(shared / "photos" / "face_05.jpg").convert("RGB")
    canvas = Image.new("RGB", (2400, 1000), (30, 90, 40))
    canvas.paste(face, (canvas.width - face.width, 0))  # far from the centre square
    async with make_client(face_style) as client:
        framed = await client.post("/v1/transform", files=upload(jpeg(canvas)), data={"max_side": "128"})
        assert framed.status_code == 200 and framed.headers["x-faces-found"] == "1"
        ((x, _, _, _),) = boxes(framed.headers["x-face-box"])
        assert x > canvas.width - face.width
        assert Image.open(io.BytesIO(framed.content)).size == (128, 128)
        plain = await client.post("/v1/transform", files=upload(picture_bytes((300, 200))), data={"max_side": "64"})
        assert plain.status_code == 200 and plain.headers["x-faces-found"] == "0"  # the centre square, as before
        assert Image.open(io.BytesIO(plain.content)).size == (64, 64)


async def test_other_styles_ignore_faces_on_transform(client: AppClient) -> None:
    response = await client.post("/v1/transform", files=upload(picture_bytes((70, 50))))
    assert response.status_code == 200 and "x-faces-found" not in response.headers
