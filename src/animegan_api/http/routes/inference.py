"""``POST /v1/transform`` and ``POST /v1/compare``: a photo in, anime-style pictures out.

The handlers only read the form and build the request's plan: dependencies
have already checked readiness and taken its place in the engine, and the
runner does the work (:mod:`animegan_api.serving.runner`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from animegan_api.http.deps import (
    AdmittedTicket,
    ReadyRegistry,
    ServicesDep,
    acquire,
    check_upload_size,
    processed_side,
    resolve,
    resolve_many,
    single_image,
)
from animegan_api.http.schemas import error_doc
from animegan_api.pictures import imaging
from animegan_api.runtime.predictors import LoadedStyle
from animegan_api.runtime.registry import StyleEntry, StyleRegistry
from animegan_api.serving.plans import Output, Plan, compare_plan, transform_plan
from animegan_api.serving.runner import Converted
from animegan_api.serving.services import Services
from animegan_api.serving.tickets import Ticket

__all__ = [
    "IMAGE_ERRORS",
    "PICTURE_CONTENT",
    "FormatField",
    "ImageField",
    "QualityField",
    "SingleImage",
    "StyleField",
    "compare",
    "load_styles",
    "run_plan",
    "transform",
]

router = APIRouter(tags=["inference"])

IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_doc("The upload is a supported format but truncated or corrupt (`corrupt_image`)."),
    404: error_doc("Unknown `style`; the message lists the valid names (`unknown_style`)."),
    413: error_doc(
        "Upload above `max_upload_bytes` (`upload_too_large`), picture above `max_pixels` (`image_too_large`), "
        "or a processed size that could never fit the memory budget (`too_large_for_memory`) or finish before the "
        "deadline (`too_large_for_deadline`); the message names the largest `max_side` that would."
    ),
    415: error_doc("Not a picture, or not JPEG/PNG/WebP/BMP/TIFF/GIF (`unsupported_image`)."),
    429: error_doc("Rate limit exceeded (`rate_limited`); see `Retry-After`."),
    500: error_doc("The model failed on this request (`inference_failed`); the service stays up."),
    503: error_doc(
        "Every worker and queue place is taken (`overloaded`), no model is loaded (`not_ready`), or the style's "
        "model cannot be loaded (`style_unavailable`); see `Retry-After`."
    ),
    504: error_doc("The request's deadline passed while queued or running (`deadline_exceeded`)."),
}
PICTURE_CONTENT: dict[str, Any] = {"image/png": {}, "image/jpeg": {}, "image/webp": {}}

ImageField = Annotated[
    UploadFile,
    File(description="The photo: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame). The format is read from the bytes."),
]
_MaxSideField = Annotated[
    int | None,
    Form(
        ge=16,
        description="Longest side of the processed picture (never upscaled). "
        "Default 512; the upper bound is the `max_side_limit` setting.",
        examples=[512],
    ),
]
FormatField = Annotated[imaging.OutputFormat, Form(description="Output format.")]
QualityField = Annotated[int, Form(ge=1, le=100, description="Quality for jpeg and webp output.")]
StyleField = Annotated[
    str | None,
    Form(
        description="Style name from `GET /v1/styles`; the default style when omitted.", examples=["animeganv2_hayao"]
    ),
]
_KeepSizeField = Annotated[
    bool, Form(description="Return the picture at the upload's original size instead of the processed size.")
]
_StylesField = Annotated[
    str | None,
    Form(
        description="Comma-separated style names; every available style (up to the limit) when omitted.",
        examples=["animeganv2_hayao,animeganv3_shinkai"],
    ),
]
SingleImage = Annotated[None, Depends(single_image)]


@router.post(
    "/v1/transform",
    summary="Turn a photo into an anime-style picture",
    response_class=Response,
    responses={
        200: {
            "description": "The converted picture. `Server-Timing` splits the time into decode, queue, "
            "inference and encode; `X-Style` names the style used; `X-Cache` says whether the result "
            "cache answered (`hit`) or the model ran (`miss`), and is absent with the cache off.",
            "content": PICTURE_CONTENT,
        },
        **IMAGE_ERRORS,
    },
)
async def transform(
    request: Request,
    image: ImageField,
    services: ServicesDep,
    registry: ReadyRegistry,
    _: SingleImage,
    ticket: AdmittedTicket,
    style: StyleField = None,
    max_side: _MaxSideField = None,
    keep_size: _KeepSizeField = False,
    format: FormatField = "png",
    quality: QualityField = 90,
) -> Response:
    entry = resolve(registry, style)
    side = processed_side(max_side, services.settings)
    (loaded,) = await load_styles(request, registry, [entry], image, services)
    plan = transform_plan(loaded, side, Output(format, quality, keep_size))
    return await run_plan(request, services, ticket, plan, image)


@router.post(
    "/v1/compare",
    summary="Run one photo through several styles and get a captioned contact sheet",
    response_class=Response,
    responses={
        200: {
            "description": "The contact sheet: the original, then one tile per style. `X-Styles` lists them.",
            "content": PICTURE_CONTENT,
        },
        **IMAGE_ERRORS,
        422: error_doc("More styles than `compare_max_styles`, or a field out of range (`invalid_request`)."),
    },
)
async def compare(
    request: Request,
    image: ImageField,
    services: ServicesDep,
    registry: ReadyRegistry,
    _: SingleImage,
    ticket: AdmittedTicket,
    styles: _StylesField = None,
    max_side: _MaxSideField = None,
    format: FormatField = "png",
    quality: QualityField = 90,
) -> Response:
    entries = resolve_many(registry, styles, services.settings.compare_max_styles)
    side = processed_side(max_side, services.settings)
    loaded = await load_styles(request, registry, entries, image, services)
    plan = compare_plan(loaded, side, Output(format, quality))
    return await run_plan(request, services, ticket, plan, image, styles_header="X-Styles")


async def load_styles(
    request: Request, registry: StyleRegistry, entries: list[StyleEntry], image: UploadFile, services: Services
) -> list[LoadedStyle]:
    """The resolved styles' models, once the upload's declared size is within the limit (a lazy style loads now)."""
    check_upload_size(image.size, services.settings)
    loaded = [await acquire(registry, entry) for entry in entries]
    _note(request, style=",".join(entry.name for entry in entries))
    return loaded


async def run_plan(
    request: Request, services: Services, ticket: Ticket, plan: Plan, image: UploadFile, styles_header: str = "X-Style"
) -> Response:
    """A route's plan through the service's runner, on the request's admitted ticket, answered as a picture."""
    gate = services.admission(ticket, lambda: _client_gone(request))
    try:
        return _picture_response(request, await services.runner.run(plan, await image.read(), gate), styles_header)
    finally:
        _note(request, memory_bytes=ticket.memory_bytes or None)


def _picture_response(request: Request, result: Converted, styles_header: str = "X-Style") -> Response:
    """A converted picture with its headers, its facts noted for the access log (a cache hit ran nothing)."""
    if result.cache != "hit":
        _note(request, in_size=list(result.in_size or ()), out_size=list(result.out_size or ()))
        _note_timing(request, result.timing.get("queue", 0.0), result.timing.get("inference", 0.0))
    headers = {"Server-Timing": _server_timing(result.timing), styles_header: ",".join(result.styles), **result.headers}
    if result.cache:
        headers["X-Cache"] = result.cache
    return Response(result.body, media_type=result.media_type, headers=headers)


def _note(request: Request, **fields: object) -> None:
    """Facts about this request for the access log and metrics (see observability.ObservabilityMiddleware)."""
    for name, value in fields.items():
        setattr(request.state, name, value)


def _note_timing(request: Request, queue_s: float, inference_s: float) -> None:
    _note(request, queue_ms=round(queue_s * 1000, 1), inference_ms=round(inference_s * 1000, 1))


async def _client_gone(request: Request) -> None:
    """Completes when the client disconnects; the upload has been read by now."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _server_timing(timing: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in timing.items())
