"""Avatars: find the faces, frame one (or each) in a level square, stylise it.

Detection and framing run on the image pool; the forward goes through the
pipeline's admission, memory reservation, deadline, cache and metrics, so an
avatar obeys every rule a ``/v1/transform`` request does. Styles whose
sidecar says ``preprocess: "face"`` are framed the same way on
``/v1/transform``, falling back to the centre square when no face is found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from animegan_api.failures import Refusal
from animegan_api.pictures import imaging
from animegan_api.pictures.faces import Face, FaceDetector
from animegan_api.pictures.framing import DEFAULT_MARGIN, Frame, cut, frame
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.serving.cache import CachedResult
from animegan_api.serving.pipeline import Converted, Options, Pipeline, checked
from animegan_api.serving.tickets import Ticket

FaceChoice = int | Literal["largest", "all"]
FACE_HEADER_NAMES = ("X-Faces-Found", "X-Face-Boxes", "X-Face-Index", "X-Face-Box", "X-Face-Roll")
ClientGone = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class AvatarOptions:
    """What the caller asked of the avatar."""

    size: int
    face: FaceChoice = "largest"
    margin: float = DEFAULT_MARGIN
    format: imaging.OutputFormat = "png"
    quality: int = 90
    keep_size: bool = False


class Avatars:
    """``/v1/avatar``, and face styles on ``/v1/transform``."""

    def __init__(self, pipeline: Pipeline, detector: FaceDetector, max_faces: int) -> None:
        self.pipeline, self.detector, self.max_faces = pipeline, detector, max_faces

    async def make(
        self, ticket: Ticket, style: LoadedStyle, data: bytes, options: AvatarOptions, client_gone: ClientGone
    ) -> Converted:
        """One avatar, or a captioned sheet of every face (``face="all"``); 422 ``no_face`` without one."""
        return await self._run(ticket, style, data, options, client_gone, need_face=True)

    async def transform(
        self, ticket: Ticket, style: LoadedStyle, data: bytes, options: Options, client_gone: ClientGone
    ) -> Converted:
        """``/v1/transform``: face styles framed on the largest face, every other style as it is."""
        if style.spec.preprocess != "face":
            return await self.pipeline.transform(ticket, style, data, options, client_gone)
        wanted = AvatarOptions(
            options.max_side, "largest", DEFAULT_MARGIN, options.format, options.quality, options.keep_size
        )
        return await self._run(ticket, style, data, wanted, client_gone, need_face=False)

    async def _run(
        self,
        ticket: Ticket,
        style: LoadedStyle,
        data: bytes,
        options: AvatarOptions,
        client_gone: ClientGone,
        need_face: bool,
    ) -> Converted:
        started = time.perf_counter()
        pipeline, images = self.pipeline, self.pipeline.images
        side = imaging.plan_size(options.size, options.size, options.size, style.size_multiple)[0]
        output = Options(side, options.keep_size, options.format, options.quality)
        key = await pipeline.key_for(data, style, output, face=options.face, margin=options.margin, avatar=need_face)
        if key and (hit := pipeline.lookup(key)):
            return Converted.cached(hit, started)
        header = await pipeline.plan(data, None, pipeline.max_pixels)
        count = self.max_faces if options.face == "all" else 1
        waited = await pipeline.admit(ticket, [style], avatar_plan(header, side, count), output, client_gone, "size")
        whole = await images.run(checked, _decode_whole, data, pipeline.max_pixels)
        decoded = time.perf_counter()
        faces = await images.run(self.detector.detect, whole.rgb)
        detected = time.perf_counter()
        chosen = choose(faces, options.face, self.max_faces) if faces or need_face else []
        squares = [frame(faces[index], options.margin) for index in chosen] or [centre_square(whole.rgb.size)]
        ticket.predicted_s *= len(squares)  # admission priced one forward; the backlog now counts them all
        pictures = [await self._stylise(ticket, style, whole.rgb, square, side, client_gone) for square in squares]
        encode_started = time.perf_counter()
        body = await images.run(_finish, pictures, chosen, options)
        await pipeline.give_back(whole)
        timing = {
            "decode": decoded - started - waited,
            "detect": detected - decoded,
            "queue": waited + ticket.queue_s,
            "inference": ticket.inference_s,
            "encode": time.perf_counter() - encode_started,
        }
        headers = face_headers(faces, chosen, squares)
        media_type = imaging.MEDIA_TYPES[options.format]
        if key:
            pipeline.cache.put(key, pipeline_result(body, media_type, style, headers))
        return Converted(
            body,
            media_type,
            style.spec.name,
            timing,
            "miss" if key else None,
            whole.original_size,
            (side, side),
            headers,
        )

    async def _stylise(
        self, ticket: Ticket, style: LoadedStyle, picture: Image.Image, square: Frame, side: int, gone: ClientGone
    ) -> tuple[Image.Image, int]:
        """One framed square through the model, with the side it had in the photo (for ``keep_size``)."""
        images = self.pipeline.images
        batch = await images.run(lambda: imaging.to_batch(cut(picture, square, side)))
        output = await self.pipeline.predict(ticket, style, batch, gone())
        return await images.run(imaging.from_output, output[0]), max(1, round(square.side))


def make_offline(
    data: bytes, style: LoadedStyle, options: AvatarOptions, detector: FaceDetector, max_pixels: int, max_faces: int
) -> bytes:
    """The avatar in the calling thread: what ``animegan-api convert --avatar`` runs per file."""
    whole = _decode_whole(data, max_pixels)
    faces = detector.detect(whole.rgb)
    side = imaging.plan_size(options.size, options.size, options.size, style.size_multiple)[0]
    chosen = choose(faces, options.face, max_faces)
    pictures = []
    for index in chosen:
        square = frame(faces[index], options.margin)
        output = style.predictor(imaging.to_batch(cut(whole.rgb, square, side)))
        pictures.append((imaging.from_output(output[0]), max(1, round(square.side))))
    return _finish(pictures, chosen, options)


def choose(faces: list[Face], wanted: FaceChoice, max_faces: int) -> list[int]:
    """Indexes (reading order) of the faces to frame, or the service's 422 when there is none to pick."""
    if not faces:
        raise Refusal(
            "no_face",
            "no face found in the picture: avatars need a face turned less than about 30 degrees from the camera, "
            "at least about 1/8 of the picture's longest side",
        )
    if wanted == "all":
        return list(range(min(len(faces), max_faces)))
    if wanted == "largest":
        return [max(range(len(faces)), key=lambda index: faces[index].area)]
    if wanted >= len(faces):
        raise Refusal("no_face", f"face {wanted} was asked for, but only {len(faces)} found (0 to {len(faces) - 1})")
    return [wanted]


