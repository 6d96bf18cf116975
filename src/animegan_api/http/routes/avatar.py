"""``POST /v1/avatar``: the face in a photo, framed in a level square and stylised.

The commonest use of the service: a selfie or a group photo in, an avatar
out. Admission, limits, cache and errors are those of ``/v1/transform``;
the answer's headers say where the faces are so a frontend can draw them
and offer the others.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from animegan_api.config import Settings
from animegan_api.http.deps import (
    AdmittedTicket,
    ReadyRegistry,
    ServicesDep,
    resolve,
    validation_error,
)
from animegan_api.http.routes.inference import (
    IMAGE_ERRORS,
    PICTURE_CONTENT,
    FormatField,
    ImageField,
    QualityField,
    SingleImage,
    StyleField,
    load_styles,
    run_plan,
)
from animegan_api.http.schemas import error_doc
from animegan_api.pictures.framing import DEFAULT_MARGIN, FaceChoice
from animegan_api.serving.plans import Faces, Output, avatar_plan

__all__ = ["avatar"]

router = APIRouter(tags=["inference"])

_FACE_HEADERS_DOC = (
    "`X-Faces-Found`: how many faces the photo has; `X-Face-Boxes`: every face as `left,top,width,height` in "
    "the uploaded picture's pixels, `;`-separated, in reading order (rows top to bottom, left to right): the "
    "order `face=<index>` counts in; `X-Face-Index` and `X-Face-Box`: the face(s) framed; `X-Face-Roll`: degrees "
    "the square was turned to level the eyes."
)

_SizeField = Annotated[
    int | None,
    Form(ge=16, description="Side of the square avatar. Default 512; at most the `max_side_limit` setting."),
]
_FaceField = Annotated[
    str,
    Form(
        pattern=r"^(largest|all|[0-9]{1,3})$",
        description="Which face: `largest`, an index in reading order (0 first), or `all` for a captioned sheet "
        "of every face (up to the `avatar_max_faces` setting).",
        examples=["largest", "0", "all"],
    ),
]
_MarginField = Annotated[
    float,
    Form(
        ge=0.0,
        le=3.0,
        description="Room around the face on each side, in face-box sizes: 0.6 shows hair and chin, 0 the face "
        "alone, 1.5 head and shoulders. Where the square leaves the photo the photo is mirrored and blurred.",
    ),
]


@router.post(
    "/v1/avatar",
    summary="Find the face in a photo and turn it into a square anime avatar",
    response_class=Response,
    responses={
        200: {
            "description": f"The avatar (or, with `face=all`, a sheet of them). {_FACE_HEADERS_DOC}",
            "content": PICTURE_CONTENT,
        },
        **IMAGE_ERRORS,
        422: error_doc(
            "No face in the picture, or none with the asked index (`no_face`); "
            "or a field out of range (`invalid_request`)."
        ),
    },
)
async def avatar(
    request: Request,
    image: ImageField,
    services: ServicesDep,
    registry: ReadyRegistry,
    _: SingleImage,
    ticket: AdmittedTicket,
    style: StyleField = None,
    size: _SizeField = None,
    face: _FaceField = "largest",
    margin: _MarginField = DEFAULT_MARGIN,
    format: FormatField = "png",
    quality: QualityField = 90,
) -> Response:
    entry = resolve(registry, style)
    side = _avatar_side(size, services.settings)
    (loaded,) = await load_styles(request, registry, [entry], image, services)
    plan = avatar_plan(loaded, side, Faces(_face_choice(face), margin), Output(format, quality))
    return await run_plan(request, services, ticket, plan, image)


def _avatar_side(size: int | None, settings: Settings) -> int:
    if size is None:
        return min(512, settings.max_side_limit)
    if size > settings.max_side_limit:
        raise validation_error("size", f"Input should be less than or equal to {settings.max_side_limit}", size)
    return size


def _face_choice(face: str) -> FaceChoice:
    return face if face in ("largest", "all") else int(face)  # type: ignore[return-value]
