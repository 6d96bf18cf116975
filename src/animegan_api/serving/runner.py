"""The one runner: a :class:`~animegan_api.serving.plans.Plan` from upload bytes to an encoded answer.

The steps are the same for every entry point, in the spirit of LitServe's
decode -> predict -> encode: read the header, have the plan priced and
admitted, decode once, find the faces when a tile frames them, cut each
forward's input, run the forwards, lay the pictures out and encode them.

What differs between the service and the CLI is only the :class:`Gate` the
steps pass through: the service's (:class:`~animegan_api.serving.admission.Admission`)
admits against deadlines and the memory budget, runs pictures on the image
threads and forwards through the engine; :class:`Offline` runs everything in
the calling thread. The result cache, where there is one, sits around the
whole run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from PIL import Image

from animegan_api.pictures import imaging
from animegan_api.pictures.faces import Face, FaceDetector
from animegan_api.pictures.framing import Frame, centre_square, choose, cut, frame
from animegan_api.pictures.sheets import contact_sheet
from animegan_api.runtime.memory import give_back
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving import plans
from animegan_api.serving.cache import CachedResult, ResultCache, cache_key
from animegan_api.serving.metrics import Metrics
from animegan_api.serving.plans import Plan, Price

__all__ = ["Converted", "Gate", "Offline", "Runner"]

T = TypeVar("T")
_GIVE_BACK_PIXELS = 1_000_000


class Gate(Protocol):
    """Where the runner's steps run, and what they must pass first."""

    async def admit(self, price: Price) -> float:
        """Refuse or admit the priced plan; returns seconds spent waiting."""

    async def recount(self, price: Price) -> None:
        """The plan priced again once its faces are counted, before it queues for the model."""

    async def pictures(self, fn: Callable[..., T], *args: Any) -> T:
        """Run picture work (decode, detect, cut, encode)."""

    async def forward(self, style: LoadedStyle, batch: np.ndarray) -> np.ndarray:
        """Run one forward of ``style``'s model."""

    def timing(self) -> dict[str, float]:
        """Seconds spent queueing and in the model so far."""


