"""HTTP routes and the mapping from every failure to one JSON error shape.

Routes stay thin: they validate parameters, take a place in the engine before
touching the upload's pixels, and hand the work to ``imaging`` (in a worker
thread) and the engine (on the inference pool).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import imaging
from .engine import ClientGone, DeadlineExceeded, Overloaded, Ticket
from .styles import LoadedStyle

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["unsupported_image"])
    message: str = Field(examples=["not a supported picture; accepted formats: JPEG, PNG, WebP, BMP, TIFF, GIF"])


class ErrorBody(BaseModel):
    """The body of every error response except 422 validation errors."""

    error: ErrorDetail


class StyleInfo(BaseModel):
    name: str = Field(examples=["animeganv2_hayao"])
    display_name: str | None = Field(examples=["Hayao (AnimeGANv2)"])
    architecture: str = Field(examples=["animeganv2"])
    format: str = Field(examples=["torch"])
    file: str = Field(examples=["animeganv2_hayao.pt"])
    parameters: int = Field(examples=[2143552])
    upsample: str = Field(examples=["tf_legacy"])
    size_multiple: int = Field(examples=[4])
    preprocess: str = Field(examples=["full"])
    recommended_max_side: int | None = Field(examples=[1024])
    license: str | None = Field(examples=["non-commercial use only"])
    default: bool


class UnavailableStyle(BaseModel):
    name: str
    file: str
    reason: str


class StylesResponse(BaseModel):
    styles: list[StyleInfo]
    unavailable: list[UnavailableStyle]


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
    styles: list[str]
    in_flight: int
    queued: int


class ApiError(Exception):
    """An error with its status, stable code and human message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


TRANSFORM_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error_doc("The upload is a supported format but truncated or corrupt (`corrupt_image`)."),
    404: _error_doc("Unknown `style`; the message lists the valid names (`unknown_style`)."),
    413: _error_doc("Upload above `max_upload_bytes` (`upload_too_large`) or picture above `max_pixels` (`image_too_large`)."),
    415: _error_doc("Not a picture, or not JPEG/PNG/WebP/BMP/TIFF/GIF (`unsupported_image`)."),
    429: _error_doc("Rate limit exceeded (`rate_limited`); see `Retry-After`."),
    500: _error_doc("The model failed on this request (`inference_failed`); the service stays up."),
    503: _error_doc("Every worker and queue place is taken (`overloaded`), or no model is loaded (`not_ready`); see `Retry-After`."),
    504: _error_doc("The request's deadline passed while queued or running (`deadline_exceeded`)."),
}


async def transform(
    request: Request,
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame). The format is read from the bytes.")],
    style: Annotated[str | None, Form(description="Style name from `GET /v1/styles`; the default style when omitted.", examples=["animeganv2_hayao"])] = None,
    max_side: Annotated[int | None, Form(ge=16, description="Longest side of the processed picture (never upscaled). Default 512; the upper bound is the `max_side_limit` setting.", examples=[512])] = None,
    keep_size: Annotated[bool, Form(description="Return the picture at the upload's original size instead of the processed size.")] = False,
    format: Annotated[imaging.OutputFormat, Form(description="Output format.")] = "png",
    quality: Annotated[int, Form(ge=1, le=100, description="Quality for jpeg and webp output.")] = 90,
) -> Response:
    state = request.app.state
    settings = state.settings
    loaded = _resolve_style(state, style)
    side = _check_max_side(max_side, settings.default_max_side, settings.max_side_limit)
    if image.size is not None and image.size > settings.max_upload_bytes:
        raise ApiError(413, "upload_too_large", f"the upload is larger than {settings.max_upload_bytes} bytes")
    with _admitted(state) as ticket:
        started = time.perf_counter()
        data = await image.read()
        prepared, batch = await run_in_threadpool(_prepare, data, side, settings.max_pixels, loaded)
        decoded = time.perf_counter()
        output = await _infer(state, ticket, loaded, batch, request)
        encode_started = time.perf_counter()
        body = await run_in_threadpool(imaging.render, output, prepared, keep_size, format, quality)
        timing = {
            "decode": decoded - started,
            "queue": ticket.queue_s,
            "inference": ticket.inference_s,
            "encode": time.perf_counter() - encode_started,
        }
    headers = {"Server-Timing": _server_timing(timing), "X-Style": loaded.spec.name}
    return Response(body, media_type=imaging.MEDIA_TYPES[format], headers=headers)


async def list_styles(request: Request) -> StylesResponse:
    registry = request.app.state.registry
    return StylesResponse(
        styles=[_style_info(s, s.spec.name == registry.default_name) for s in registry.styles.values()],
        unavailable=[UnavailableStyle(name=f.name, file=f.path.name, reason=f.reason) for f in registry.failed],
    )


async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


async def readyz(request: Request) -> ReadyResponse:
    state = request.app.state
    if not getattr(state, "ready", False):
        raise ApiError(503, "not_ready", "no model is loaded and warmed", {"Retry-After": "5"})
    return ReadyResponse(
        status="ready", styles=state.registry.names, in_flight=state.engine.running, queued=state.engine.waiting
    )


