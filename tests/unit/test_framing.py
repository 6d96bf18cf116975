"""Framing a square around a face and cutting it out: pure geometry and pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from animegan_api.pictures.faces import Face
from animegan_api.pictures.framing import HAIR_SHIFT, MAX_ROLL, Frame, centre_square, cut, frame


def test_frame_is_sized_by_the_margin_and_sits_above_the_face() -> None:
    square = frame(Face((100, 200, 50, 60), 1.0, None), margin=0.5)
    assert square.side == pytest.approx(60 * 2)
    assert square.centre == pytest.approx((125, 230 - HAIR_SHIFT * 60))
    assert square.angle == 0


def test_frame_levels_the_eyes_within_bounds() -> None:
    tilted = Face((0, 0, 40, 40), 1.0, ((10.0, 10.0), (30.0, 20.0)))
    assert frame(tilted).angle == pytest.approx(26.565, abs=0.01)
    assert frame(tilted, level=False).angle == 0
    wild = Face((0, 0, 40, 40), 1.0, ((10.0, 0.0), (11.0, 40.0)))
    assert frame(wild).angle == MAX_ROLL


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2).astype(np.uint8))


def test_cut_inside_the_photo_is_the_crop_resized() -> None:
    picture = gradient(400, 300)
    square = Frame((200, 150), 100, 0)
    expected = np.asarray(picture.crop((150, 100, 250, 200)).resize((64, 64), Image.Resampling.BICUBIC), np.float32)
    got = np.asarray(cut(picture, square, 64), np.float32)
    assert got.shape == (64, 64, 3)
    assert np.abs(got - expected).mean() < 2


def test_cut_outside_the_photo_is_mirrored_not_black() -> None:
    picture = Image.new("RGB", (200, 200), (200, 120, 60))
    got = np.asarray(cut(picture, Frame((10, 10), 120, 0), 96), np.float32)
    assert got.min() > 150 * 0.3  # no black padding anywhere
    assert np.abs(got - np.array([200, 120, 60])).max() <= 2


def test_cut_turns_by_the_angle() -> None:
    picture = Image.new("RGB", (300, 300), "black")
    ImageDraw.Draw(picture).line([(50, 150), (250, 150)], fill="white", width=9)
    turned = picture.rotate(-20, Image.Resampling.BICUBIC, center=(150, 150))  # the line now falls to the right
    level = np.asarray(cut(turned, Frame((150, 150), 160, 20), 160).convert("L"), np.float32)
    rows = level.mean(axis=1)
    assert rows.argmax() == pytest.approx(80, abs=3)  # the line is horizontal again, through the middle
    assert rows.max() > 200


def test_cut_rejects_a_square_off_the_photo() -> None:
    with pytest.raises(ValueError):
        cut(Image.new("RGB", (50, 50)), Frame((500, 500), 20, 0), 32)


def test_a_face_style_without_a_face_takes_the_centre_square() -> None:
    picture = Image.new("RGB", (300, 100), (0, 0, 255))
    picture.paste((255, 0, 0), (100, 0, 200, 100))
    square = centre_square(picture.size)
    assert square.box() == (100, 0, 100, 100)
    assert np.asarray(cut(picture, square, 64), dtype=int)[:, 2:-2, 2].max() < 60  # resampling blends the edge