class Offline:
    """The CLI's gate: no admission, everything in the calling thread."""

    async def admit(self, price: Price) -> float:
        return 0.0

    async def recount(self, price: Price) -> None:
        return None

    async def pictures(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def forward(self, style: LoadedStyle, batch: np.ndarray) -> np.ndarray:
        return style.predictor(batch)

    def timing(self) -> dict[str, float]:
        return {}


@dataclass(frozen=True)
class Converted:
    """An encoded answer and the facts the route reports about it."""

    body: bytes
    media_type: str
    styles: tuple[str, ...]
    timing: dict[str, float]
    cache: str | None = None
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Piece:
    """One forward's input, and how its output goes back into the answer."""

    style: LoadedStyle
    caption: str
    picture: Image.Image
    photo_side: int | None = None  # a face square's side in the photo, for keep_size
    output: Image.Image | None = None


class Runner:
    """Runs plans; holds what every run shares: the face detector, the pixel limit, the cache.

    The detector may be None where no plan will frame faces (``convert`` of a plain style skips loading it).
    """

    def __init__(
        self,
        detector: FaceDetector | None,
        max_pixels: int,
        max_faces: int,
        cache: ResultCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.detector, self.max_pixels, self.max_faces = detector, max_pixels, max_faces
        self.cache, self.metrics = cache, metrics

    async def run(self, plan: Plan, data: bytes, gate: Gate) -> Converted:
        started = time.perf_counter()
        key = await gate.pictures(self._key, plan, data) if self.cache is not None and self.cache.enabled else None
        if key and (hit := self._lookup(key)):
            timing = {"cache": time.perf_counter() - started}
            return Converted(hit.body, hit.media_type, hit.styles, timing, "hit", headers=dict(hit.headers))
        header = await gate.pictures(self._sizes, plan, data)
        waited = await gate.admit(plans.price(plan, header, self.max_faces))
        source = await gate.pictures(self._decode, data, header.scale)
        decoded = time.perf_counter()
        faces = await gate.pictures(self._detect, source.rgb) if plan.faces else []
        detected = time.perf_counter()
        pieces, headers, source = await gate.pictures(self._cut, plan, source, faces)  # the full decode is let go
        if (wanted := plan.faces) and wanted.choice == "all":
            await gate.recount(plans.price(plan, header, self.max_faces, found=len(faces)))
        for piece in pieces:
            batch = await gate.pictures(imaging.to_batch, piece.picture)
            output = await gate.forward(piece.style, batch)
            piece.output = await gate.pictures(imaging.from_output, output[0])
        encoding = time.perf_counter()
        body, out_size = await gate.pictures(_answer, plan, source, pieces)
        if max(header.original[0] * header.original[1], out_size[0] * out_size[1]) >= _GIVE_BACK_PIXELS:
            await gate.pictures(give_back)
        names = tuple(style.spec.name for style in plan.styles)
        timing = {"decode": decoded - started - waited}
        if plan.faces:
            timing["detect"] = detected - decoded
        timing |= gate.timing()
        timing["encode"] = time.perf_counter() - encoding
        if key and self.cache is not None:
            self.cache.put(key, CachedResult(body, plan.output.media_type, names, tuple(headers.items())))
        media_type = plan.output.media_type
        return Converted(body, media_type, names, timing, "miss" if key else None, header.original, out_size, headers)

    def _key(self, plan: Plan, data: bytes) -> str:
        return cache_key(data, **plan.cache_fields())

    def _detect(self, picture: Image.Image) -> list[Face]:
        if self.detector is None:
            raise RuntimeError("this runner was made without a face detector, and the plan frames faces")
        return self.detector.detect(picture)

    def _lookup(self, key: str) -> CachedResult | None:
        hit = self.cache.get(key) if self.cache is not None else None
        if self.metrics is not None:
            self.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
        return hit

    def _sizes(self, plan: Plan, data: bytes) -> imaging.Sizes:
        side = plans.decode_side(plan, self.max_pixels)
        return imaging.sizes(data, max_pixels=self.max_pixels, max_side=side)

    def _decode(self, data: bytes, scale: float) -> imaging.Prepared:
        return imaging.decode(data, max_pixels=self.max_pixels, scale=scale)

    def _cut(
        self, plan: Plan, source: imaging.Prepared, faces: list[Face]
    ) -> tuple[list[_Piece], dict[str, str], imaging.Prepared]:
        """Every forward's input picture, the face headers when faces were searched, and what the layout keeps.

        The layout needs the upload's alpha and size, and the original's tile on a
        comparison sheet, not the decoded picture: it is let go before the forwards.
        """
        pieces: list[_Piece] = []
        squares: list[Frame] = []
        chosen: list[int] = []
        for tile in plan.tiles:
            name = tile.style.spec.display_name or tile.style.spec.name
            if tile.faces is None:
                fitted = imaging.fit(source, plan.target(tile.style, source.original_size))
                pieces.append(_Piece(tile.style, name, fitted.rgb))
                continue
            wanted = tile.faces
            chosen = choose(faces, wanted.choice, self.max_faces) if faces or wanted.required else []
            squares = [frame(faces[i], wanted.margin) for i in chosen] or [centre_square(source.rgb.size)]
            side = plan.square(tile.style)
            captions = [f"face {i}" for i in chosen] if wanted.choice == "all" else [name] * len(squares)
            for square, caption in zip(squares, captions, strict=True):
                photo_side = max(1, round(square.side))
                pieces.append(_Piece(tile.style, caption, cut(source.rgb, square, side), photo_side))
        headers = plans.face_headers(faces, chosen, squares) if plan.faces else {}
        if plan.with_original:
            shown = imaging.fit(source, imaging.plan_size(*source.original_size, plan.side, 1)).rgb
        else:
            shown = pieces[0].picture
        return pieces, headers, dataclasses.replace(source, rgb=shown)


def _answer(plan: Plan, kept: imaging.Prepared, pieces: list[_Piece]) -> tuple[bytes, tuple[int, int]]:
    """The encoded answer and its size, in one trip to the picture threads."""
    picture = _lay_out(plan, kept, pieces)
    return imaging.encode(picture, plan.output.format, plan.output.quality), picture.size


def _lay_out(plan: Plan, kept: imaging.Prepared, pieces: list[_Piece]) -> Image.Image:
    """One picture as it is (at its original size with ``keep_size``), several as a captioned sheet."""
    outputs = [(piece.caption, piece.output) for piece in pieces if piece.output is not None]
    if plan.with_original:  # what _cut kept: the original's tile
        sheet = contact_sheet([("original", kept.rgb), *outputs], kept.rgb.size)
        return sheet
    if len(outputs) > 1:
        sheet = contact_sheet(outputs, outputs[0][1].size)
        return sheet
    piece, picture = pieces[0], outputs[0][1]
    if piece.photo_side is None:  # the whole picture: its alpha back, at its original size when asked
        picture = imaging.finish(picture, kept, plan.output.keep_size)
    elif plan.output.keep_size and picture.width != piece.photo_side:
        picture = picture.resize((piece.photo_side, piece.photo_side), Image.Resampling.LANCZOS)
    return picture
