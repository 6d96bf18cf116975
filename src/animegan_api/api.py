"""HTTP routes and the mapping from every failure to one JSON error shape.

Routes stay thin: they validate parameters, take a place in the engine before
touching the upload's pixels, and hand the work to ``imaging`` (in a worker
thread) and the engine (on the inference pool).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import imaging
from .cache import CachedResult, cache_key
from .engine import ClientGone, DeadlineExceeded, Overloaded, Ticket
from .middleware import client_address, presented_key
from .schemas import HealthResponse, ReadyResponse, StyleInfo, StylesResponse, UnavailableFile, error_doc
from .styles import LoadedStyle, StyleEntry, StyleRegistry
from .weights import WeightsError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its status, stable code and human message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_doc("The upload is a supported format but truncated or corrupt (`corrupt_image`)."),
    404: error_doc("Unknown `style`; the message lists the valid names (`unknown_style`)."),
    413: error_doc("Upload above `max_upload_bytes` (`upload_too_large`) or picture above `max_pixels` (`image_too_large`)."),
    415: error_doc("Not a picture, or not JPEG/PNG/WebP/BMP/TIFF/GIF (`unsupported_image`)."),
    429: error_doc("Rate limit exceeded (`rate_limited`); see `Retry-After`."),
    500: error_doc("The model failed on this request (`inference_failed`); the service stays up."),
    503: error_doc(
        "Every worker and queue place is taken (`overloaded`), no model is loaded (`not_ready`), or the style's "
        "model cannot be loaded (`style_unavailable`); see `Retry-After`."
    ),
    504: error_doc("The request's deadline passed while queued or running (`deadline_exceeded`)."),
}
PICTURE_CONTENT = {"image/png": {}, "image/jpeg": {}, "image/webp": {}}

ImageField = Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, BMP, TIFF or GIF (first frame). The format is read from the bytes.")]
MaxSideField = Annotated[int | None, Form(ge=16, description="Longest side of the processed picture (never upscaled). Default 512; the upper bound is the `max_side_limit` setting.", examples=[512])]
FormatField = Annotated[imaging.OutputFormat, Form(description="Output format.")]
QualityField = Annotated[int, Form(ge=1, le=100, description="Quality for jpeg and webp output.")]


async def transform(
    request: Request,
    image: ImageField,
    style: Annotated[str | None, Form(description="Style name from `GET /v1/styles`; the default style when omitted.", examples=["animeganv2_hayao"])] = None,
    max_side: MaxSideField = None,
    keep_size: Annotated[bool, Form(description="Return the picture at the upload's original size instead of the processed size.")] = False,
    format: FormatField = "png",
    quality: QualityField = 90,
) -> Response:
    state = request.app.state
    registry = _ready_registry(state)
    entry = _resolve(registry, style)
    side = _check_max_side(max_side, state.settings)
    await _check_single_image(request)
    _check_upload_size(image, state.settings)
    with _admitted(state) as ticket:
        loaded = await _acquire(request, registry, entry)
        started = time.perf_counter()
        data = await image.read()
        key = await _cache_key(state, data, loaded, side=side, keep_size=keep_size, format=format, quality=quality)
        if key and (hit := _cache_lookup(state, key)):
            return _cached_response(hit, time.perf_counter() - started)
        prepared, batch = await state.engine.run_image_work(_prepare, data, side, state.settings.max_pixels, loaded)
        decoded = time.perf_counter()
        output = await _infer(state, ticket, loaded, batch, request)
        encode_started = time.perf_counter()
        body = await state.engine.run_image_work(imaging.render, output, prepared, keep_size, format, quality)
        timing = {
            "decode": decoded - started,
            "queue": ticket.queue_s,
            "inference": ticket.inference_s,
            "encode": time.perf_counter() - encode_started,
        }
    _note(request, in_size=list(prepared.original_size), out_size=list(prepared.rgb.size if not keep_size else prepared.original_size))
    headers = {"Server-Timing": _server_timing(timing), "X-Style": loaded.spec.name}
    if key:
        state.cache.put(key, CachedResult(body, imaging.MEDIA_TYPES[format], loaded.spec.name))
        headers["X-Cache"] = "miss"
    return Response(body, media_type=imaging.MEDIA_TYPES[format], headers=headers)


async def compare(
    request: Request,
    image: ImageField,
    styles: Annotated[str | None, Form(description="Comma-separated style names; every available style (up to the limit) when omitted.", examples=["animeganv2_hayao,animeganv3_shinkai"])] = None,
    max_side: MaxSideField = None,
    format: FormatField = "png",
    quality: QualityField = 90,
) -> Response:
    state = request.app.state
    registry = _ready_registry(state)
    entries = _resolve_many(registry, styles, state.settings.compare_max_styles)
    side = _check_max_side(max_side, state.settings)
    await _check_single_image(request)
    _check_upload_size(image, state.settings)
    with _admitted(state) as ticket:
        data = await image.read()
        original = await state.engine.run_image_work(_prepare, data, side, state.settings.max_pixels, None)
        tiles: list[tuple[str, Any]] = [("original", original[0].rgb)]
        for entry in entries:
            loaded = await _acquire(request, registry, entry)
            prepared, batch = await state.engine.run_image_work(_prepare, data, side, state.settings.max_pixels, loaded)
            output = await _infer(state, ticket, loaded, batch, request)
            tile = await state.engine.run_image_work(imaging.from_output, output[0])
            tiles.append((loaded.spec.display_name or loaded.spec.name, tile))
        body = await state.engine.run_image_work(_render_sheet, tiles, original[0].rgb.size, format, quality)
    headers = {"X-Styles": ",".join(e.name for e in entries)}
    return Response(body, media_type=imaging.MEDIA_TYPES[format], headers=headers)


async def list_styles(request: Request) -> StylesResponse:
    registry: StyleRegistry = request.app.state.registry
    return StylesResponse(
        styles=[_style_info(entry, entry.name == registry.default_name) for entry in registry.entries.values()],
        unavailable=[UnavailableFile(name=f.name, file=f.path.name, reason=f.reason) for f in registry.failed_files]
        + [UnavailableFile(name=e.name, file=e.file.path.name, reason=e.error) for e in registry.entries.values() if e.error],
    )


async def reload(request: Request) -> StylesResponse:
    _check_admin(request)
    await request.app.state.reload_styles()
    return await list_styles(request)


STATIC_DIR = Path(__file__).with_name("static")


async def demo_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)


async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


async def readyz(request: Request) -> ReadyResponse:
    state = request.app.state
    if state.draining:
        raise ApiError(503, "shutting_down", "draining before shutdown", {"Retry-After": "1"})
    if not getattr(state, "ready", False):
        raise ApiError(503, "not_ready", "no model is loaded and warmed", {"Retry-After": "5"})
    return ReadyResponse(
        status="ready", styles=state.registry.names, in_flight=state.engine.running, queued=state.engine.waiting
    )


def install(app: FastAPI) -> None:
    """Attach the routes and the handlers that give every error the same shape.

    API keys and rate limits are not checked here: ``GuardMiddleware`` decides
    on them before the upload is read, which a route (whose form FastAPI parses
    before calling it) cannot do.
    """
    app.add_api_route(
        "/v1/transform", transform, methods=["POST"], tags=["inference"],
        summary="Turn a photo into an anime-style picture", response_class=Response,
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
    app.add_api_route(
        "/v1/compare", compare, methods=["POST"], tags=["inference"],
        summary="Run one photo through several styles and get a captioned contact sheet", response_class=Response,
        responses={
            200: {"description": "The contact sheet: the original, then one tile per style. `X-Styles` lists them.", "content": PICTURE_CONTENT},
            **IMAGE_ERRORS,
            422: {"description": "More styles than `compare_max_styles`, or a parameter out of range."},
        },
    )
    app.add_api_route(
        "/v1/styles", list_styles, methods=["GET"], tags=["styles"],
        summary="List the styles this service offers", response_model=StylesResponse, responses={429: IMAGE_ERRORS[429]},
    )
    app.add_api_route(
        "/v1/admin/reload", reload, methods=["POST"], tags=["admin"],
        summary="Rescan the weights folder without dropping requests in flight (also on SIGHUP)",
        response_model=StylesResponse,
        responses={
            401: error_doc("An admin key is configured and none was sent (`unauthorized`)."),
            403: error_doc("Wrong admin key, or no key configured and the client is not on loopback (`forbidden`)."),
            429: IMAGE_ERRORS[429],
        },
    )
    app.add_api_route("/", demo_page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_api_route(
        "/metrics", metrics, methods=["GET"], tags=["health"], summary="Prometheus metrics", response_class=Response,
        responses={200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {}}}},
    )
    app.add_api_route(
        "/healthz", healthz, methods=["GET"], tags=["health"], summary="Liveness: the process is up",
        response_model=HealthResponse,
    )
    app.add_api_route(
        "/readyz", readyz, methods=["GET"], tags=["health"],
        summary="Readiness: at least one model is loaded and warmed", response_model=ReadyResponse,
        responses={503: error_doc("Not ready: starting, shutting down, or no model could be loaded (`not_ready`).")},
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def _ready_registry(state: Any) -> StyleRegistry:
    if state.draining:
        raise ApiError(503, "shutting_down", "the service is shutting down; retry on another instance", {"Retry-After": "1"})
    if not getattr(state, "ready", False):
        raise ApiError(503, "not_ready", "no model is loaded and warmed", {"Retry-After": "5"})
    return state.registry


def _resolve(registry: StyleRegistry, name: str | None) -> StyleEntry:
    entry = registry.lookup(name)
    if entry is None:
        raise ApiError(404, "unknown_style", f"unknown style {name!r}; available styles: {', '.join(registry.names)}")
    if entry.error:
        raise ApiError(503, "style_unavailable", f"style {entry.name!r} cannot be loaded: {entry.error}")
    return entry


def _resolve_many(registry: StyleRegistry, names: str | None, limit: int) -> list[StyleEntry]:
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else registry.names[:limit]
    if len(wanted) > limit:
        raise _validation_error("styles", f"At most {limit} styles per comparison", names)
    if not wanted:
        raise ApiError(503, "not_ready", "no style is available", {"Retry-After": "5"})
    return [_resolve(registry, name) for name in dict.fromkeys(wanted)]


async def _acquire(request: Request, registry: StyleRegistry, entry: StyleEntry) -> LoadedStyle:
    try:
        loaded = await registry.acquire(entry)
    except WeightsError as exc:
        raise ApiError(503, "style_unavailable", f"style {entry.name!r} cannot be loaded: {exc}") from exc
    _note(request, style=entry.name)
    return loaded


def _check_max_side(max_side: int | None, settings: Any) -> int:
    if max_side is None:
        return settings.default_max_side
    if max_side > settings.max_side_limit:
        raise _validation_error("max_side", f"Input should be less than or equal to {settings.max_side_limit}", max_side)
    return max_side


async def _check_single_image(request: Request) -> None:
    """Two ``image`` parts would make the choice of picture arbitrary; refuse instead."""
    if len((await request.form()).getlist("image")) > 1:
        raise _validation_error("image", "Send exactly one image part", None)


def _check_upload_size(image: UploadFile, settings: Any) -> None:
    if image.size is not None and image.size > settings.max_upload_bytes:
        raise ApiError(413, "upload_too_large", f"the upload is larger than {settings.max_upload_bytes} bytes")


def _validation_error(field: str, message: str, value: object) -> RequestValidationError:
    """The same 422 shape FastAPI gives, for limits that come from settings."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}])


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