def centre_square(size: tuple[int, int]) -> Frame:
    """The old face crop, for face styles given a picture without a face."""
    width, height = size
    return Frame((width / 2, height / 2), float(min(width, height)), 0.0)


def avatar_plan(header: imaging.Plan, side: int, count: int) -> imaging.Plan:
    """The sizes admission prices an avatar at: the whole photo decoded, ``count`` squares of ``side``.

    Cutting a square holds about 35 bytes an output pixel (the resized photo,
    its mirrored and blurred copies, the mask, the turn); a sheet holds 6 more
    a pixel for each face. They are counted as extra decoded pixels (7 bytes
    each in :func:`sizing.picture_bytes`).
    """
    extra = math.ceil((35 + 6 * count) * side * side / 7)
    return imaging.Plan((side, side), (side, side), header.decoded_pixels + extra)


def face_headers(faces: list[Face], chosen: list[int], squares: list[Frame]) -> dict[str, str]:
    """Where the faces are, in the uploaded picture's pixels: what a frontend draws and offers to pick."""
    headers = {
        "X-Faces-Found": str(len(faces)),
        "X-Face-Boxes": ";".join(",".join(map(str, face.rounded_box())) for face in faces),
    }
    if chosen:
        headers["X-Face-Index"] = ",".join(map(str, chosen))
        headers["X-Face-Box"] = ";".join(",".join(map(str, faces[index].rounded_box())) for index in chosen)
        headers["X-Face-Roll"] = ";".join(f"{square.angle:.1f}" for square in squares)
    return headers


def pipeline_result(body: bytes, media_type: str, style: LoadedStyle, headers: dict[str, str]) -> CachedResult:
    return CachedResult(body, media_type, style.spec.name, tuple(headers.items()))


def _decode_whole(data: bytes, max_pixels: int) -> imaging.Prepared:
    """The upload upright at full size: the face may be anywhere, and small."""
    return imaging.prepare(data, max_pixels=max_pixels, max_side=max_pixels)


def _finish(pictures: list[tuple[Image.Image, int]], chosen: list[int], options: AvatarOptions) -> bytes:
    """One avatar as it is (or at its side in the photo with ``keep_size``), several as a captioned sheet."""
    if len(pictures) == 1:
        picture, original_side = pictures[0]
        if options.keep_size and picture.width != original_side:
            picture = picture.resize((original_side, original_side), Image.Resampling.LANCZOS)
        return imaging.encode(picture, options.format, options.quality)
    tiles = [(f"face {index}", picture) for index, (picture, _) in zip(chosen, pictures, strict=True)]
    return imaging.encode(imaging.contact_sheet(tiles, pictures[0][0].size), options.format, options.quality)
