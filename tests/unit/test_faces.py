"""The face detector on the real photos, and the reading order it reports faces in."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from animegan_api.pictures.faces import Face, FaceDetector, reading_order

pytestmark = pytest.mark.real_weights
FACE_PHOTOS = [f"face_{index:02d}.jpg" for index in range(1, 17)]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def photo(shared: Path, name: str) -> Image.Image:
    return Image.open(shared / "photos" / name).convert("RGB")


@pytest.mark.parametrize("name", FACE_PHOTOS)
def test_every_portrait_has_one_face_with_eyes(shared: Path, detector: FaceDetector, name: str) -> None:
    picture = photo(shared, name)
    faces = detector.detect(picture)
    assert len(faces) == 1
    left, top, width, height = faces[0].box
    assert width >= picture.width / 5 and left >= 0 and left + width <= picture.width and top + height <= picture.height
    assert faces[0].eyes is not None
    (x1, y1), (x2, y2) = faces[0].eyes
    assert left <= x1 < x2 <= left + width and top <= min(y1, y2) <= top + height / 2 + height / 4


def test_group_photo_has_three_faces_in_reading_order(shared: Path, detector: FaceDetector) -> None:
    faces = detector.detect(photo(shared, "group_01.jpg"))
    assert len(faces) == 3
    assert faces == reading_order(faces)


@pytest.mark.parametrize("name", ["landscape_01.jpg", "landscape_02.jpg", "street_01.jpg", "food_01.jpg"])
def test_no_face_in_pictures_without_people(shared: Path, detector: FaceDetector, name: str) -> None:
    assert detector.detect(photo(shared, name)) == []


@pytest.mark.parametrize("turn", [-20, 20])
def test_roll_follows_a_turned_head(shared: Path, detector: FaceDetector, turn: int) -> None:
    picture = photo(shared, "face_05.jpg")
    upright = detector.detect(picture)[0].roll
    turned = detector.detect(picture.rotate(turn, Image.Resampling.BICUBIC, expand=True))
    assert len(turned) == 1
    assert turned[0].roll == pytest.approx(upright - turn, abs=4)  # PIL turns counter-clockwise


def test_small_copy_boxes_are_in_full_size_pixels(shared: Path, detector: FaceDetector) -> None:
    picture = photo(shared, "face_05.jpg")  # 862 px: searched at 640
    large = detector.detect(picture)[0].box
    small = FaceDetector(detect_side=320).detect(picture)[0].box
    assert small == pytest.approx(large, abs=picture.width / 20)


def face_at(x: float, y: float, size: float = 10) -> Face:
    return Face((x - size / 2, y - size / 2, size, size), 1.0, None)


def test_reading_order_is_rows_then_left_to_right() -> None:
    top_right, top_left, lower = face_at(80, 20), face_at(10, 23), face_at(50, 60)
    assert reading_order([lower, top_right, top_left]) == [top_left, top_right, lower]


def test_roll_without_landmarks_is_zero_and_with_them_follows_the_eyes() -> None:
    assert face_at(5, 5).roll == 0
    tilted = Face((0, 0, 10, 10), 1.0, ((0.0, 0.0), (10.0, 10.0)))
    assert tilted.roll == pytest.approx(45)