def _prepare(data: bytes, max_side: int, max_pixels: int, loaded: LoadedStyle | None) -> tuple[imaging.Prepared, np.ndarray]:
    """Decode for one style's size rule and preprocessing (or as-is, for the comparison's original)."""
    try:
        prepared = imaging.prepare(
            data,
            max_pixels=max_pixels,
            max_side=max_side,
            multiple=loaded.size_multiple if loaded else 1,
            face_crop=loaded is not None and loaded.spec.preprocess == "face",
        )
    except imaging.ImageError as exc:
        status, code = _IMAGE_ERRORS[type(exc)]
        raise ApiError(status, code, str(exc)) from exc
    return prepared, imaging.to_batch(prepared.rgb)


async def _cache_key(state: Any, data: bytes, loaded: LoadedStyle, **params: object) -> str | None:
    """The upload's cache key (hashed off the event loop), or None with the cache off."""
    if not state.cache.enabled:
        return None
    return await state.engine.run_image_work(lambda: cache_key(data, style=loaded.spec.name, model=str(loaded.path), **params))


def _cache_lookup(state: Any, key: str) -> CachedResult | None:
    hit = state.cache.get(key)
    state.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
    return hit


def _cached_response(hit: CachedResult, elapsed_s: float) -> Response:
    headers = {"Server-Timing": _server_timing({"cache": elapsed_s}), "X-Style": hit.style, "X-Cache": "hit"}
    return Response(hit.body, media_type=hit.media_type, headers=headers)