def install(app: FastAPI, limiter: Limiter, rate_limit: str) -> None:
    """Attach the routes and the handlers that give every error the same shape.

    Routes are registered here rather than with decorators because the rate
    limit comes from settings; slowapi's decorator is applied per app, and the
    health probes are never limited.
    """
    limited = limiter.limit(rate_limit)
    app.add_api_route(
        "/v1/transform",
        limited(transform),
        methods=["POST"],
        tags=["inference"],
        summary="Turn a photo into an anime-style picture",
        response_class=Response,
        responses={
            200: {
                "description": "The converted picture. `Server-Timing` splits the time into decode, queue, "
                "inference and encode; `X-Style` names the style used.",
                "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
            },
            **TRANSFORM_ERRORS,
        },
    )
    app.add_api_route(
        "/v1/styles",
        limited(list_styles),
        methods=["GET"],
        tags=["styles"],
        summary="List the styles this service offers",
        response_model=StylesResponse,
        responses={429: TRANSFORM_ERRORS[429]},
    )
    app.add_api_route(
        "/healthz", healthz, methods=["GET"], tags=["health"], summary="Liveness: the process is up",
        response_model=HealthResponse,
    )
    app.add_api_route(
        "/readyz", readyz, methods=["GET"], tags=["health"],
        summary="Readiness: at least one model is loaded and warmed", response_model=ReadyResponse,
        responses={503: _error_doc("Not ready: starting, shutting down, or no model could be loaded (`not_ready`).")},
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RateLimitExceeded, _rate_limited)
    app.add_exception_handler(Exception, _unexpected)


def _resolve_style(state: Any, name: str | None) -> LoadedStyle:
    registry = state.registry
    if not getattr(state, "ready", False) or not registry.styles:
        raise ApiError(503, "not_ready", "no model is loaded and warmed", {"Retry-After": "5"})
    loaded = registry.get(name)
    if loaded is None:
        raise ApiError(404, "unknown_style", f"unknown style {name!r}; available styles: {', '.join(registry.names)}")
    return loaded


def _check_max_side(max_side: int | None, default: int, limit: int) -> int:
    if max_side is None:
        return default
    if max_side > limit:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("body", "max_side"),
                    "msg": f"Input should be less than or equal to {limit}",
                    "input": max_side,
                    "ctx": {"le": limit},
                }
            ]
        )
    return max_side


def _admitted(state: Any) -> Ticket:
    try:
        return state.engine.admit()
    except Overloaded:
        raise ApiError(
            503, "overloaded", "the service is at capacity; retry shortly", {"Retry-After": str(state.settings.retry_after_s)}
        ) from None


_IMAGE_ERRORS: dict[type[imaging.ImageError], tuple[int, str]] = {
    imaging.UnsupportedImage: (415, "unsupported_image"),
    imaging.CorruptImage: (400, "corrupt_image"),
    imaging.ImageTooLarge: (413, "image_too_large"),
}


def _prepare(data: bytes, max_side: int, max_pixels: int, loaded: LoadedStyle) -> tuple[imaging.Prepared, Any]:
    spec = loaded.spec
    try:
        prepared = imaging.prepare(
            data,
            max_pixels=max_pixels,
            max_side=max_side,
            multiple=spec.size_multiple,
            face_crop=spec.preprocess == "face",
        )
    except imaging.ImageError as exc:
        status, code = _IMAGE_ERRORS[type(exc)]
        raise ApiError(status, code, str(exc)) from exc
    return prepared, imaging.to_batch(prepared.rgb)


async def _infer(state: Any, ticket: Ticket, loaded: LoadedStyle, batch: Any, request: Request) -> Any:
    try:
        return await state.engine.run(ticket, loaded.predictor, batch, client_gone=_client_gone(request))
    except DeadlineExceeded:
        raise ApiError(504, "deadline_exceeded", f"no result within {state.settings.request_timeout_s:g} s") from None
    except ClientGone:
        log.info("client disconnected while queued; inference skipped")
        raise ApiError(499, "client_closed_request", "the client disconnected before inference") from None
    except Exception as exc:
        log.exception("inference failed for style %s", loaded.spec.name)
        raise ApiError(500, "inference_failed", f"the model failed on this picture ({type(exc).__name__})") from exc


async def _client_gone(request: Request) -> None:
    """Completes when the client disconnects; the upload has been read by now."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _server_timing(timing: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in timing.items())


def _style_info(loaded: LoadedStyle, default: bool) -> StyleInfo:
    spec = loaded.spec
    return StyleInfo(
        name=spec.name,
        display_name=spec.display_name,
        architecture=spec.architecture,
        format=spec.format,
        file=loaded.path.name,
        parameters=loaded.parameters,
        upsample=spec.upsample,
        size_multiple=spec.size_multiple,
        preprocess=spec.preprocess,
        recommended_max_side=spec.recommended_max_side,
        license=spec.license,
        default=default,
    )


def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json_error(exc.status, exc.code, exc.message, exc.headers)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = "the upload is too large" if exc.status_code == 413 else str(exc.detail)
    return _json_error(exc.status_code, code, message, dict(exc.headers or {}))


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitExceeded)
    limit, keys = request.state.view_rate_limit
    reset_at, _ = request.app.state.limiter.limiter.get_window_stats(limit, *keys)
    retry_after = max(1, math.ceil(reset_at - time.time()))
    return _json_error(429, "rate_limited", f"rate limit exceeded: {exc.detail}", {"Retry-After": str(retry_after)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json_error(500, "internal_error", "internal error")
