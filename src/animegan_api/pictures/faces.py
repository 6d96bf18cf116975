"""Find faces in a photo: dlib's HOG detector and its 5-point landmarks, on a downscaled copy.

Why these: the HOG frontal-face detector is compiled into dlib itself and the
5-point landmark model ships inside the ``face_recognition_models`` package,
so nothing is downloaded at run time. On the test photos it finds every
face, three in the group photo, none in the landscapes, in 6-60 ms on one
core, and keeps finding faces tilted 35 degrees. The landmarks give the eye
line, from which the avatar is levelled. (MediaPipe's wheel ships no model;
the BlazeFace packages need TensorFlow; OpenCV's Haar cascades missed faces
and fired on landscapes at 100-250 ms: see docs/avatars.md.)
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["DetectorMissing", "Face", "FaceDetector", "Point", "reading_order"]

_LANDMARK_MODEL = "models/shape_predictor_5_face_landmarks.dat"
Point = tuple[float, float]


class DetectorMissing(RuntimeError):
    """The detector's packages are not installed."""


@dataclass(frozen=True)
class Face:
    """One face, in the full picture's pixels."""

    box: tuple[float, float, float, float]  # left, top, width, height
    score: float
    eyes: tuple[Point, Point] | None  # the eye on the picture's left first

    @property
    def centre(self) -> Point:
        left, top, width, height = self.box
        return left + width / 2, top + height / 2

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    @property
    def roll(self) -> float:
        """Degrees the eye line turns clockwise on screen (0 without landmarks)."""
        if self.eyes is None:
            return 0.0
        (x1, y1), (x2, y2) = self.eyes
        return math.degrees(math.atan2(y2 - y1, x2 - x1))

    def rounded_box(self) -> tuple[int, int, int, int]:
        return tuple(round(value) for value in self.box)  # type: ignore[return-value]


def reading_order(faces: list[Face]) -> list[Face]:
    """Rows top to bottom, left to right within a row: the order ``face=<index>`` counts in.

    A face joins the current row when its centre is less than half the row's
    first face's height below that face's centre.
    """
    rows: list[list[Face]] = []
    for face in sorted(faces, key=lambda f: f.centre[1]):
        if rows and face.centre[1] - rows[-1][0].centre[1] < rows[-1][0].box[3] / 2:
            rows[-1].append(face)
        else:
            rows.append([face])
    return [face for row in rows for face in sorted(row, key=lambda f: f.centre[0])]


def _landmark_model_path() -> Path:
    """The 5-point model inside ``face_recognition_models``, found without importing it.

    (Its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ships.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorMissing("the face_recognition_models package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / _LANDMARK_MODEL
    if not path.is_file():
        raise DetectorMissing(f"{path} is missing from face_recognition_models")
    return path


class FaceDetector:
    """Faces in reading order, found on a copy whose longest side is at most ``detect_side``.

    One call at a time: dlib's detector keeps scratch state, and a call costs
    tens of milliseconds, so a lock is cheaper than a model per thread.
    """

    def __init__(self, detect_side: int = 640, threshold: float = 0.0) -> None:
        try:
            import dlib  # type: ignore[import-untyped]  # no stubs; used through Any
        except ImportError as exc:
            raise DetectorMissing("dlib is not installed (pip install dlib-bin)") from exc
        self.detect_side = detect_side
        self.threshold = threshold
        self._detector: Any = dlib.get_frontal_face_detector()
        self._landmarks: Any = dlib.shape_predictor(str(_landmark_model_path()))
        self._lock = threading.Lock()

    def detect(self, picture: Image.Image) -> list[Face]:
        scale = min(1.0, self.detect_side / max(picture.size))
        small = picture.convert("RGB")
        if scale < 1.0:
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        pixels = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
        with self._lock:
            rects, scores, _ = self._detector.run(pixels, 0, self.threshold)
            shapes = [self._landmarks(pixels, rect) for rect in rects]
        found = zip(rects, scores, shapes, strict=True)
        faces = [_face(rect, score, shape, scale, picture.size) for rect, score, shape in found]
        return reading_order(faces)


def _face(rect: Any, score: float, shape: Any, scale: float, size: tuple[int, int]) -> Face:
    """A detection in the small copy back in the picture's pixels, the box clipped to the picture."""
    left, top = max(0.0, rect.left() / scale), max(0.0, rect.top() / scale)
    right, bottom = min(float(size[0]), (rect.right() + 1) / scale), min(float(size[1]), (rect.bottom() + 1) / scale)
    points = [(part.x / scale, part.y / scale) for part in shape.parts()]
    eyes = None
    if len(points) == 5:  # 0-1: one eye's corners, 2-3: the other's, 4: below the nose
        first = _mean(points[0:2])
        second = _mean(points[2:4])
        eyes = (first, second) if first[0] <= second[0] else (second, first)
    return Face((left, top, right - left, bottom - top), float(score), eyes)


def _mean(points: list[Point]) -> Point:
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)