async def _infer(state: Any, ticket: Ticket, loaded: LoadedStyle, batch: np.ndarray, request: Request) -> np.ndarray:
    try:
        output = await state.engine.run_batch(
            ticket, loaded.predictor, batch, key=(id(loaded.predictor), batch.shape[1:]), client_gone=_client_gone(request)
        )
    except DeadlineExceeded:
        raise ApiError(504, "deadline_exceeded", f"no result within {state.settings.request_timeout_s:g} s") from None
    except ClientGone:
        log.info("client disconnected while queued; inference skipped")
        raise ApiError(499, "client_closed_request", "the client disconnected before inference") from None
    except Exception as exc:
        log.exception("inference failed for style %s", loaded.spec.name)
        raise ApiError(500, "inference_failed", f"the model failed on this picture ({type(exc).__name__})") from exc
    state.metrics.observe_inference(loaded.spec.name, ticket.queue_s, ticket.inference_s)
    _note(request, queue_ms=round(ticket.queue_s * 1000, 1), inference_ms=round(ticket.inference_s * 1000, 1))
    return output


def _note(request: Request, **fields: object) -> None:
    """Facts about this request for the access log and metrics (see metrics.ObservabilityMiddleware)."""
    for name, value in fields.items():
        setattr(request.state, name, value)


