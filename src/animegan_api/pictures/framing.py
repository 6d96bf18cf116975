"""Frame a square avatar around a face and cut it out: pure functions on pictures.

The square is centred a little above the face box (hair needs more room than
the neck), sized from the box by the margin, and turned so the eye line is
level. Where it leaves the photo, the photo is mirrored and blurred rather
than padded with black: a face near the edge still gets a whole, quiet
background instead of a hard bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from animegan_api.failures import Refusal
from animegan_api.pictures.faces import Face

__all__ = ["DEFAULT_MARGIN", "FaceChoice", "Frame", "NoFace", "centre_square", "choose", "cut", "frame"]

DEFAULT_MARGIN = 0.6  # each side, in face-box sizes: side = 2.2 boxes, enough for hair and chin
HAIR_SHIFT = 0.12  # the square's centre sits this many face-box sizes above the box's centre
MAX_ROLL = 45.0  # larger eye-line angles come from bad landmarks, not heads


FaceChoice = int | Literal["largest", "all"]


class NoFace(Refusal):
    """No face to frame: none found, or none with the index asked for."""

    def __init__(self, message: str) -> None:
        super().__init__("no_face", message)


@dataclass(frozen=True)
class Frame:
    """A square in the photo's pixels, turned by ``angle`` degrees (counter-clockwise levels a clockwise tilt)."""

    centre: tuple[float, float]
    side: float
    angle: float

    def box(self) -> tuple[int, int, int, int]:
        """Left, top, width, height of the square before turning: what the header reports."""
        half = self.side / 2
        return round(self.centre[0] - half), round(self.centre[1] - half), round(self.side), round(self.side)


def frame(face: Face, margin: float = DEFAULT_MARGIN, level: bool = True) -> Frame:
    """The avatar square for ``face``: ``margin`` face-box sizes of room on each side."""
    left, top, width, height = face.box
    size = max(width, height)
    centre = (left + width / 2, top + height / 2 - HAIR_SHIFT * size)
    angle = max(-MAX_ROLL, min(MAX_ROLL, face.roll)) if level else 0.0
    return Frame(centre, size * (1 + 2 * margin), angle)


def choose(faces: list[Face], wanted: FaceChoice, max_faces: int) -> list[int]:
    """Indexes (reading order) of the faces to frame; :class:`NoFace` when there is none to pick."""
    if not faces:
        raise NoFace(
            "no face found in the picture: avatars need a face turned less than about 30 degrees from the camera, "
            "at least about 1/8 of the picture's longest side"
        )
    if wanted == "all":
        return list(range(min(len(faces), max_faces)))
    if wanted == "largest":
        return [max(range(len(faces)), key=lambda index: faces[index].area)]
    if wanted >= len(faces):
        raise NoFace(f"face {wanted} was asked for, but only {len(faces)} found (0 to {len(faces) - 1})")
    return [wanted]


def centre_square(size: tuple[int, int]) -> Frame:
    """The largest centred square: how a face style frames a picture in which no face was found."""
    width, height = size
    return Frame((width / 2, height / 2), float(min(width, height)), 0.0)


def cut(picture: Image.Image, square: Frame, side: int) -> Image.Image:
    """The framed square as a ``side`` x ``side`` RGB picture.

    Works at the output's scale from the start: the part of the photo inside
    the square's reach is resized once, then mirrored outwards, turned and
    cropped, so a large photo never gets a full-size padded copy.
    """
    scale = side / square.side
    turn = math.radians(square.angle)
    reach = square.side * (abs(math.cos(turn)) + abs(math.sin(turn))) / 2 + 2 / scale
    wanted = (
        math.floor(square.centre[0] - reach),
        math.floor(square.centre[1] - reach),
        math.ceil(square.centre[0] + reach),
        math.ceil(square.centre[1] + reach),
    )
    region = _extended(picture.convert("RGB"), wanted, scale, blur=max(1.0, side / 48))
    centre = ((square.centre[0] - wanted[0]) * scale, (square.centre[1] - wanted[1]) * scale)
    turned = region.rotate(square.angle, Image.Resampling.BICUBIC, center=centre) if square.angle else region
    half = side / 2
    box = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return turned.resize((side, side), Image.Resampling.BICUBIC, box=box)


def _extended(picture: Image.Image, wanted: tuple[int, int, int, int], scale: float, blur: float) -> Image.Image:
    """``wanted`` (may leave the photo) at ``scale``: the photo inside, mirrored and blurred outside."""
    left, top, right, bottom = wanted
    inner = (max(0, left), max(0, top), min(picture.width, right), min(picture.height, bottom))
    if inner[0] >= inner[2] or inner[1] >= inner[3]:
        raise ValueError("the square does not overlap the picture")
    out_w, out_h = max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))
    pad_left, pad_top = round((inner[0] - left) * scale), round((inner[1] - top) * scale)
    inner_w = max(1, min(out_w - pad_left, round((inner[2] - inner[0]) * scale)))
    inner_h = max(1, min(out_h - pad_top, round((inner[3] - inner[1]) * scale)))
    photo = picture.resize((inner_w, inner_h), Image.Resampling.LANCZOS, box=inner, reducing_gap=3.0)
    if (pad_left, pad_top, inner_w, inner_h) == (0, 0, out_w, out_h):
        return photo
    pads = ((pad_top, out_h - pad_top - inner_h), (pad_left, out_w - pad_left - inner_w), (0, 0))
    mirrored = Image.fromarray(np.pad(np.asarray(photo), pads, mode="symmetric"))
    softened = mirrored.filter(ImageFilter.GaussianBlur(blur))
    mask = Image.new("L", mirrored.size, 0)
    mask.paste(255, (pad_left, pad_top, pad_left + inner_w, pad_top + inner_h))
    return Image.composite(mirrored, softened, mask)