async def _client_gone(request: Request) -> None:
    """Completes when the client disconnects; the upload has been read by now."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _render_sheet(tiles: list[tuple[str, Any]], size: tuple[int, int], fmt: imaging.OutputFormat, quality: int) -> bytes:
    return imaging.encode(imaging.contact_sheet(tiles, size), fmt, quality)


def _check_admin(request: Request) -> None:
    """Admin routes need the admin key when one is set; without one, a loopback client and no API keys."""
    settings = request.app.state.settings
    key = settings.admin_key
    if key is None:
        if settings.api_keys or settings.api_keys_file:
            raise ApiError(403, "forbidden", "with API keys on, admin routes need ANIMEGAN_ADMIN_KEY")
        host = client_address(request.scope, request.headers, settings.trust_forwarded_for)
        if not _is_loopback(host):
            raise ApiError(403, "forbidden", "admin routes answer loopback clients only unless ANIMEGAN_ADMIN_KEY is set")
        return
    sent = presented_key(request.headers)
    if not sent:
        raise ApiError(401, "unauthorized", "send the admin key as 'Authorization: Bearer <key>' or 'X-API-Key'", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(sent.encode(), key.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "wrong admin key")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_timing(timing: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in timing.items())


def _style_info(entry: StyleEntry, default: bool) -> StyleInfo:
    spec, loaded = entry.spec, entry.loaded
    return StyleInfo(
        name=entry.name,
        display_name=spec.display_name,
        architecture=spec.architecture,
        format=spec.format,
        formats=entry.formats,
        file=entry.file.path.name,
        layout=spec.layout,
        upsample=spec.upsample if spec.format == "torch" else None,
        size_multiple=spec.size_multiple,
        preprocess=spec.preprocess,
        recommended_max_side=spec.recommended_max_side,
        max_batch=spec.max_batch,
        parameters=loaded.parameters if loaded else None,
        weights_bytes=entry.file.path.stat().st_size if entry.file.path.exists() else 0,
        memory_bytes=loaded.memory_bytes if loaded else None,
        precision=loaded.precision if loaded else None,
        precision_note=loaded.precision_note if loaded else None,
        loaded=loaded is not None,
        available=entry.error is None,
        reason=entry.error,
        license=spec.license,
        source=spec.source,
        url=spec.url,
        sha256=spec.sha256,
        default=default,
    )


def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    _note(request, error_code=exc.code)
    return _json_error(exc.status, exc.code, exc.message, exc.headers)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "body_timeout", 413: "upload_too_large"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    _note(request, error_code=code)
    message = str(exc.detail)
    return _json_error(exc.status_code, code, message, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    _note(request, error_code="internal_error")
    log.exception("unhandled error on %s %s (request id %s)", request.method, request.url.path, request_id)
    return _json_error(500, "internal_error", f"internal error (request id {request_id})")
